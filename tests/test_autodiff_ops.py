"""Every differentiable op of the registry against finite differences, driven from the registry.

`CASES` holds, for each differentiable op, functions that build it through the TF1 API and
inputs to check them at. An op registered as differentiable without a gradient rule, or
without cases here, fails `test_every_differentiable_op_has_a_checked_gradient`: adding an op
without its gradient breaks the suite. Checks run in float64 (relative error < 1e-6) through
`tfjit.test.check_gradients` (inner-product identity along random directions); cases marked
`dynamic` also run with every dim unknown while building, exercising the run-time shape paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import tfjit as tf
from tfjit.autodiff import backward_ops
from tfjit.compat import cnn
from tfjit.compat.device import CPU0
from tfjit.compat.math_ops import emit1
from tfjit.ops.registry import REGISTRY

RTOL = 1e-6
_rng = np.random.default_rng(20240601)


def normal(*shape: int) -> np.ndarray:
    return _rng.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return _rng.uniform(0.5, 2.0, shape)


def nonzero(*shape: int) -> np.ndarray:
    """Away from 0, where abs, relu and friends have their kink."""
    return _rng.choice([-1.0, 1.0], shape) * _rng.uniform(0.2, 1.5, shape)


def distinct(*shape: int, offset: float = 0.0) -> np.ndarray:
    """Entries on a 0.1 grid (plus `offset` and jitter below 0.03): no near ties that finite
    differences could cross at the kinks of max and min."""
    n = int(np.prod(shape, dtype=np.int64))
    return ((_rng.permutation(n) - n // 2) * 0.1 + offset + _rng.uniform(0, 0.03, n)).reshape(shape)


def distinct_shifted(*shape: int) -> np.ndarray:
    """Like `distinct`, half a grid step away from every value `distinct` draws."""
    return distinct(*shape, offset=0.05)


def distributions(*shape: int) -> np.ndarray:
    """Rows summing to one along the last axis (dense cross-entropy labels)."""
    p = _rng.uniform(0.1, 1.0, shape)
    return p / p.sum(axis=-1, keepdims=True)


@dataclass
class Case:
    fn: Callable[..., Any]
    inputs: list[np.ndarray]
    dynamic: bool = False  # also check with every dim unknown while building

    def __repr__(self) -> str:
        return "x".join(str(list(a.shape)) for a in self.inputs)


def unary(fn: Callable[..., Any], draw: Callable[..., np.ndarray] = normal) -> list[Case]:
    return [Case(fn, [draw()]), Case(fn, [draw(5)]), Case(fn, [draw(2, 3, 4)], dynamic=True)]


def binary(fn: Callable[..., Any], draw_x: Callable[..., np.ndarray] = normal,
           draw_y: Callable[..., np.ndarray] = normal) -> list[Case]:
    shapes = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((), (3,)), ((2, 1, 3), (2, 3))]
    return [Case(fn, [draw_x(*a), draw_y(*b)], dynamic=i in (1, 2)) for i, (a, b) in enumerate(shapes)]


def reduction(fn: Callable[..., Any], draw: Callable[..., np.ndarray] = normal) -> list[Case]:
    calls = [lambda x: fn(x), lambda x: fn(x, axis=1), lambda x: fn(x, axis=[0, 2], keepdims=True),
             lambda x: fn(x, axis=-1)]
    return [Case(c, [draw(2, 3, 4)], dynamic=True) for c in calls] + [Case(lambda x: fn(x, axis=0), [draw(5)])]


def relu6_points(*shape: int) -> np.ndarray:
    return _rng.choice([-1.0, 3.0, 7.0], shape) + _rng.uniform(-0.8, 0.8, shape)


def _custom_square(x: tf.Tensor) -> Any:
    @tf.custom_gradient
    def square(v):
        return v * v, lambda dy: dy * 2.0 * v
    return square(x)


def _strided_slice_grad(dy: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    attrs = {"begin": (0, 1), "end": (3, 0), "strides": (2, 1), "begin_mask": 0, "end_mask": 2,
             "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0}
    return emit1("strided_slice_grad", [dy, like], attrs)


def _mirror_pad_grad(dy: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return emit1("mirror_pad_grad", [dy, like], {"paddings": ((1, 2), (2, 0)), "mode": "REFLECT"})


_POOL_2X2 = {"ksize": (1, 2, 2, 1), "strides": (1, 1, 1, 1), "padding": "SAME", "data_format": "NHWC",
             "dilations": (1, 1, 1, 1)}


def _copy_from_cpu(x: tf.Tensor) -> tf.Tensor:
    with tf.device("/cpu:0"):
        placed = tf.identity(x)
    return emit1("device_copy", [placed], {"device": CPU0})


CASES: dict[str, list[Case]] = {
    # -- elementwise unary
    "neg": unary(tf.negative), "abs": unary(tf.abs, nonzero), "square": unary(tf.square),
    "exp": unary(tf.exp), "log": unary(tf.log, positive), "log1p": unary(tf.log1p, positive),
    "expm1": unary(tf.expm1), "sqrt": unary(tf.sqrt, positive), "rsqrt": unary(tf.rsqrt, positive),
    "reciprocal": unary(tf.reciprocal, nonzero), "sin": unary(tf.sin), "cos": unary(tf.cos),
    "tanh": unary(tf.tanh), "sigmoid": unary(tf.sigmoid), "softplus": unary(tf.nn.softplus),
    "softsign": unary(tf.nn.softsign, nonzero), "elu": unary(tf.nn.elu, nonzero),
    "selu": unary(tf.nn.selu, nonzero), "relu": unary(tf.nn.relu, nonzero),
    "relu6": unary(tf.nn.relu6, relu6_points),
    "leaky_relu": unary(lambda x: tf.nn.leaky_relu(x, alpha=0.3), nonzero),
    "gelu": unary(tf.nn.gelu) + unary(lambda x: tf.nn.gelu(x, approximate=True)),
    "normal_cdf": unary(backward_ops.normal_cdf),
    "cast": [Case(lambda x: tf.cast(x, tf.float64) * 3.0, [normal(3, 2).astype(np.float32)])],
    # -- elementwise binary
    "add": binary(tf.add), "subtract": binary(tf.subtract), "multiply": binary(tf.multiply),
    "divide": binary(tf.divide, normal, nonzero), "pow": binary(tf.pow, positive),
    "maximum": binary(tf.maximum, distinct, distinct_shifted),
    "minimum": binary(tf.minimum, distinct, distinct_shifted),
    "squared_difference": binary(tf.squared_difference),
    "select": [Case(tf.where_v2, [normal(3, 4) > 0, normal(3, 4), normal(3, 4)], dynamic=True),
               Case(tf.where_v2, [normal(4) > 0, normal(3, 1), normal(3, 4)], dynamic=True),
               Case(tf.where, [normal(3) > 0, normal(3, 2), normal(3, 2)])],
    # -- reductions
    "sum": reduction(tf.reduce_sum), "mean": reduction(tf.reduce_mean),
    "max": reduction(tf.reduce_max, distinct), "min": reduction(tf.reduce_min, distinct),
    "prod": reduction(tf.reduce_prod, nonzero), "logsumexp": reduction(tf.reduce_logsumexp),
    # -- contractions
    "matmul": [Case(tf.matmul, [normal(3, 4), normal(4, 2)], dynamic=True),
               Case(lambda a, b: tf.matmul(a, b, transpose_a=True), [normal(4, 3), normal(4, 2)]),
               Case(lambda a, b: tf.matmul(a, b, transpose_b=True), [normal(3, 4), normal(2, 4)]),
               Case(lambda a, b: tf.matmul(a, b, transpose_a=True, transpose_b=True),
                    [normal(2, 4, 3), normal(2, 4)]),
               Case(tf.matmul, [normal(2, 3, 4), normal(4, 5)], dynamic=True),
               Case(tf.matmul, [normal(2, 1, 3, 4), normal(3, 4, 2)], dynamic=True)],
    "tensordot": [Case(lambda a, b: tf.tensordot(a, b, 1), [normal(2, 3), normal(3, 4)]),
                  Case(lambda a, b: tf.tensordot(a, b, [[2, 0], [0, 1]]), [normal(3, 2, 4), normal(4, 3, 2)]),
                  Case(lambda a, b: tf.tensordot(a, b, 0), [normal(2), normal(3)])],
    # -- layout
    "identity": unary(tf.identity),
    "placeholder_with_default": unary(lambda x: tf.placeholder_with_default(x, x.shape)),
    "reshape": [Case(lambda x: tf.reshape(x, [4, -1]), [normal(2, 3, 4)]),
                Case(lambda x: tf.reshape(x, [-1]), [normal(2, 3)], dynamic=True),
                Case(lambda x: tf.reshape(x, tf.shape(x)[::-1]), [normal(2, 3)], dynamic=True)],
    "squeeze": [Case(tf.squeeze, [normal(2, 1, 3, 1)]), Case(lambda x: tf.squeeze(x, [1]), [normal(2, 1, 3)])],
    "expand_dims": [Case(lambda x: tf.expand_dims(x, -1), [normal(2, 3)], dynamic=True),
                    Case(lambda x: tf.expand_dims(x, 0), [normal()])],
    "transpose": [Case(tf.transpose, [normal(2, 3, 4)]),
                  Case(lambda x: tf.transpose(x, [1, 2, 0]), [normal(2, 3, 4)], dynamic=True)],
    "concat": [Case(lambda a, b: tf.concat([a, b, a], axis=1), [normal(2, 3), normal(2, 1)], dynamic=True),
               Case(lambda a, b: tf.concat([a, b], axis=-1), [normal(2, 3, 2), normal(2, 3, 4)])],
    "stack": [Case(lambda a, b: tf.stack([a, b, a], axis=1), [normal(2, 3), normal(2, 3)])],
    "split": [Case(lambda x: tf.split(x, 3, axis=1), [normal(2, 6)]),
              Case(lambda x: tf.split(x, [1, -1], axis=0)[1], [normal(4, 2)], dynamic=True)],
    "unstack": [Case(lambda x: tf.unstack(x, axis=1), [normal(2, 3)]),
                Case(lambda x: tf.unstack(x)[2], [normal(3, 2)])],
    "slice": [Case(lambda x: tf.slice(x, [1, 0], [2, -1]), [normal(4, 3)], dynamic=True),
              Case(lambda x: tf.slice(x, [0, tf.shape(x)[1] - 2], [-1, 2]), [normal(3, 4)], dynamic=True)],
    "strided_slice": [Case(lambda x: x[1:, ::-2], [normal(4, 5)], dynamic=True),
                      Case(lambda x: x[..., 1, None], [normal(2, 3, 4)]),
                      Case(lambda x: x[-1], [normal(3, 2)]),
                      Case(lambda x: x[:tf.shape(x)[0] - 1, 1], [normal(3, 2)], dynamic=True)],
    "gather": [Case(lambda p, i: tf.gather(p, i), [normal(5, 3), np.array([0, 3, 3, 1])], dynamic=True),
               Case(lambda p, i: tf.gather(p, i, axis=1), [normal(2, 4, 3), np.array([[1, 1], [0, 3]])])],
    "pad": [Case(lambda x: tf.pad(x, [[1, 0], [2, 3]]), [normal(2, 3)], dynamic=True),
            Case(lambda x: tf.pad(x, [[tf.shape(x)[1], 0], [1, 1]]), [normal(2, 3)], dynamic=True),
            Case(lambda x: tf.pad(x, [[1, 1]], constant_values=2.0), [normal(3)])],
    "mirror_pad": [Case(lambda x: tf.pad(x, [[1, 2], [2, 0]], mode="REFLECT"), [normal(4, 3)]),
                   Case(lambda x: tf.pad(x, [[2, 2]], mode="SYMMETRIC"), [normal(3)]),
                   Case(lambda x: tf.pad(x, [[1, tf.shape(x)[0] - 2]], mode="REFLECT"), [normal(4)])],
    "tile": [Case(lambda x: tf.tile(x, [2, 3]), [normal(2, 3)], dynamic=True),
             Case(lambda x: tf.tile(x, [1, 2, 1]), [normal(2, 1, 3)]),
             Case(lambda x: tf.tile(x, [tf.shape(x)[1], 1]), [normal(2, 3)], dynamic=True)],
    "broadcast_to": [Case(lambda x: tf.broadcast_to(x, [2, 3, 4]), [normal(3, 1)]),
                     Case(lambda x: tf.broadcast_to(x, [4, 3]), [normal(3)]),
                     Case(lambda x: tf.broadcast_to(x, [2, tf.shape(x)[1]]), [normal(1, 3)], dynamic=True)],
    # -- nn
    "bias_add": [Case(tf.nn.bias_add, [normal(2, 3, 4), normal(4)], dynamic=True),
                 Case(lambda v, b: tf.nn.bias_add(v, b, data_format="NCHW"), [normal(2, 3, 2, 2), normal(3)])],
    "softmax": [Case(tf.nn.softmax, [normal(3, 4)], dynamic=True),
                Case(lambda x: tf.nn.softmax(x, axis=0), [normal(3, 4)])],
    "log_softmax": [Case(tf.nn.log_softmax, [normal(3, 4)], dynamic=True),
                    Case(lambda x: tf.nn.log_softmax(x, axis=1), [normal(2, 3, 2)])],
    "softmax_cross_entropy_with_logits": [
        Case(lambda x, y: tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=x),
             [normal(3, 4), distributions(3, 4)], dynamic=True),
        Case(lambda x, y: tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=x, axis=0),
             [normal(4, 2), distributions(2, 4).T.copy()])],
    "sparse_softmax_cross_entropy_with_logits": [
        Case(lambda x, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
             [normal(3, 4), np.array([0, 3, 1])], dynamic=True)],
    "sigmoid_cross_entropy_with_logits": [
        Case(lambda x, y: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x),
             [nonzero(3, 4), _rng.uniform(0, 1, (3, 4))], dynamic=True)],
    "l2_loss": [Case(tf.nn.l2_loss, [normal(3, 4)], dynamic=True)],
    # -- convolution and pooling
    "conv2d": [Case(lambda x, f: tf.nn.conv2d(x, f, 1, "SAME"), [normal(2, 4, 4, 2), normal(3, 3, 2, 3)], dynamic=True),
               Case(lambda x, f: tf.nn.conv2d(x, f, [1, 1, 2, 1], "VALID", data_format="NCHW", dilations=[1, 1, 1, 2]),
                    [normal(1, 2, 5, 6), normal(2, 2, 2, 3)])],
    "conv2d_backprop_input": [Case(lambda f, dy: tf.nn.conv2d_backprop_input([2, 5, 5, 2], f, dy, 2, "SAME"),
                                   [normal(3, 3, 2, 3), normal(2, 3, 3, 3)])],
    "conv2d_backprop_filter": [Case(lambda x, dy: tf.nn.conv2d_backprop_filter(x, [3, 3, 2, 3], dy, 2, "SAME"),
                                    [normal(2, 5, 5, 2), normal(2, 3, 3, 3)])],
    "depthwise_conv2d_native": [Case(lambda x, f: tf.nn.depthwise_conv2d_native(x, f, [1, 2, 2, 1], "SAME"),
                                     [normal(2, 5, 4, 2), normal(3, 3, 2, 2)], dynamic=True)],
    "depthwise_conv2d_native_backprop_input": [
        Case(lambda f, dy: tf.nn.depthwise_conv2d_native_backprop_input([1, 5, 5, 2], f, dy, [1, 2, 2, 1], "VALID"),
             [normal(3, 3, 2, 2), normal(1, 2, 2, 4)])],
    "depthwise_conv2d_native_backprop_filter": [
        Case(lambda x, dy: tf.nn.depthwise_conv2d_native_backprop_filter(x, [3, 3, 2, 2], dy, [1, 1, 1, 1], "SAME"),
             [normal(1, 4, 4, 2), normal(1, 4, 4, 4)])],
    "max_pool": [Case(lambda x: tf.nn.max_pool(x, 3, 2, "SAME"), [distinct(2, 5, 5, 2)], dynamic=True),
                 Case(lambda x: tf.nn.max_pool(x, [1, 1, 2, 2], [1, 1, 1, 2], "VALID", "NCHW"),
                      [distinct(1, 2, 4, 4)])],
    "max_pool_grad": [Case(lambda x, dy: cnn.max_pool_grad(x, tf.nn.max_pool(x, 2, 1, "SAME"), dy, _POOL_2X2),
                           [distinct(1, 3, 3, 2), normal(1, 3, 3, 2)])],
    "max_pool_grad_grad": [Case(lambda x, g: cnn.max_pool_grad_grad(x, tf.nn.max_pool(x, 2, 1, "SAME"), g, _POOL_2X2),
                                [distinct(1, 3, 3, 2), normal(1, 3, 3, 2)])],
    "avg_pool": [Case(lambda x: tf.nn.avg_pool(x, 3, 2, "SAME"), [normal(2, 5, 5, 2)], dynamic=True),
                 Case(lambda x: tf.nn.avg_pool(x, [1, 1, 2, 3], [1, 1, 2, 1], "VALID", "NCHW"), [normal(1, 2, 4, 5)])],
    "avg_pool_grad": [Case(lambda dy: cnn.avg_pool_grad([1, 3, 3, 2], dy, _POOL_2X2), [normal(1, 3, 3, 2)])],
    # -- gradient-only ops and user gradients
    "sum_to_shape": [Case(backward_ops.sum_to_shape, [normal(2, 3, 4), normal(3, 1)]),
                     Case(backward_ops.sum_to_shape, [normal(2, 3), normal(2, 3)], dynamic=True)],
    "unreduce": [Case(lambda r, x: backward_ops.unreduce(r, x, (1,), False), [normal(2, 4), normal(2, 3, 4)]),
                 Case(lambda r, x: backward_ops.unreduce(r, x, None, True), [normal(1, 1), normal(2, 3)],
                      dynamic=True)],
    "strided_slice_grad": [Case(_strided_slice_grad, [normal(2, 2), normal(4, 3)])],
    "scatter_add": [Case(lambda u, i, x: backward_ops.scatter_add(u, i, x, 0),
                         [normal(3, 2), np.array([1, 1, 0]), normal(4, 2)])],
    "mirror_pad_grad": [Case(_mirror_pad_grad, [normal(7, 5), normal(4, 3)])],
    "custom_gradient": unary(_custom_square),
    "device_copy": [Case(lambda x: emit1("device_copy", [x], {"device": CPU0}), [normal(2, 3)]),
                    Case(_copy_from_cpu, [normal(3)])],
}

# Leaves (placeholders, variables, params) read state and have no inputs to differentiate.
DIFFERENTIABLE = sorted(name for name, op in REGISTRY.items() if op.differentiable and not op.stateful)
CHECKED = [(name, case) for name in DIFFERENTIABLE for case in CASES.get(name, [])]


def ops_built(case: Case) -> set[str]:
    with tf.Graph().as_default() as graph:
        xs = [tf.placeholder(tf.as_dtype(a.dtype), a.shape) for a in case.inputs]
        case.fn(*xs)
    return {node.op for node in graph.nodes}


@pytest.mark.parametrize("op", DIFFERENTIABLE)
def test_every_differentiable_op_has_a_checked_gradient(op):
    assert REGISTRY[op].grad is not None, f"op {op!r} is differentiable but has no gradient rule"
    assert CASES.get(op), f"op {op!r} has no gradient check in tests/test_autodiff_ops.py CASES"
    for case in CASES[op]:
        assert op in ops_built(case), f"a gradient case for {op!r} does not build {op!r}"


@pytest.mark.parametrize("op,case", CHECKED, ids=[f"{op}-{case!r}" for op, case in CHECKED])
def test_first_order_matches_finite_differences(op, case):
    assert tf.test.check_gradients(case.fn, case.inputs) < RTOL
    if case.dynamic:
        assert tf.test.check_gradients(case.fn, case.inputs, static_shapes=False) < RTOL


SMOOTH_UNARY = ["neg", "abs", "square", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal",
                "sin", "cos", "tanh", "sigmoid", "softplus", "softsign", "elu", "selu", "relu", "relu6",
                "leaky_relu", "gelu", "normal_cdf", "identity", "custom_gradient"]


@pytest.mark.parametrize("op", SMOOTH_UNARY)
def test_second_order_of_unary_ops(op):
    for case in CASES[op]:
        assert tf.test.check_gradients(case.fn, case.inputs, order=2) < RTOL


SECOND_ORDER = ["pow", "divide", "maximum", "squared_difference", "select", "mean", "max", "prod",
                "logsumexp", "matmul", "tensordot", "concat", "strided_slice", "gather", "tile",
                "softmax", "log_softmax", "softmax_cross_entropy_with_logits",
                "sparse_softmax_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits",
                "sum_to_shape", "unreduce", "mirror_pad", "conv2d", "conv2d_backprop_input",
                "conv2d_backprop_filter", "depthwise_conv2d_native", "max_pool", "avg_pool"]


@pytest.mark.parametrize("op", SECOND_ORDER)
def test_second_order_of_other_ops(op):
    case = CASES[op][0]
    assert tf.test.check_gradients(case.fn, case.inputs, order=2) < RTOL
