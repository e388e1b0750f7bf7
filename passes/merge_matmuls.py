"""Merging matmuls: independent products with the same right operand become one product.

An unrolled RNN multiplies every time step's input by the same weights (`x_t @ Wx`), and its
gradient multiplies every step's error by their transpose; none of these products needs
another's result. Computed as one matmul over the row-stacked left operands
(`concat([x_0, .., x_T]) @ Wx`, then split back into the steps' rows), they run as a single
large GEMM, which a BLAS runs far closer to its peak than T small ones (the weights are
packed once, not T times), and the step function makes one call instead of T. XLA's
DotMerger does the same. Where the left operands are all the axis-0 pieces of one tensor, in
order (`tf.unstack(x)` of a static RNN's input), the stacked rows are a reshape of that tensor
(a view) instead of a concat (a copy of it).

Only matmuls of rank-2 operands with static shapes and an untransposed left operand are
merged (rows then stack along axis 0); a set is merged only when no member depends on
another (through data, control or variable-effect edges), so the merged product can run
once all left operands are ready. The nodes are then scheduled again, in their old order
wherever the dependencies allow.
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Hashable

from tfjit.ir.graph import Graph, Node, Value, freeze_attrs
from tfjit.ops.registry import get_op


def merge_matmuls(graph: Graph) -> Graph:
    while True:
        members = _first_mergeable(graph)
        if members is None:
            return graph
        graph = _merge(graph, members)


def _key(node: Node) -> Hashable | None:
    """Matmuls with the same key may be merged; None for one that never is."""
    if node.op != "matmul" or node.control_inputs or node.attr("transpose_a"):
        return None
    a, b = (v.type for v in node.inputs)
    if not (a.is_fully_defined and b.is_fully_defined and len(a.shape) == 2 and len(b.shape) == 2):
        return None
    return (node.inputs[1], bool(node.attr("transpose_b")), node.device, node.types[0].dtype)


def _predecessors(graph: Graph) -> dict[Node, list[Node]]:
    """Every node's data, control and effect predecessors."""
    from .fuse import effect_edges

    preds: dict[Node, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        preds[node] += [v.node for v in node.inputs] + list(node.control_inputs)
    for before, after in effect_edges(graph):
        preds[after].append(before)
    return preds


def _first_mergeable(graph: Graph) -> list[Node] | None:
    """The first set (in schedule order) of two or more mutually independent matmuls sharing a key."""
    groups: dict[Hashable, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        key = _key(node)
        if key is not None:
            groups[key].append(node)
    groups = {k: g for k, g in groups.items() if len(g) > 1}
    if not groups:
        return None
    bit = {n: 1 << i for i, n in enumerate(n for g in groups.values() for n in g)}
    preds = _predecessors(graph)
    below: dict[Node, int] = {}  # the candidates each node depends on (itself included)
    for node in graph.nodes:
        mask = bit.get(node, 0)
        for p in preds[node]:
            mask |= below.get(p, 0)
        below[node] = mask
    for group in groups.values():
        chosen, taken = [], 0
        for node in group:
            if (below[node] & ~bit[node]) & taken == 0:
                chosen.append(node)
                taken |= bit[node]
        if len(chosen) > 1:
            return chosen
    return None


def _new_node(op: str, inputs: tuple[Value, ...], attrs: dict, like: Node, suffix: str) -> Node:
    frozen = freeze_attrs(attrs)
    types = get_op(op).infer(tuple(v.type for v in inputs), dict(frozen))
    return Node(op, inputs, frozen, types, device=like.device, loc=like.loc,
                name=f"{like.name or like.op}/{suffix}")


def _stacked(lefts: tuple[Value, ...], like: Node) -> Node:
    """The left operands stacked by rows: a reshape of the tensor they are the axis-0 pieces
    of, all in order (a static RNN's inputs from `unstack`: a view, where a concat copies
    them), else their concat."""
    source = lefts[0].node
    whole = source.inputs[0] if source.inputs else None
    if source.op in ("unstack", "split") and source.outputs == lefts and whole.type.shape is not None \
            and source.attr("axis") % len(whole.type.shape) == 0:
        rows = sum(v.type.shape[0] for v in lefts) if source.op == "split" else len(lefts) * lefts[0].type.shape[0]
        return _new_node("reshape", (whole,), {"shape": (rows, lefts[0].type.shape[1])}, like, "merged_rows")
    return _new_node("concat", lefts, {"axis": 0}, like, "merged_rows")


def _merge(graph: Graph, members: list[Node]) -> Graph:
    first = members[0]
    lefts = tuple(m.inputs[0] for m in members)
    rows = tuple(v.type.shape[0] for v in lefts)
    stacked = _stacked(lefts, first)
    product = _new_node("matmul", (stacked.out, first.inputs[1]), first.attr_dict, first, "merged")
    pieces = _new_node("split", (product.out,), {"axis": 0, "num": len(members), "sizes": rows}, first,
                       "merged_split")
    replaced = {m.out: piece for m, piece in zip(members, pieces.outputs)}
    dropped = set(members)
    kept = [n for n in graph.nodes if n not in dropped]
    index = {n: i for i, n in enumerate(graph.nodes)}
    position = {n: index[n] for n in kept}
    position.update({stacked: index[first], product: index[first], pieces: index[first]})
    preds = _predecessors(graph)
    preds.update({stacked: [v.node for v in stacked.inputs], product: [stacked, first.inputs[1].node],
                  pieces: [product]})
    deps = {n: {pieces if p in dropped else p for p in preds[n]} & position.keys() for n in position}
    order = _schedule(list(position), deps, position)
    body: list[Node] = []
    mapping: dict[Value, Value] = dict(replaced)
    nodes: dict[Node, Node] = {m: pieces for m in members}
    for node in order:
        inputs = tuple(mapping.get(v, v) for v in node.inputs)
        controls = tuple(dict.fromkeys(nodes.get(c, c) for c in node.control_inputs))
        new = node if (inputs, controls) == (node.inputs, node.control_inputs) else \
            node.evolve(inputs=inputs, control_inputs=controls)
        nodes[node] = new
        mapping.update((a, b) for a, b in zip(node.outputs, new.outputs) if a != b)
        body.append(new)
    results = [mapping.get(r, r) for r in graph.results]
    if stacked.op == "reshape":  # the pieces' source, now unused: dropped
        source = nodes[lefts[0].node]
        used = {v.node for n in body for v in n.inputs} | {c for n in body for c in n.control_inputs}
        if source not in used and not any(v in source.outputs for v in results):
            body.remove(source)
    return Graph(graph.name, list(graph.params), body, results)


def _schedule(nodes: list[Node], deps: dict[Node, set[Node]], position: dict[Node, int]) -> list[Node]:
    """A topological order of `nodes`, each as early as its old position allows."""
    users: dict[Node, list[Node]] = defaultdict(list)
    missing = {n: len(deps[n]) for n in nodes}
    for n in nodes:
        for p in deps[n]:
            users[p].append(n)
    tie = {n: i for i, n in enumerate(nodes)}
    ready = [(position[n], tie[n], n) for n in nodes if missing[n] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        *_, n = heapq.heappop(ready)
        order.append(n)
        for u in users[n]:
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready, (position[u], tie[u], u))
    if len(order) != len(nodes):
        raise RuntimeError("merging matmuls produced a cyclic schedule (a bug in the independence check)")
    return order
