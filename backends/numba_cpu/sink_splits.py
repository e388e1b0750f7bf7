"""Moves a split of a contraction's result, and the loop kernel reading its pieces, into the
contraction kernel (an RNN cell's product, gate split and gate math become one kernel).

Fusion keeps the three apart (a split has several results, and the gate math runs at the
pieces' shape, not the product's); in this backend `split_contraction` runs them as one
kernel in column blocks, one per core. The rewrite applies only where that kernel takes the
merged body: the contraction's only result feeds the split alone, and every piece feeds that
one loop kernel alone.

Where the kernel runs in several equal blocks, each block's columns of the weight (a slice
of every piece) are packed next to each other once per run (`_packed_weight`: a reshape,
transpose and reshape, shared by all the cells reading that weight), so a block's product is
one GEMM instead of one per piece: 4 GEMMs of 64x256x128 took 225 us against 200 us for one
of 64x256x512 (measured). The merged node then takes the packed weight as its last input,
its attribute `block_width` naming the blocks it was packed for.
"""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ir.types import TensorType

from . import blas, split_contraction


def sink_splits(graph: Graph) -> Graph:
    """`graph` with each contraction -> split -> loop chain of that form as one contraction."""
    users: dict[Value, list[Node]] = {}
    controlled: set[Node] = set()
    for node in graph.nodes:
        for v in node.inputs:
            users.setdefault(v, []).append(node)
        controlled.update(node.control_inputs)
    results = set(graph.results)
    merged: dict[Node, Node] = {}  # the loop kernel -> the node replacing it
    dropped: set[Node] = set()
    for split in graph.nodes:
        if split.op != "split" or split.control_inputs or split in controlled or len(split.inputs) != 1:
            continue
        product = split.inputs[0].node
        readers = {u for v in split.outputs for u in users.get(v, [])}
        if len(readers) != 1 or any(v in results or not users.get(v) for v in split.outputs):
            continue
        (loop,) = readers
        if not (product.op == "fused" and product.attr("kind") == "contraction" and len(product.outputs) == 1
                and users.get(product.out) == [split] and product.out not in results and product not in controlled
                and not product.control_inputs and loop.op == "fused" and loop.attr("kind") == "loop"
                and loop not in merged):
            continue
        node = _merged(product, split, loop)
        if split_contraction.plan(node.attr("body")) is not None:
            merged[loop] = node
            dropped.update((product, split))
    if not merged:
        return graph
    mapping: dict[Value, Value] = {}
    nodes = []
    packed: dict[tuple[Value, int, int], Value] = {}  # (weight, pieces, block width) -> packed weight
    for node in graph.nodes:
        if node in dropped:
            continue
        new = merged.get(node, node)
        inputs = tuple(mapping.get(v, v) for v in new.inputs)
        if inputs != new.inputs:
            new = new.evolve(inputs=inputs)
        if node in merged:
            new = _with_packed_weight(new, packed, nodes)
        mapping.update(zip(node.outputs, new.outputs))
        nodes.append(new)
    return Graph(graph.name, list(graph.params), nodes, [mapping.get(r, r) for r in graph.results])


def _merged(product: Node, split: Node, loop: Node) -> Node:
    """One `contraction` node: the product's body, the split, then the loop's body; its inputs
    the product's and the loop's other inputs, its results the loop's."""
    pieces = set(split.outputs)
    inputs = list(product.inputs) + [v for v in dict.fromkeys(loop.inputs) if v not in pieces and v not in product.inputs]
    params = {v: Node("param", (), (("index", i),), (v.type,)).out for i, v in enumerate(inputs)}
    nodes: list[Node] = []
    first: Graph = product.attr("body")
    mapping: dict[Value, Value] = {p: params[v] for p, v in zip(first.params, product.inputs)}
    for n in first.nodes:
        new = n.evolve(inputs=tuple(mapping[v] for v in n.inputs))
        nodes.append(new)
        mapping.update(zip(n.outputs, new.outputs))
    inner_split = split.evolve(inputs=(mapping[first.results[0]],))
    nodes.append(inner_split)
    second: Graph = loop.attr("body")
    outer = dict(zip(split.outputs, inner_split.outputs))
    mapping = {p: outer[v] if v in outer else params[v] for p, v in zip(second.params, loop.inputs)}
    for n in second.nodes:
        new = n.evolve(inputs=tuple(mapping[v] for v in n.inputs))
        nodes.append(new)
        mapping.update(zip(n.outputs, new.outputs))
    body = Graph(first.name, list(params.values()), nodes, [mapping[r] for r in second.results])
    return Node("fused", tuple(inputs), (("body", body), ("kind", "contraction")), loop.types,
                device=product.device, loc=product.loc, name=product.name)


def _with_packed_weight(node: Node, packed: dict[tuple[Value, int, int], Value], nodes: list[Node]) -> Node:
    """The merged node taking its weight packed by blocks (nodes computing it appended to
    `nodes` on first use), or the node itself where it runs in one block, in unequal blocks,
    or reads its weight transposed."""
    body: Graph = node.attr("body")
    found = split_contraction.plan(body)
    assert found is not None
    matmul, split = found.matmul, found.split
    (m, n), k = matmul.types[0].shape, matmul.inputs[1].type.shape[0]
    width, pieces = split.types[0].shape[-1], len(split.outputs)
    blocks = blas.column_blocks(width, 2.0 * m * k * n)
    block = blocks[0][1]
    if len(blocks) == 1 or matmul.attr("transpose_b") or any(j1 - j0 != block for j0, j1 in blocks):
        return node
    weight = node.inputs[body.params.index(matmul.inputs[1])]
    key = (weight, pieces, block)
    if key not in packed:
        dtype = weight.type.dtype
        split4 = Node("reshape", (weight,), (("shape", (k, pieces, len(blocks), block)),),
                      (TensorType(dtype, (k, pieces, len(blocks), block)),), name=f"{node.name}/packed")
        swapped = Node("transpose", (split4.out,), (("perm", (0, 2, 1, 3)),),
                       (TensorType(dtype, (k, len(blocks), pieces, block)),), name=f"{node.name}/packed")
        flat = Node("reshape", (swapped.out,), (("shape", (k, n)),), (TensorType(dtype, (k, n)),),
                    name=f"{node.name}/packed")
        nodes.extend((split4, swapped, flat))
        packed[key] = flat.out
    param = Node("param", (), (("index", len(body.params)),), (weight.type,)).out
    body = Graph(body.name, [*body.params, param], list(body.nodes), list(body.results))
    attrs = tuple((a, body if a == "body" else v) for a, v in node.attrs) + (("block_width", block),)
    return node.evolve(inputs=(*node.inputs, packed[key]), attrs=attrs)
