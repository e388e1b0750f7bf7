"""Gradient rules of the layout ops: each moves the gradient back where the element came from.

Run-time argument inputs (shapes, bounds, paddings, multiples, indices) get no gradient.
`broadcast_to` returns the full-shape gradient; the driver sums it back like any broadcast.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..compat import layout_ops as lay
from ..compat import math_ops as m
from ..compat.array_ops import reshape, shape
from ..ops.registry import set_gradient
from ..trace.tensor import Operation, Tensor
from .backward_ops import emit1, scatter_add

Grads = tuple[Any, ...]


def _no_grads(op: Operation, first: int = 1) -> tuple[None, ...]:
    """None for the run-time arguments after the first `first` inputs."""
    return (None,) * (len(op.inputs) - first)


def shape_of(x: Tensor) -> Any:
    """x's shape as a list of ints when known while building, else a `shape` tensor."""
    return list(x.type.shape) if x.type.is_fully_defined else shape(x)


def _dim(x: Tensor, axis: int) -> Any:
    """Size of one axis: an int when known, else a scalar tensor."""
    d = x.type.shape[axis] if x.type.shape is not None else None
    return d if isinstance(d, int) else shape(x)[axis]


def _back_to(op: Operation, dy: Tensor) -> Grads:
    """The gradient of an op that only reshapes: dy reshaped to the input's shape."""
    return (reshape(dy, shape_of(op.inputs[0])),) + _no_grads(op)


for _name in ("reshape", "squeeze", "expand_dims"):
    set_gradient(_name)(_back_to)


@set_gradient("identity")
def _identity(op: Operation, dy: Tensor) -> Grads:
    return (dy,)


@set_gradient("placeholder_with_default")
def _placeholder_with_default(op: Operation, dy: Tensor) -> Grads:
    return (dy,)


@set_gradient("broadcast_to")
def _broadcast_to(op: Operation, dy: Tensor) -> Grads:
    return (dy,) + _no_grads(op)  # full shape: the driver sums it back to x's shape


@set_gradient("transpose")
def _transpose(op: Operation, dy: Tensor) -> Grads:
    perm = op.get_attr("perm")
    return (lay.transpose(dy, None if perm is None else list(np.argsort(perm))),)


# -- joining and splitting -----------------------------------------------------------------------
@set_gradient("concat")
def _concat(op: Operation, dy: Tensor) -> Grads:
    """Each input gets the slice of dy it filled."""
    axis = op.get_attr("axis")
    rank = op.outputs[0].type.rank
    if rank is None:
        raise ValueError("the gradient of concat needs inputs of known rank")
    grads, offset = [], 0
    for x in op.inputs:
        begin = [0] * rank
        begin[axis] = offset
        grads.append(lay.slice(dy, begin, shape_of(x)))
        offset = offset + _dim(x, axis)
    return tuple(grads)


@set_gradient("stack")
def _stack(op: Operation, dy: Tensor) -> Grads:
    return tuple(lay.unstack(dy, num=len(op.inputs), axis=op.get_attr("axis")))


@set_gradient("split")
def _split(op: Operation, *dys: Tensor) -> Grads:
    return (lay.concat(list(dys), axis=op.get_attr("axis")),)


@set_gradient("unstack")
def _unstack(op: Operation, *dys: Tensor) -> Grads:
    return (lay.stack(list(dys), axis=op.get_attr("axis")),)


@set_gradient("tile")
def _tile(op: Operation, dy: Tensor) -> Grads:
    """Sum the copies: view dy as [m0, d0, m1, d1, ...] and sum the m axes (TF's formula)."""
    x = op.inputs[0]
    multiples = op.get_attr("multiples") if len(op.inputs) == 1 else op.inputs[1]
    rank = x.type.rank
    if rank is None:
        raise ValueError("the gradient of tile needs an input of known rank")
    split_shape = []
    for i in range(rank):
        split_shape += [multiples[i], _dim(x, i)]
    total = m.reduce_sum(reshape(dy, split_shape), axis=list(range(0, 2 * rank, 2)))
    return (total,) + _no_grads(op)


# -- slicing and gathering -----------------------------------------------------------------------
@set_gradient("slice")
def _slice(op: Operation, dy: Tensor) -> Grads:
    """dy padded with zeros back to the input's shape."""
    x = op.inputs[0]
    begin = op.get_attr("begin") if len(op.inputs) == 1 else op.inputs[1]
    if x.type.is_fully_defined and dy.type.is_fully_defined and len(op.inputs) == 1:
        after = [d - b - s for d, b, s in zip(x.type.shape, begin, dy.type.shape)]
        return (lay.pad(dy, list(zip(begin, after))),)
    x_shape = shape(x)
    before = m.cast(begin if isinstance(begin, Tensor) else lay.stack(list(begin)), x_shape.dtype)
    after = x_shape - shape(dy) - before
    return (lay.pad(dy, lay.stack([before, after], axis=1)),) + _no_grads(op)


@set_gradient("strided_slice")
def _strided_slice(op: Operation, dy: Tensor) -> Grads:
    bounds = op.inputs[1:]
    grad = emit1("strided_slice_grad", [dy, op.inputs[0], *bounds], op.node.attr_dict, name="StridedSliceGrad")
    return (grad,) + _no_grads(op)


@set_gradient("gather")
def _gather(op: Operation, dy: Tensor) -> Grads:
    params, indices = op.inputs
    return scatter_add(dy, indices, params, op.get_attr("axis")), None


# -- padding -------------------------------------------------------------------------------------
@set_gradient("pad")
def _pad(op: Operation, dy: Tensor) -> Grads:
    """The unpadded middle of dy; like TF, the constant value gets no gradient."""
    x = op.inputs[0]
    rank = x.type.rank
    if len(op.inputs) == 2:
        begin = [int(lo) for lo, _ in op.get_attr("paddings")]
    else:
        begin = lay.slice(op.inputs[2], [0, 0], [-1, 1])
        begin = reshape(begin, [-1]) if rank is None else reshape(begin, [rank])
    return (lay.slice(dy, begin, shape_of(x)),) + _no_grads(op)


@set_gradient("mirror_pad")
def _mirror_pad(op: Operation, dy: Tensor) -> Grads:
    extra = op.inputs[1:]
    grad = emit1("mirror_pad_grad", [dy, op.inputs[0], *extra], op.node.attr_dict, name="MirrorPadGrad")
    return (grad,) + _no_grads(op)


@set_gradient("device_copy")
def _device_copy(op: Operation, dy: Tensor) -> Grads:
    """The gradient travels back to the device the value came from."""
    source = op.inputs[0].op.node.device
    if source is None:
        return (dy,)
    return (emit1("device_copy", [dy], {"device": source}, name="DeviceCopy"),)
