"""Gradient rules of the elementwise, reduction and contraction ops (TF 1.x's formulas).

A rule takes the forward `Operation` and one gradient per output and returns one gradient
per input (None: no gradient), written with the ordinary TF1 API so it is IR that can be
differentiated again. Rules of broadcasting ops return full-shape gradients; the driver
sums them back to each input's shape.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..compat import math_ops as m
from ..compat.array_ops import ones_like, size, zeros_like
from ..ops.registry import set_gradient
from ..trace.tensor import Operation, Tensor, convert_to_tensor
from .backward_ops import normal_cdf, normal_pdf, unreduce

Grads = tuple[Any, ...]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = 0.7978845608028654


def _x(op: Operation) -> Tensor:
    return op.inputs[0]


def _y(op: Operation) -> Tensor:
    return op.outputs[0]


# -- unary ---------------------------------------------------------------------------------------
@set_gradient("neg")
def _neg(op: Operation, dy: Tensor) -> Grads:
    return (-dy,)


@set_gradient("abs")
def _abs(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.sign(_x(op)),)  # sign(0) = 0: TF's convention at the kink


@set_gradient("square")
def _square(op: Operation, dy: Tensor) -> Grads:
    return (dy * (_x(op) * 2.0),)


@set_gradient("exp")
def _exp(op: Operation, dy: Tensor) -> Grads:
    return (dy * _y(op),)


@set_gradient("log")
def _log(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.reciprocal(_x(op)),)


@set_gradient("log1p")
def _log1p(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.reciprocal(_x(op) + 1.0),)


@set_gradient("expm1")
def _expm1(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.exp(_x(op)),)


@set_gradient("sqrt")
def _sqrt(op: Operation, dy: Tensor) -> Grads:
    return (dy * 0.5 / _y(op),)


@set_gradient("rsqrt")
def _rsqrt(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (dy * (y * y * y) * -0.5,)


@set_gradient("reciprocal")
def _reciprocal(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (-dy * (y * y),)


@set_gradient("sin")
def _sin(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.cos(_x(op)),)


@set_gradient("cos")
def _cos(op: Operation, dy: Tensor) -> Grads:
    return (-dy * m.sin(_x(op)),)


@set_gradient("tanh")
def _tanh(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (dy * (1.0 - y * y),)


@set_gradient("sigmoid")
def _sigmoid(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (dy * (y * (1.0 - y)),)


@set_gradient("softplus")
def _softplus(op: Operation, dy: Tensor) -> Grads:
    return (dy * m.sigmoid(_x(op)),)


@set_gradient("softsign")
def _softsign(op: Operation, dy: Tensor) -> Grads:
    return (dy / m.square(m.abs(_x(op)) + 1.0),)


@set_gradient("elu")
def _elu(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (m.where(y < 0.0, dy * (y + 1.0), dy),)


@set_gradient("selu")
def _selu(op: Operation, dy: Tensor) -> Grads:
    y = _y(op)
    return (m.where(y < 0.0, dy * (y + _SELU_SCALE * _SELU_ALPHA), dy * _SELU_SCALE),)


@set_gradient("relu")
def _relu(op: Operation, dy: Tensor) -> Grads:
    return (m.where(_x(op) > 0, dy, zeros_like(dy)),)  # relu'(0) = 0, as TF's ReluGrad


@set_gradient("relu6")
def _relu6(op: Operation, dy: Tensor) -> Grads:
    x = _x(op)
    inside = m.logical_and(x > 0, x < 6)
    return (m.where(inside, dy, zeros_like(dy)),)


@set_gradient("leaky_relu")
def _leaky_relu(op: Operation, dy: Tensor) -> Grads:
    alpha = op.get_attr("alpha")
    return (m.where(_x(op) > 0, dy, dy * alpha),)


@set_gradient("gelu")
def _gelu(op: Operation, dy: Tensor) -> Grads:
    x = _x(op)
    if not op.get_attr("approximate"):
        return (dy * (normal_cdf(x) + x * normal_pdf(x)),)
    t = m.tanh((x + x * x * x * 0.044715) * _SQRT_2_OVER_PI)
    dt = (1.0 - t * t) * ((x * x * (3 * 0.044715) + 1.0) * _SQRT_2_OVER_PI)
    return (dy * ((t + 1.0) * 0.5 + x * dt * 0.5),)


@set_gradient("cast")
def _cast(op: Operation, dy: Tensor) -> Grads:
    """Float to float passes the gradient through; casts to or from integers and bools stop it."""
    x = _x(op)
    if x.dtype.is_floating and dy.dtype.is_floating:
        return (m.cast(dy, x.dtype),)
    return (None,)


# -- binary --------------------------------------------------------------------------------------
@set_gradient("add")
def _add(op: Operation, dy: Tensor) -> Grads:
    return dy, dy


@set_gradient("subtract")
def _subtract(op: Operation, dy: Tensor) -> Grads:
    return dy, -dy


@set_gradient("multiply")
def _multiply(op: Operation, dy: Tensor) -> Grads:
    x, y = op.inputs
    return dy * y, x * dy


@set_gradient("divide")
def _divide(op: Operation, dy: Tensor) -> Grads:
    x, y = op.inputs
    return dy / y, dy * (-x / y / y)


@set_gradient("pow")
def _pow(op: Operation, dy: Tensor) -> Grads:
    """d/dy uses log(x) only where x > 0 (0 elsewhere), as TF does, so x = 0 gives no NaN."""
    x, y = op.inputs
    gx = dy * y * m.pow(x, y - 1.0)
    positive = x > 0
    log_x = m.where(positive, m.log(m.where(positive, x, ones_like(x))), zeros_like(x))
    return gx, dy * _y(op) * log_x


def _min_max(op: Operation, dy: Tensor, x_wins: Tensor) -> Grads:
    """The gradient goes to x where x wins (ties included, as in TF), else to y."""
    zeros = zeros_like(dy)
    return m.where(x_wins, dy, zeros), m.where(x_wins, zeros, dy)


@set_gradient("maximum")
def _maximum(op: Operation, dy: Tensor) -> Grads:
    x, y = op.inputs
    return _min_max(op, dy, m.greater_equal(x, y))


@set_gradient("minimum")
def _minimum(op: Operation, dy: Tensor) -> Grads:
    x, y = op.inputs
    return _min_max(op, dy, m.less_equal(x, y))


@set_gradient("squared_difference")
def _squared_difference(op: Operation, dy: Tensor) -> Grads:
    x, y = op.inputs
    gx = dy * 2.0 * (x - y)
    return gx, -gx


@set_gradient("select")
def _select(op: Operation, dy: Tensor) -> Grads:
    """No gradient to the condition; each branch gets dy where it was chosen."""
    cond = op.inputs[0]
    zeros = zeros_like(dy)
    return None, m.where_v2(cond, dy, zeros), m.where_v2(cond, zeros, dy)


# -- reductions ----------------------------------------------------------------------------------
def _reduced(op: Operation) -> dict[str, Any]:
    return {"axes": op.get_attr("axes"), "keepdims": bool(op.get_attr("keepdims"))}


def _spread(op: Operation, t: Tensor) -> Tensor:
    """A reduced tensor repeated along the reduced axes, back to the input's shape."""
    return unreduce(t, _x(op), **_reduced(op))


