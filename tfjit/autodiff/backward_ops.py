"""Ops that only gradient graphs need: undoing broadcasts and reductions, and the normal CDF.

They are ordinary registry entries (type rule, reference, fusion class, gradient rule), so
backward graphs stay plain IR that passes, backends and a second differentiation handle.
`like` inputs only supply a shape; they never get a gradient.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..compat.array_ops import zeros_like
from ..compat.math_ops import emit1, reduce_sum
from ..errors import OpTypeError
from ..ir.types import TensorType, dims_compatible
from ..ops.registry import Fusion, register, set_gradient
from ..ops.shapes import require_float
from ..trace.tensor import Operation, Tensor

Axes = tuple[int, ...] | None


# -- sum_to_shape: the inverse of a NumPy broadcast ---------------------------------------------
def _sum_to_shape_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    grad, like = in_types
    if grad.shape is not None and like.shape is not None:
        lead = len(grad.shape) - len(like.shape)
        if lead < 0 or not all(d == 1 or dims_compatible(d, g) for d, g in zip(like.shape, grad.shape[lead:])):
            raise OpTypeError(f"cannot sum {grad} down to the shape of {like}: {like} does not broadcast to it")
    return (TensorType(grad.dtype, like.shape),)


def _sum_to_shape(grad: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sum `grad` over the axes along which `like`'s shape was broadcast to `grad`'s."""
    lead = grad.ndim - like.ndim
    stretched = tuple(lead + i for i, d in enumerate(like.shape) if d == 1 and grad.shape[lead + i] != 1)
    wide = grad.astype(np.float32) if grad.dtype == np.float16 else grad
    out = np.sum(wide, axis=tuple(range(lead)) + stretched, keepdims=True)
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
    if reduced.shape is not None and like.shape is not None:
        kept = len(like.shape) if keepdims else len(like.shape) - (len(like.shape) if axes is None else len(axes))
        if len(reduced.shape) != kept:
            raise OpTypeError(f"{reduced} is not a reduction of {like} over axes {axes} (keepdims={keepdims})")
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
    from scipy.special import ndtr  # on first use, as tfjit/ops/elementwise.py's _sigmoid

    with np.errstate(all="ignore"):
        wide = x.astype(np.float32) if x.dtype == np.float16 else x
        return ndtr(wide).astype(x.dtype, copy=False)


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


# -- scatter-backs: the adjoints of strided_slice, gather and mirror_pad -----------------------
def _runtime(dynamic: np.ndarray | None, static: tuple[Any, ...]) -> tuple[int, ...]:
    """An argument's value: its run-time input when the node has one, else the attribute."""
    return static if dynamic is None else tuple(int(v) for v in dynamic.reshape(-1))


def _like_rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    """Result: the first input's dtype in the shape of the second (`like`)."""
    return (TensorType(in_types[0].dtype, in_types[1].shape),)


def _strided_slice_grad(dy: np.ndarray, like: np.ndarray, begin_t: np.ndarray | None = None,
                        end_t: np.ndarray | None = None, strides_t: np.ndarray | None = None, *,
                        begin: tuple[Any, ...], end: tuple[Any, ...], strides: tuple[Any, ...],
                        **masks: int) -> np.ndarray:
    from ..ops.layout import strided_index

    index = strided_index(_runtime(begin_t, begin), _runtime(end_t, end), _runtime(strides_t, strides), **masks)
    out = np.zeros(like.shape, dy.dtype)
    out[index] = dy
    return out


register("strided_slice_grad", _like_rule, _strided_slice_grad, Fusion.LAYOUT,
         doc="zeros shaped like `like` with `dy` written where strided_slice (same attrs) read")


@set_gradient("strided_slice_grad")
def _strided_slice_grad_grad(op: Operation, g: Tensor) -> tuple[Any, ...]:
    bounds = op.inputs[2:]
    sliced = emit1("strided_slice", [g, *bounds], op.node.attr_dict, name="StridedSlice")
    return (sliced, None) + (None,) * len(bounds)


def _scatter_add(updates: np.ndarray, indices: np.ndarray, like: np.ndarray, *, axis: int) -> np.ndarray:
    out = np.zeros(like.shape, updates.dtype)
    np.add.at(out, (slice(None),) * axis + (indices,), updates)
    return out


def _scatter_add_rule(in_types: tuple[TensorType, ...], axis: int) -> tuple[TensorType, ...]:
    updates, _, like = in_types
    return (TensorType(updates.dtype, like.shape),)


register("scatter_add", _scatter_add_rule, _scatter_add, Fusion.OPAQUE,
         doc="zeros shaped like `like` plus `updates` added at `indices` along `axis` (gather's adjoint)")


def scatter_add(updates: Tensor, indices: Tensor, like: Tensor, axis: int) -> Tensor:
    return emit1("scatter_add", [updates, indices, like], {"axis": axis}, name="ScatterAdd")


@set_gradient("scatter_add")
def _scatter_add_grad(op: Operation, g: Tensor) -> tuple[Any, ...]:
    from ..compat.layout_ops import gather

    _, indices, _ = op.inputs
    return gather(g, indices, axis=op.get_attr("axis")), None, None


def _mirror_sources(padded: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """For each position of a mirror-padded axis, the input position it copies."""
    n = padded - lo - hi
    p = np.arange(padded)
    offset = 1 if mode == "REFLECT" else 0
    left = lo - p - 1 + offset
    right = 2 * n - 1 - offset - (p - lo)
    return np.where(p < lo, left, np.where(p >= lo + n, right, p - lo))


def _mirror_pad_grad(dy: np.ndarray, like: np.ndarray, paddings_t: np.ndarray | None = None, *,
                     paddings: tuple[tuple[Any, Any], ...], mode: str) -> np.ndarray:
    pairs = paddings if paddings_t is None else [tuple(row) for row in paddings_t.tolist()]
    out = dy
    for axis, (lo, hi) in enumerate(pairs):
        folded = np.zeros(out.shape[:axis] + (like.shape[axis],) + out.shape[axis + 1:], dy.dtype)
        np.add.at(folded, (slice(None),) * axis + (_mirror_sources(out.shape[axis], int(lo), int(hi), mode),), out)
        out = folded
    return out


register("mirror_pad_grad", _like_rule, _mirror_pad_grad, Fusion.OPAQUE,
         doc="mirror_pad's adjoint: the padded copies added back onto the positions they mirror")


@set_gradient("mirror_pad_grad")
def _mirror_pad_grad_grad(op: Operation, g: Tensor) -> tuple[Any, ...]:
    extra = op.inputs[2:]
    attrs = op.node.attr_dict
    padded = emit1("mirror_pad", [g, *extra], attrs, name="MirrorPad")
    return (padded, None) + (None,) * len(extra)
