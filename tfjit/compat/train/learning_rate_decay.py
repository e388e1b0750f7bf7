"""Learning-rate schedules of the global step, as TF 1.x defines them."""
from __future__ import annotations

from typing import Any, Sequence

from ...ir.types import int32, int64
from ...trace.graph import get_default_graph
from ...trace.tensor import Tensor, convert_to_tensor
from ..math_ops import cast, floor, less_equal, multiply, pow, where


def exponential_decay(learning_rate: Any, global_step: Any, decay_steps: Any, decay_rate: Any,
                      staircase: bool = False, name: str | None = None) -> Tensor:
    """`learning_rate * decay_rate ^ (global_step / decay_steps)`; the exponent is floored
    when `staircase`."""
    if global_step is None:
        raise ValueError("global_step is required for exponential_decay.")
    with get_default_graph().name_scope(name or "ExponentialDecay") as scope:
        lr = convert_to_tensor(learning_rate, name="learning_rate")
        p = cast(global_step, lr.dtype) / cast(decay_steps, lr.dtype)
        if staircase:
            p = floor(p)
        return multiply(lr, pow(cast(decay_rate, lr.dtype), p), name=scope)


def piecewise_constant(x: Any, boundaries: Sequence[Any], values: Sequence[Any],
                       name: str | None = None) -> Tensor:
    """`values[0]` while `x <= boundaries[0]`, `values[i]` while `boundaries[i-1] < x <=
    boundaries[i]`, and `values[-1]` after the last boundary."""
    if len(boundaries) != len(values) - 1:
        raise ValueError("The length of boundaries should be 1 less than the length of values")
    with get_default_graph().name_scope(name or "PiecewiseConstant"):
        x_t = convert_to_tensor(x)
        bounds = [_boundary(convert_to_tensor(b), x_t) for b in boundaries]
        vals = [convert_to_tensor(v) for v in values]
        for v in vals[1:]:
            if v.dtype != vals[0].dtype:
                raise ValueError(f"Values must have elements all with the same dtype ({vals[0].dtype.name} "
                                 f"vs {v.dtype.name}).")
        out = vals[-1]
        for b, v in reversed(list(zip(bounds, vals))):
            out = where(less_equal(x_t, b), v, out)
        return out


def _boundary(b: Tensor, x: Tensor) -> Tensor:
    """A boundary in x's dtype: int32 boundaries widen to an int64 x, other mismatches fail."""
    if b.dtype == x.dtype:
        return b
    if b.dtype == int32 and x.dtype == int64:
        return cast(b, int64)
    raise ValueError(f"Boundaries ({b.dtype.name}) must have the same dtype as x ({x.dtype.name}).")
