"""Cuts the function a `Session.run` call needs out of the TF1 graph.

The result is an ordinary IR `Graph`: the fed tensors become its parameters (typed with the
fed arrays' concrete shapes), the fetched tensors its results, and only the nodes the
fetches need (data and control edges) remain, with types re-derived for the concrete shapes.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import InvalidArgumentError, OpTypeError, where
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops.registry import get_op


def needed_nodes(targets: Iterable[Node], feeds: set[Value]) -> set[Node]:
    """Every node the targets depend on, not looking past fed values."""
    needed: set[Node] = set()
    stack = list(targets)
    while stack:
        node = stack.pop()
        if node in needed:
            continue
        needed.add(node)
        stack.extend(v.node for v in node.inputs if v not in feeds)
        stack.extend(node.control_inputs)
    return needed


def extract(nodes: Sequence[Node], fetches: Sequence[Value], targets: Sequence[Node],
            feeds: Sequence[tuple[Value, TensorType]], name: str = "run",
            default_device: str | None = None) -> Graph:
    """The function computing `fetches` (and running `targets`) from `feeds`.

    `nodes` is the whole graph in a valid order; `feeds` pairs each fed value with the type
    of the array fed to it.
    """
    fed = {v: t for v, t in feeds}
    needed = needed_nodes([v.node for v in fetches if v not in fed] + list(targets), set(fed))
    mapping: dict[Value, Value] = {}
    params = []
    for index, (value, ttype) in enumerate(feeds):
        src = value.node
        param = Node("param", (), (("index", index),), (ttype,), device=src.device or default_device,
                     loc=src.loc, name=src.name if src.types and len(src.types) == 1 else
                     f"{src.name}:{value.index}")
        mapping[value] = param.out
        params.append(param.out)
    node_map: dict[Node, Node] = {}
    body: list[Node] = []
    for node in nodes:
        if node not in needed:
            continue
        if node.op == "placeholder":
            _missing_feed(node)
        new = _rebuild(node, mapping, node_map, default_device)
        node_map[node] = new
        for old_v, new_v in zip(node.outputs, new.outputs):
            mapping.setdefault(old_v, new_v)
        body.append(new)
    results = [mapping[v] for v in fetches]
    return Graph(name, params, body, results)


def _rebuild(node: Node, mapping: dict[Value, Value], node_map: dict[Node, Node],
             default_device: str | None) -> Node:
    inputs = tuple(mapping.get(v, v) for v in node.inputs)
    types = node.types
    if inputs != node.inputs:
        types = _reinfer(node, inputs)
    return node.evolve(inputs=inputs, types=types,
                       control_inputs=tuple(node_map[c] for c in node.control_inputs),
                       device=node.device or default_device)


def _reinfer(node: Node, inputs: tuple[Value, ...]) -> tuple[TensorType, ...]:
    try:
        return get_op(node.op).infer(tuple(v.type for v in inputs), node.attr_dict)
    except OpTypeError as e:
        raise InvalidArgumentError(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e}") from None


def _missing_feed(node: Node) -> None:
    t = node.types[0]
    shape = "<unknown>" if t.shape is None else "[" + ",".join("?" if not isinstance(d, int) else str(d) for d in t.shape) + "]"
    at = f" (created at {node.loc})" if node.loc else ""
    raise InvalidArgumentError(
        node, node.op,
        f"You must feed a value for placeholder tensor '{node.name}' with dtype {t.dtype.name} "
        f"and shape {shape}{at}: add it to feed_dict.")
