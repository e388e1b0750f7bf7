"""Ops that only gradient graphs need: undoing broadcasts and reductions, and the normal CDF.

They are ordinary registry entries (type rule, reference, fusion class, gradient rule), so
backward graphs stay plain IR that passes, backends and a second differentiation handle.
`like` inputs only supply a shape; they never get a gradient.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from ..compat.array_ops import zeros_like
from ..compat.math_ops import emit1, reduce_sum
from ..ir.types import TensorType
from ..ops.registry import Fusion, register, set_gradient
from ..ops.shapes import require_float
from ..trace.tensor import Operation, Tensor

Axes = tuple[int, ...] | None


# -- sum_to_shape: the inverse of a NumPy broadcast ---------------------------------------------
def _sum_to_shape_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    grad, like = in_types
    return (TensorType(grad.dtype, like.shape),)


def _sum_to_shape(grad: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sum `grad` over the axes along which `like`'s shape was broadcast to `grad`'s."""
    lead = grad.ndim - like.ndim
    stretched = tuple(lead + i for i, d in enumerate(like.shape) if d == 1 and grad.shape[lead + i] != 1)
    out = np.sum(grad, axis=tuple(range(lead)) + stretched, keepdims=True)
    return out.reshape(like.shape).astype(grad.dtype, copy=False)


register("sum_to_shape", _sum_to_shape_rule, _sum_to_shape, Fusion.REDUCTION,
         doc="sum(grad) down to the shape of `like` (run-time inverse of broadcasting)")


def sum_to_shape(grad: Tensor, like: Tensor) -> Tensor:
    return emit1("sum_to_shape", [grad, like], name="SumToShape")


@set_gradient("sum_to_shape")
def _sum_to_shape_grad(op: Operation, dy: Tensor) -> tuple[Tensor | None, ...]:
    grad, _ = op.inputs
    return dy + zeros_like(grad), None  # broadcasts dy back to grad's shape


# -- unreduce: broadcast a reduction's result back to its input's shape ----------------------
def _unreduce_rule(in_types: tuple[TensorType, ...], axes: Axes, keepdims: bool) -> tuple[TensorType, ...]:
    reduced, like = in_types
    return (TensorType(reduced.dtype, like.shape),)


def _unreduce(reduced: np.ndarray, like: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    if not keepdims:
        where = range(like.ndim) if axes is None else (a % like.ndim for a in axes)
        reduced = np.expand_dims(reduced, tuple(sorted(where)))
    return np.broadcast_to(reduced, like.shape).copy()


register("unreduce", _unreduce_rule, _unreduce, Fusion.LAYOUT,
         doc="broadcast the result of a reduction over `axes` back to the shape of `like`")


def unreduce(reduced: Tensor, like: Tensor, axes: Axes, keepdims: bool) -> Tensor:
    """`reduced` (a reduction of `like` over `axes`) repeated along those axes."""
    return emit1("unreduce", [reduced, like], {"axes": axes, "keepdims": bool(keepdims)}, name="Unreduce")


@set_gradient("unreduce")
def _unreduce_grad(op: Operation, dy: Tensor) -> tuple[Tensor | None, ...]:
    axes = op.get_attr("axes")
    return reduce_sum(dy, axis=None if axes is None else list(axes), keepdims=op.get_attr("keepdims")), None


# -- normal_cdf: the derivative of the exact gelu ----------------------------------------------
def _normal_cdf_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_float(t)
    return (t,)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        wide = x.astype(np.float32) if x.dtype == np.float16 else x
        return special.ndtr(wide).astype(x.dtype, copy=False)


register("normal_cdf", _normal_cdf_rule, _normal_cdf, Fusion.ELEMENTWISE,
         doc="the standard normal CDF, 0.5 * erfc(-x / sqrt(2))")


def normal_cdf(x: Tensor) -> Tensor:
    return emit1("normal_cdf", [x], name="NormalCdf")


def normal_pdf(x: Tensor) -> Tensor:
    from ..compat.math_ops import exp

    return exp(x * x * -0.5) * 0.3989422804014327


@set_gradient("normal_cdf")
def _normal_cdf_grad(op: Operation, dy: Tensor) -> tuple[Any, ...]:
    return (dy * normal_pdf(op.inputs[0]),)
