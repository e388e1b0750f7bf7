"""Moves a variable's read into the kernel that updates the variable, so the update is in place.

An optimizer kernel such as Adam's `m += (g - m) * (1 - beta1)` receives `m`'s value as an
argument; the step holds that argument until the kernel returns, so the store sees a second
reference when the kernel writes `m` and must copy (tfjit/runtime/state.py). When the kernel
is the read's only user, reading the variable inside the kernel instead lets the read die
before the write inside the kernel's own step and the update reuse the variable's storage.
"""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node, Value

from tfjit.ops.registry import get_op


def sink_reads(graph: Graph) -> Graph:
    """`graph` with each movable variable read moved into the fused kernel writing it."""
    users: dict[Value, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            users.setdefault(v, []).append(node)
    results = set(graph.results)
    position = {n: i for i, n in enumerate(graph.nodes)}
    moved: dict[Node, list[Value]] = {}
    for node in graph.nodes:
        if node.op != "variable" or node.out in results or node.control_inputs:
            continue
        readers = users.get(node.out, [])
        if len(set(readers)) != 1 or readers[0].op != "fused":
            continue
        kernel = readers[0]
        var = node.attr("var")
        between = graph.nodes[position[node] + 1:position[kernel]]
        if var in _written(kernel) and not any(var in _written(n) for n in between):
            moved.setdefault(kernel, []).append(node.out)
    if not moved:
        return graph
    dropped = {v.node for values in moved.values() for v in values}
    mapping: dict[Value, Value] = {}
    node_map: dict[Node, Node] = {}
    body = []
    for node in graph.nodes:
        if node in dropped:
            continue
        new = _with_reads_inside(node, moved[node]) if node in moved else node
        inputs = tuple(mapping.get(v, v) for v in new.inputs)
        controls = tuple(node_map.get(c, c) for c in new.control_inputs)
        if inputs != new.inputs or controls != new.control_inputs:
            new = new.evolve(inputs=inputs, control_inputs=controls)
        if new is not node:
            node_map[node] = new
            mapping.update(zip(node.outputs, new.outputs))
        body.append(new)
    return Graph(graph.name, list(graph.params), body, [mapping.get(r, r) for r in graph.results])


def _written(node: Node) -> set[str]:
    """The variables a node (or any sub-graph it holds) assigns."""
    if get_op(node.op).writes_state and node.attr("var") is not None:
        return {node.attr("var")}
    return {var for _, body in node.attrs if isinstance(body, Graph) for n in body.nodes for var in _written(n)}


def _with_reads_inside(kernel: Node, reads: list[Value]) -> Node:
    """The fused `kernel` without the inputs `reads`: its body reads those variables itself."""
    body: Graph = kernel.attr("body")
    keep = [i for i, v in enumerate(kernel.inputs) if v not in reads]
    params = {body.params[i]: Node("param", (), (("index", k),), (body.params[i].type,)).out
              for k, i in enumerate(keep)}
    mapping: dict[Value, Value] = dict(params)
    nodes: list[Node] = []
    for i, v in enumerate(kernel.inputs):
        if v in reads and body.params[i] not in mapping:
            read = v.node.evolve()
            nodes.append(read)
            mapping[body.params[i]] = read.out
    for node in body.nodes:
        new = node.evolve(inputs=tuple(mapping.get(v, v) for v in node.inputs))
        nodes.append(new)
        mapping.update(zip(node.outputs, new.outputs))
    inner = Graph(body.name, list(params.values()), nodes, [mapping[r] for r in body.results])
    attrs = tuple((k, inner if k == "body" else a) for k, a in kernel.attrs)
    return kernel.evolve(inputs=tuple(kernel.inputs[i] for i in keep), attrs=attrs)
