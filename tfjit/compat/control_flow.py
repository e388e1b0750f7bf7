"""Grouping and ordering ops: `tf.group`, `tf.no_op`, `tf.control_dependencies`, `tf.tuple`."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from ..trace.graph import get_default_graph
from ..trace.tensor import Operation
from .math_ops import emit1


def no_op(name: str | None = None) -> Operation:
    return get_default_graph().emit("no_op", [], name=name or "NoOp")


def group(*inputs: Any, name: str | None = None) -> Operation:
    """An op that runs all `inputs` (Tensors, Operations, Variables; nested lists allowed)."""
    deps = list(_flatten(inputs))
    graph = get_default_graph()
    with graph.control_dependencies(deps):
        return graph.emit("no_op", [], name=name or "group_deps")


def _flatten(items: Any) -> Iterator[Any]:
    for x in items:
        if isinstance(x, (list, tuple)):
            yield from _flatten(x)
        elif isinstance(x, dict):
            yield from _flatten(list(x.values()))
        elif hasattr(x, "_as_graph_tensor"):
            yield x._as_graph_tensor()
        elif x is not None:
            yield x


def control_dependencies(control_inputs: Sequence[Any] | None) -> contextlib.AbstractContextManager:
    if control_inputs is None:
        return get_default_graph().control_dependencies(None)
    return get_default_graph().control_dependencies(list(_flatten(control_inputs)))


def tuple_(tensors: Sequence[Any], name: str | None = None, control_inputs: Sequence[Any] | None = None) -> list[Any]:
    """TF's `tf.tuple`: each output waits for all inputs (and `control_inputs`)."""
    gate = group(*[t for t in tensors if t is not None], *(control_inputs or []))
    out = []
    graph = get_default_graph()
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        with graph.control_dependencies([gate]):
            out.append(emit1("identity", [t], name=name or "tuple"))
    return out


