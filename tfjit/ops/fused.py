"""The `fused` op: a kernel the fusion pass formed, holding its own sub-graph (`body`).

Its inputs bind the body's parameters in order and its results are the body's results, so
a fused node means exactly what its body means; the reference backend runs the body.
"""
from __future__ import annotations

from typing import Any

from ..errors import OpTypeError
from ..ir.graph import Graph
from ..ir.types import TensorType
from .registry import Fusion, register

KINDS = ("loop", "reduction", "contraction", "update")


def _rule(in_types: tuple[TensorType, ...], kind: str, body: Graph) -> tuple[TensorType, ...]:
    if kind not in KINDS:
        raise OpTypeError(f"fused kernel kind must be one of {KINDS}, got {kind!r}")
    params = tuple(p.type for p in body.params)
    if params != in_types:
        raise OpTypeError(f"fused kernel @{body.name} takes ({', '.join(map(str, params))}) but is given "
                          f"({', '.join(map(str, in_types))})")
    return tuple(r.type for r in body.results)


def _reference(*inputs: Any, kind: str, body: Graph, state: Any) -> tuple[Any, ...]:
    from tfjit.backends.reference import compile_graph

    return tuple(compile_graph(body).run(list(inputs), state))


# Stateful so that update kernels (which assign variables) get the runtime state; the fusion
# pass decides effects per node from its body (see passes/effects.py).
register("fused", _rule, _reference, Fusion.OPAQUE, stateful=True, differentiable=False)
