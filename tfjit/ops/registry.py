"""The op registry: one `OpDef` per op holds everything about it.

Passes, backends and autodiff look ops up here and nowhere else. `tests/test_registry.py`
walks the registry and fails for an op that lacks a type rule, a reference or a fusion class.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from ..ir.types import TensorType


class Fusion(enum.Enum):
    """How the fusion pass may group an op with its neighbours."""

    ELEMENTWISE = "elementwise"  # same-shape, one output element per input element
    BROADCAST = "broadcast"      # elementwise with NumPy broadcasting of its inputs
    REDUCTION = "reduction"      # reduces along axes; absorbs elementwise producers/consumers
    LAYOUT = "layout"            # moves/copies elements (reshape, transpose, slice, concat)
    CONTRACTION = "contraction"  # matmul/conv: own kernel, takes an elementwise epilogue
    CREATION = "creation"        # constants and fills; folded or materialised once
    STATEFUL = "stateful"        # reads or writes state (variables, params); never merged
    RANDOM = "random"            # draws random numbers; never merged by CSE
    OPAQUE = "opaque"            # everything else: runs as its own kernel


# A type rule maps the input types and the attributes to the result types; it raises
# `tfjit.errors.OpTypeError` with a message naming the offending shapes or dtypes.
TypeRule = Callable[..., tuple[TensorType, ...]]
# A reference takes NumPy arrays and the attributes and returns an array or a tuple of them;
# stateful and random ops also receive the runtime's `state` keyword.
Reference = Callable[..., Any]


@dataclass
class OpDef:
    name: str
    type_rule: TypeRule
    reference: Reference
    fusion: Fusion
    # Gradient rule `(op: Operation, *output_grads) -> one gradient per input (None = none)`,
    # written with ordinary ops so gradients are graphs too (tfjit/autodiff).
    grad: Callable[..., Any] | None = None
    # False for ops with no gradient by definition (comparisons, argmax, casts to int, ...).
    differentiable: bool = True
    # Reads or writes the runtime state (or draws random numbers): such ops get `state=` and
    # are never merged, reordered or folded.
    stateful: bool = False
    # Changes state others can observe (assignments, prints, queues): never dropped while
    # the program runs, even when no result depends on it.
    writes_state: bool = False
    # Layout ops: the reference's result as a NumPy view of the input where one exists (the
    # reference copies). Backends that run it must keep fetched results owned by the caller
    # and never write into a value a view may share (tfjit/runtime/results.py).
    view: Reference | None = None
    doc: str = ""

    def infer(self, in_types: tuple[TensorType, ...], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
        return tuple(self.type_rule(in_types, **attrs))


REGISTRY: dict[str, OpDef] = {}


def register(name: str, type_rule: TypeRule, reference: Reference, fusion: Fusion, **kw: Any) -> OpDef:
    """Add one op; registering a name twice is a bug in tfjit, so it raises."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is registered twice")
    op = OpDef(name, type_rule, reference, fusion, **kw)
    REGISTRY[name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no op named {name!r} in the registry") from None


def set_gradient(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator the autodiff rules use to fill an op's gradient slot."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        get_op(name).grad = fn
        return fn

    return deco
