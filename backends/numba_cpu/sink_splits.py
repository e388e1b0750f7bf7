"""Moves a split of a contraction's result, and the loop kernel reading its pieces, into the
contraction kernel (an RNN cell's product, gate split and gate math become one kernel).

Fusion keeps the three apart (a split has several results, and the gate math runs at the
pieces' shape, not the product's); in this backend `split_contraction` runs them as one
kernel. The rewrite applies only where that kernel takes the merged body: the contraction's
only result feeds the split alone, and every piece feeds that one loop kernel alone.
"""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node, Value

from . import split_contraction
from .sink_concats import rebuilt


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
                and not loop.control_inputs and loop not in controlled and loop not in merged):
            continue
        node = _merged(product, split, loop)
        if split_contraction.plan(node.attr("body")) is not None:
            merged[loop] = node
            dropped.update((product, split))
    return rebuilt(graph, merged, dropped) if merged else graph


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

