"""Gradient rules of the neural-network ops (TF 1.x's formulas).

The cross-entropy rules use TF's cheap forms: softmax minus labels for the logits (exact
when each row of labels sums to one, which is what TF computes too), and -log_softmax for
dense labels.
"""
from __future__ import annotations

from typing import Any

from ..compat import math_ops as m
from ..compat import nn_ops as nn
from ..compat.layout_ops import one_hot
from ..ops.registry import set_gradient
from ..trace.tensor import Operation, Tensor
from .backward_ops import unreduce
from .rules_layout import shape_of

Grads = tuple[Any, ...]


@set_gradient("bias_add")
def _bias_add(op: Operation, dy: Tensor) -> Grads:
    """The bias gets dy summed over every axis but the channel one (TF's BiasAddGrad)."""
    rank = dy.type.rank
    if rank is None:
        raise ValueError(f"the gradient of bias_add ({op.name}) needs a value of known rank")
    channel = 1 if op.get_attr("data_format") == "NCHW" else rank - 1
    return dy, m.reduce_sum(dy, axis=[a for a in range(rank) if a != channel])


@set_gradient("softmax")
def _softmax(op: Operation, dy: Tensor) -> Grads:
    y = op.outputs[0]
    axis = op.get_attr("axis")
    return ((dy - m.reduce_sum(dy * y, axis=axis, keepdims=True)) * y,)


@set_gradient("log_softmax")
def _log_softmax(op: Operation, dy: Tensor) -> Grads:
    y = op.outputs[0]
    axis = op.get_attr("axis")
    return (dy - m.exp(y) * m.reduce_sum(dy, axis=axis, keepdims=True),)


def _per_class(op: Operation, dy: Tensor) -> Tensor:
    """The per-example gradient repeated along the class axis."""
    axis = op.get_attr("axis") if op.node.op != "sparse_softmax_cross_entropy_with_logits" else -1
    return unreduce(dy, op.inputs[0], axes=(axis,), keepdims=False)


@set_gradient("softmax_cross_entropy_with_logits")
def _softmax_xent(op: Operation, dy: Tensor) -> Grads:
    logits, labels = op.inputs
    axis = op.get_attr("axis")
    spread = _per_class(op, dy)
    return spread * (nn.softmax(logits, axis=axis) - labels), spread * -nn.log_softmax(logits, axis=axis)


@set_gradient("sparse_softmax_cross_entropy_with_logits")
def _sparse_softmax_xent(op: Operation, dy: Tensor) -> Grads:
    logits, labels = op.inputs
    depth = logits.type.shape[-1] if logits.type.shape is not None else None
    depth = depth if isinstance(depth, int) else shape_of(logits)[-1]
    hot = one_hot(labels, depth, dtype=logits.dtype)
    return _per_class(op, dy) * (nn.softmax(logits) - hot), None


@set_gradient("sigmoid_cross_entropy_with_logits")
def _sigmoid_xent(op: Operation, dy: Tensor) -> Grads:
    logits, labels = op.inputs
    return dy * (m.sigmoid(logits) - labels), dy * -logits


@set_gradient("l2_loss")
def _l2_loss(op: Operation, dy: Tensor) -> Grads:
    return (op.inputs[0] * dy,)