def _reduce_sum_like(op: Operation, t: Tensor) -> Tensor:
    axes = op.get_attr("axes")
    return m.reduce_sum(t, axis=None if axes is None else list(axes), keepdims=op.get_attr("keepdims"))


@set_gradient("sum")
def _sum(op: Operation, dy: Tensor) -> Grads:
    return (_spread(op, dy),)


@set_gradient("mean")
def _mean(op: Operation, dy: Tensor) -> Grads:
    return (_spread(op, dy) / _count(_x(op), _y(op)),)


def _count(x: Tensor, y: Tensor) -> Tensor:
    """How many inputs each output averages (static when the shapes are known)."""
    nx, ny = x.type.num_elements, y.type.num_elements
    if nx is not None and ny is not None:
        return convert_to_tensor(np.asarray(nx // max(ny, 1), x.dtype.np_dtype))
    return m.cast(m.floordiv(size(x), m.maximum(size(y), 1)), x.dtype)


def _extreme(op: Operation, dy: Tensor) -> Grads:
    """Ties share the gradient equally, as TF's reduce_max/reduce_min gradients do."""
    x = _x(op)
    chosen = m.cast(m.equal(_spread(op, _y(op)), x), x.dtype)
    count = _spread(op, _reduce_sum_like(op, chosen))
    return (chosen / count * _spread(op, dy),)


set_gradient("max")(_extreme)
set_gradient("min")(_extreme)


@set_gradient("prod")
def _prod(op: Operation, dy: Tensor) -> Grads:
    """The product of the other elements, exact when some are zero (no division by them)."""
    x = _x(op)
    is_zero = m.equal(x, 0.0)
    safe = m.where(is_zero, ones_like(x), x)
    axes = op.get_attr("axes")
    axis = None if axes is None else list(axes)
    keep = op.get_attr("keepdims")
    nonzero_product = _spread(op, m.reduce_prod(safe, axis=axis, keepdims=keep))
    zeros_in_group = _spread(op, m.reduce_sum(m.cast(is_zero, x.dtype), axis=axis, keepdims=keep))
    zeros = zeros_like(x)
    at_zero = m.where(m.equal(zeros_in_group, 1.0), nonzero_product, zeros)
    elsewhere = m.where(m.equal(zeros_in_group, 0.0), nonzero_product / safe, zeros)
    return (m.where(is_zero, at_zero, elsewhere) * _spread(op, dy),)


@set_gradient("logsumexp")
def _logsumexp(op: Operation, dy: Tensor) -> Grads:
    return (_spread(op, dy) * m.exp(_x(op) - _spread(op, _y(op))),)


# -- contractions --------------------------------------------------------------------------------
@set_gradient("matmul")
def _matmul(op: Operation, dy: Tensor) -> Grads:
    """TF's four cases; broadcast batch dims are summed back by the driver."""
    a, b = op.inputs
    ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
    if not ta and not tb:
        return m.matmul(dy, b, transpose_b=True), m.matmul(a, dy, transpose_a=True)
    if not ta and tb:
        return m.matmul(dy, b), m.matmul(dy, a, transpose_a=True)
    if ta and not tb:
        return m.matmul(b, dy, transpose_b=True), m.matmul(a, dy)
    return (m.matmul(b, dy, transpose_a=True, transpose_b=True),
            m.matmul(dy, a, transpose_a=True, transpose_b=True))


@set_gradient("tensordot")
def _tensordot(op: Operation, dy: Tensor) -> Grads:
    """Contract dy with the other operand over its free axes, then restore the axis order."""
    a, b = op.inputs
    axes_a, axes_b = list(op.get_attr("axes_a")), list(op.get_attr("axes_b"))
    free_a = [i for i in range(a.type.rank) if i not in axes_a]
    free_b = [j for j in range(b.type.rank) if j not in axes_b]
    dy_b = list(range(len(free_a), len(free_a) + len(free_b)))
    grad_a = m.tensordot(dy, b, [dy_b, free_b])
    order_a = free_a + [axes_a[axes_b.index(j)] for j in sorted(axes_b)]
    grad_b = m.tensordot(a, dy, [free_a, list(range(len(free_a)))])
    order_b = [axes_b[axes_a.index(i)] for i in sorted(axes_a)] + free_b
    return _restore_order(grad_a, order_a), _restore_order(grad_b, order_b)


def _restore_order(t: Tensor, order: list[int]) -> Tensor:
    """`t`, whose axis k is the operand's axis order[k], with the operand's axis order."""
    from ..compat.layout_ops import transpose

    if order == sorted(order):
        return t
    return transpose(t, [int(p) for p in np.argsort(order)])
