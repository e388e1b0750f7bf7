"""Checks a graph's invariants: SSA order, known ops, and result types that match type rules."""
from __future__ import annotations

from ..errors import OpTypeError
from .graph import Graph, Node, Value


class VerifyError(ValueError):
    pass


def verify(graph: Graph) -> None:
    """Raise `VerifyError` listing every broken invariant of `graph`."""
    from ..ops.registry import REGISTRY

    problems: list[str] = []
    defined: set[Value] = set()
    seen_nodes: set[Node] = set()
    for i, p in enumerate(graph.params):
        if p.node.op != "param" or p.node.attr("index") != i:
            problems.append(f"parameter {i} is not a `param[index={i}]` node")
        defined.add(p)
    for node in graph.nodes:
        where = f"{node.op} ({node.name or '#' + str(node.uid)}{', ' + str(node.loc) if node.loc else ''})"
        for v in node.inputs:
            if v not in defined:
                problems.append(f"{where}: input {v.node.op}#{v.node.uid}:{v.index} is used before it is defined")
        for c in node.control_inputs:
            if c not in seen_nodes:
                problems.append(f"{where}: control input {c.op}#{c.uid} is not an earlier node")
        opdef = REGISTRY.get(node.op)
        if opdef is None:
            problems.append(f"{where}: unknown op")
        elif node.op != "param":
            problems.extend(_check_types(node, opdef, where))
        for key, body in node.attrs:
            if isinstance(body, Graph):
                try:
                    verify(body)
                except VerifyError as e:
                    problems.append(f"{where}: {key}: {e}")
        defined.update(node.outputs)
        seen_nodes.add(node)
    for r in graph.results:
        if r not in defined:
            problems.append(f"result {r.node.op}#{r.node.uid}:{r.index} is not defined in the graph")
    if problems:
        raise VerifyError(f"graph @{graph.name} is invalid:\n  " + "\n  ".join(problems))


def _check_types(node: Node, opdef: object, where: str) -> list[str]:
    try:
        expected = opdef.infer(tuple(v.type for v in node.inputs), node.attr_dict)  # type: ignore[attr-defined]
    except OpTypeError as e:
        return [f"{where}: type rule rejects the inputs: {e}"]
    if tuple(expected) != node.types:
        got = ", ".join(map(str, node.types))
        want = ", ".join(map(str, expected))
        return [f"{where}: result types ({got}) differ from the type rule's ({want})"]
    return []
