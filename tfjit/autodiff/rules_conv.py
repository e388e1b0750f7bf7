"""Gradient rules of convolution and pooling ops (TF 1.x's formulas; issue 6).

A convolution is bilinear in its input and filter, and each of its two gradients is the same
bilinear form read another way, so the six rules close over the three ops of a family:
<conv(x, f), dy> = <x, backprop_input(f, dy)> = <f, backprop_filter(x, dy)>. Pooling gradients
are linear in the incoming gradient, so their gradients are the forward op again (avg_pool)
or max_pool_grad and max_pool_grad_grad of each other. The normalisations and dropout are
compositions and need no rules of their own.
"""
from __future__ import annotations

from typing import Any

from ..compat import cnn
from ..compat.math_ops import emit1
from ..ops.registry import set_gradient
from ..trace.tensor import Operation, Tensor

Grads = tuple[Any, ...]


def _attrs(op: Operation, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: op.get_attr(name) for name in names}


def _no_sizes(op: Operation, grads: Grads, known: int) -> Grads:
    """Pad with None for the optional sizes operand (integers get no gradient)."""
    return grads + (None,) * (len(op.inputs) - known)


def _conv_rules(kind: str) -> None:
    @set_gradient(kind)
    def _forward(op: Operation, dy: Tensor) -> Grads:
        x, f = op.inputs
        attrs = _attrs(op, cnn.WINDOW_ATTRS)
        return (cnn.backprop_input(kind, cnn.shape_operand(x), f, dy, attrs),
                cnn.backprop_filter(kind, x, cnn.shape_operand(f), dy, attrs))

    @set_gradient(f"{kind}_backprop_input")
    def _backprop_input(op: Operation, g: Tensor) -> Grads:
        f, dy = op.inputs[:2]
        attrs = _attrs(op, cnn.WINDOW_ATTRS)
        d_f = cnn.backprop_filter(kind, g, cnn.shape_operand(f), dy, attrs)
        return _no_sizes(op, (d_f, cnn.conv(kind, g, f, attrs)), 2)

    @set_gradient(f"{kind}_backprop_filter")
    def _backprop_filter(op: Operation, g: Tensor) -> Grads:
        x, dy = op.inputs[:2]
        attrs = _attrs(op, cnn.WINDOW_ATTRS)
        d_x = cnn.backprop_input(kind, cnn.shape_operand(x), g, dy, attrs)
        return _no_sizes(op, (d_x, cnn.conv(kind, x, g, attrs)), 2)


_conv_rules(cnn.CONV)
_conv_rules(cnn.DEPTHWISE)


@set_gradient("max_pool")
def _max_pool(op: Operation, dy: Tensor) -> Grads:
    (x,) = op.inputs
    return (cnn.max_pool_grad(x, op.outputs[0], dy, _attrs(op, cnn.POOL_ATTRS)),)


@set_gradient("max_pool_grad")
def _max_pool_grad(op: Operation, g: Tensor) -> Grads:
    """Piecewise constant in the pooled input: only the incoming gradient gets one."""
    x, y, _ = op.inputs
    return None, None, cnn.max_pool_grad_grad(x, y, g, _attrs(op, cnn.POOL_ATTRS))


@set_gradient("max_pool_grad_grad")
def _max_pool_grad_grad(op: Operation, g: Tensor) -> Grads:
    x, y, _ = op.inputs
    return None, None, cnn.max_pool_grad(x, y, g, _attrs(op, cnn.POOL_ATTRS))


@set_gradient("avg_pool")
def _avg_pool(op: Operation, dy: Tensor) -> Grads:
    (x,) = op.inputs
    return (cnn.avg_pool_grad(cnn.shape_operand(x), dy, _attrs(op, cnn.POOL_ATTRS)),)


@set_gradient("avg_pool_grad")
def _avg_pool_grad(op: Operation, g: Tensor) -> Grads:
    attrs = _attrs(op, cnn.POOL_ATTRS)
    return _no_sizes(op, (emit1("avg_pool", [g], attrs, "AvgPool"),), 1)
