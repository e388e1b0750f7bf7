"""The NumPy reference backend: runs a graph node by node with each op's reference.

It is the oracle every other backend and pass is tested against, so it is deliberately
simple: no fusion, no buffer reuse beyond dropping values after their last use.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfjit.errors import InvalidArgumentError, OpError, where
from tfjit.ir.graph import Graph, Node, Value
from tfjit.ir.types import TensorType, shape_compatible
from tfjit.ops.registry import get_op
from tfjit.runtime.state import RuntimeState


class ReferenceExecutable:
    """A graph prepared for repeated runs: op lookups and last uses computed once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._steps = [(node, get_op(node.op)) for node in graph.nodes]
        self._dead_after = _last_uses(graph)

    def run(self, args: Sequence[np.ndarray], state: RuntimeState) -> list[np.ndarray]:
        env: dict[Value, np.ndarray] = dict(zip(self.graph.params, args))
        for i, (node, opdef) in enumerate(self._steps):
            inputs = [env[v] for v in node.inputs]
            outputs = _call(node, opdef, inputs, state)
            for value, out in zip(node.outputs, outputs):
                env[value] = out
            for value in self._dead_after.get(i, ()):
                env.pop(value, None)
        return [env[v] for v in self.graph.results]


def compile_graph(graph: Graph) -> ReferenceExecutable:
    return ReferenceExecutable(graph)


def run_graph(graph: Graph, args: Sequence[np.ndarray], state: RuntimeState | None = None) -> list[np.ndarray]:
    """Compile and run once (tests and constant folding use this)."""
    return compile_graph(graph).run(args, state or RuntimeState())


def _call(node: Node, opdef: Any, inputs: list[np.ndarray], state: RuntimeState) -> tuple[np.ndarray, ...]:
    attrs = node.attr_dict
    if opdef.stateful:
        attrs["state"] = state
    try:
        out = opdef.reference(*inputs, **attrs)
    except OpError as e:
        raise type(e)(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e.message}") from None
    except (ValueError, IndexError, TypeError, ZeroDivisionError, FloatingPointError) as e:
        raise InvalidArgumentError(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e}") from e
    outputs = out if isinstance(out, tuple) else (out,)
    return tuple(_checked(node, t, np.asarray(o)) for t, o in zip(node.types, outputs))


def _checked(node: Node, ttype: TensorType, value: np.ndarray) -> np.ndarray:
    """A reference result must have its node's dtype and a shape its type admits."""
    if value.dtype != ttype.dtype.np_dtype or not shape_compatible(ttype.shape, value.shape):
        raise AssertionError(f"tfjit bug: reference of {node.op} returned {value.dtype}{list(value.shape)}, "
                             f"its type rule says {ttype} ({where(node.op, node.loc)})")
    return value


def _last_uses(graph: Graph) -> dict[int, list[Value]]:
    """For each step, the values no later step (nor the results) reads."""
    last: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v] = i
    keep = set(graph.results)
    out: dict[int, list[Value]] = {}
    for v, i in last.items():
        if v not in keep:
            out.setdefault(i, []).append(v)
    return out
