"""Math ops through the TF1 API, each checked against NumPy: elementwise unary and binary
ops, Python operators, reductions, contractions, shape queries and build-time errors.

Expected values are computed in float64 (int64 for integers) from the very inputs fed, then
rounded to the op's dtype; tolerances are about one unit in the last place of that dtype.
Every NumPy RuntimeWarning is an error: TF returns inf/NaN silently, so must tfjit.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import special

import tfjit as tf
from tfjit.errors import GraphError
from tfjit.ops import get_op
from tfjit.ops.elementwise import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY
from tfjit.ops.reduction import REDUCTIONS

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int32, np.int64]
TOL = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-3, -2.5, 3.7, 20.0, -20.0, 0.5, -1.0])
SEED = int(os.environ.get("TFJIT_TEST_SEED", "1234"))
RNG = np.random.default_rng(SEED)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws the same inputs whichever tests run before it (TFJIT_TEST_SEED varies them)."""
    global RNG
    RNG = np.random.default_rng(SEED)


# -- helpers ----------------------------------------------------------------------------------
def run(fetches, feed=None):
    with tf.Session() as sess:
        return sess.run(fetches, feed_dict=feed)


def placeholder_for(array: np.ndarray, unknown: bool = False):
    """A placeholder fed `array`; `unknown=True` leaves every dim as None."""
    shape = [None] * array.ndim if unknown else list(array.shape)
    return tf.placeholder(tf.as_dtype(array.dtype), shape)


def expected(fn, *arrays: np.ndarray, dtype=None) -> np.ndarray:
    """`fn` evaluated in float64 (int64 for integers), rounded to `dtype` (the inputs' by default)."""
    dtype = np.dtype(dtype or arrays[0].dtype)
    wide = [a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64) if a.dtype.kind in "iu" else a
            for a in arrays]
    with np.errstate(all="ignore"):
        return np.asarray(fn(*wide)).astype(dtype)


def assert_matches(actual, want: np.ndarray) -> None:
    actual = np.asarray(actual)
    assert actual.dtype == want.dtype, (actual.dtype, want.dtype)
    assert actual.shape == want.shape, (actual.shape, want.shape)
    if want.dtype.kind == "f":
        tol = TOL[want.dtype]
        np.testing.assert_allclose(actual.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(actual, want)


def float_inputs(dtype, shape=(4, 6)) -> np.ndarray:
    n = int(np.prod(shape))
    values = np.concatenate([SPECIAL, RNG.normal(0.0, 3.0, n - SPECIAL.size)])
    return values.reshape(shape).astype(dtype)


def int_inputs(dtype, shape=(3, 4), low=-9, high=10) -> np.ndarray:
    return RNG.integers(low, high, size=shape).astype(dtype)


# -- unary ----------------------------------------------------------------------------------
def _erfc(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erfc, otypes=[np.float64])(x)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

FLOAT_UNARY = {
    "exp": (tf.exp, np.exp),
    "log": (tf.log, np.log),
    "log1p": (tf.log1p, np.log1p),
    "expm1": (tf.expm1, np.expm1),
    "sqrt": (tf.sqrt, np.sqrt),
    "rsqrt": (tf.rsqrt, lambda x: 1.0 / np.sqrt(x)),
    "reciprocal": (tf.reciprocal, lambda x: 1.0 / x),
    "sin": (tf.sin, np.sin),
    "cos": (tf.cos, np.cos),
    "tanh": (tf.tanh, np.tanh),
    "sigmoid": (tf.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x))),
    "elu": (tf.nn.elu, lambda x: np.where(x < 0, np.expm1(x), x)),
    "selu": (tf.nn.selu, lambda x: SELU_SCALE * np.where(x < 0, SELU_ALPHA * np.expm1(x), x)),
    "softplus": (tf.nn.softplus, lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))),
    "softsign": (tf.nn.softsign, lambda x: x / (1.0 + np.abs(x))),
    "floor": (tf.floor, np.floor),
    "ceil": (tf.ceil, np.ceil),
    "gelu": (tf.nn.gelu, lambda x: 0.5 * x * _erfc(-x / np.sqrt(2.0))),
    "gelu_tanh": (lambda t: tf.nn.gelu(t, approximate=True),
                  lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))),
}
NUMERIC_UNARY = {
    "neg": (tf.negative, np.negative),
    "abs": (tf.abs, np.abs),
    "sign": (tf.sign, lambda x: np.where(np.isnan(x), 0, np.sign(x)) if x.dtype.kind == "f" else np.sign(x)),
    "square": (tf.square, np.square),
    "round": (tf.round, np.round),
    "relu": (tf.nn.relu, lambda x: np.where(np.isnan(x), x, np.maximum(x, 0))),
    "relu6": (tf.nn.relu6, lambda x: np.where(np.isnan(x), x, np.clip(x, 0, 6))),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(FLOAT_UNARY))
def test_float_unary(name, dtype):
    api, ref = FLOAT_UNARY[name]
    x = float_inputs(dtype)
    t = placeholder_for(x)
    u = placeholder_for(x[:2], unknown=True)
    out, out_unknown = run([api(t), api(u)], {t: x, u: x[:2]})
    assert_matches(out, expected(ref, x))
    assert_matches(out_unknown, expected(ref, x[:2]))
    assert api(t).shape.as_list() == [4, 6] and api(u).shape.as_list() == [None, None]


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("name", sorted(NUMERIC_UNARY))
def test_numeric_unary(name, dtype):
    api, ref = NUMERIC_UNARY[name]
    x = float_inputs(dtype) if np.dtype(dtype).kind == "f" else int_inputs(dtype)
    t = placeholder_for(x, unknown=True)
    assert_matches(run(api(t), {t: x}), expected(ref, x))


def test_sign_of_nan_is_zero_as_tf1_documents():
    x = np.array([np.nan, -np.inf, -0.5, 0.0, 2.0], np.float32)
    np.testing.assert_array_equal(run(tf.sign(x)), [0.0, -1.0, -1.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", FLOATS)
def test_round_is_half_to_even(dtype):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 3.5001], dtype)
    out = run(tf.round(x))
    np.testing.assert_array_equal(out, np.array([0, 2, 2, -0.0, -2, -2, 2, 4], dtype))


def test_overflow_gives_inf_and_saturates_without_nan():
    x = np.array([1000.0, -1000.0, 88.0, -88.0], np.float32)
    exp, sig, soft, tanh = run([tf.exp(x), tf.sigmoid(x), tf.nn.softplus(x), tf.tanh(x)])
    np.testing.assert_array_equal(exp[:2], [np.inf, 0.0])
    np.testing.assert_array_equal(sig[:2], [1.0, 0.0])
    np.testing.assert_array_equal(soft[:2], [1000.0, 0.0])
    np.testing.assert_array_equal(tanh[:2], [1.0, -1.0])
    assert not np.isnan(np.concatenate([exp, sig, soft, tanh])).any()


def test_gelu_exact_is_accurate_for_large_negative_inputs():
    x = np.array([-12.0, -8.0, -5.0], np.float64)
    out = run(tf.nn.gelu(x))
    want = 0.5 * x * _erfc(-x / np.sqrt(2.0))
    assert (out < 0).all()
    np.testing.assert_allclose(out, want, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.2, 0.01, 1.5])
@pytest.mark.parametrize("dtype", FLOATS)
def test_leaky_relu(dtype, alpha):
    x = float_inputs(dtype)
    t = placeholder_for(x, unknown=True)
    alpha_t = np.float64(np.asarray(alpha, dtype))  # TF casts alpha to the features' dtype
    want = expected(lambda v: np.where(v > 0, v, v * alpha_t), x)
    assert_matches(run(tf.nn.leaky_relu(t, alpha=alpha), {t: x}), want)


def test_leaky_relu_default_alpha_and_integer_features():
    x = np.array([-5, 0, 3], np.int32)
    out = run(tf.nn.leaky_relu(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 0.0, 3.0], rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS)
def test_predicates(dtype):
    x = float_inputs(dtype)
    t = placeholder_for(x, unknown=True)
    nan, finite, inf = run([tf.is_nan(t), tf.is_finite(t), tf.is_inf(t)], {t: x})
    assert_matches(nan, np.isnan(x))
    assert_matches(finite, np.isfinite(x))
    assert_matches(inf, np.isinf(x))


def test_logical_not_and_invert_operator():
    x = np.array([[True, False], [False, False]])
    t = placeholder_for(x)
    a, b = run([tf.logical_not(t), ~t], {t: x})
    assert_matches(a, ~x)
    assert_matches(b, ~x)


CAST_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_]


def _cast_source(src: np.dtype, dst: np.dtype) -> np.ndarray:
    """Values every target can hold (negative ones only for signed and float targets)."""
    unsigned = dst.kind in "ub"
    if src.kind == "b":
        return np.array([True, False, True])
    if src.kind == "f":
        vals = [0.0, 1.7, 3.0, 100.5, 0.25] + ([] if unsigned else [-2.9, -100.5, -0.0])
    else:
        vals = [0, 1, 3, 100] + ([] if src.kind == "u" or unsigned else [-2, -100])
    return np.array(vals, src)


@pytest.mark.parametrize("dst", CAST_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("src", CAST_DTYPES, ids=lambda d: np.dtype(d).name)
def test_cast_all_pairs(src, dst):
    src, dst = np.dtype(src), np.dtype(dst)
    x = _cast_source(src, dst)
    t = placeholder_for(x, unknown=True)
    out = run(tf.cast(t, tf.as_dtype(dst)), {t: x})
    if dst.kind == "b":
        want = x != 0
    elif src.kind == "f" and dst.kind in "iu":
        want = np.trunc(x.astype(np.float64)).astype(dst)  # C casts truncate toward zero
    else:
        want = x.astype(dst)
    assert_matches(out, want)


@pytest.mark.parametrize("dst", CAST_DTYPES, ids=lambda d: np.dtype(d).name)
def test_cast_of_special_values_is_quiet(dst):
    """NaN and inf to integers are undefined in C (and TF) but must not warn; nonzero is True."""
    x = SPECIAL.astype(np.float32)
    out = run(tf.cast(x, tf.as_dtype(dst)))
    assert out.dtype == dst and out.shape == x.shape
    if np.dtype(dst).kind == "b":
        np.testing.assert_array_equal(out, x != 0)


def test_cast_to_same_dtype_returns_the_tensor():
    t = tf.placeholder(tf.float32, [2])
    assert tf.cast(t, tf.float32) is t
    assert tf.cast(t, tf.int32).op.node.op == "cast"
    assert tf.to_float(tf.constant([1, 2])).dtype == tf.float32


# -- binary ---------------------------------------------------------------------------------
SHAPE_PAIRS = [((2, 3), (2, 3)), ((2, 3), ()), ((), (2, 3)), ((2, 3), (3,)), ((2, 3), (2, 1)),
               ((4, 1, 3), (2, 3)), ((1,), (5,))]


def _operands(dtype, sx, sy, kind="any"):
    if np.dtype(dtype).kind in "iu":
        x = int_inputs(dtype, sx)
        low = 0 if kind == "pow" else 1 if kind == "div" else -9
        y = int_inputs(dtype, sy, low=low, high=4 if kind == "pow" else 10)
        if kind == "div":
            y = y * np.where(RNG.random(sy) < 0.5, -1, 1).astype(dtype)
        return x, y
    x = RNG.normal(0, 3, sx).astype(dtype)
    y = RNG.normal(0, 3, sy).astype(dtype)
    if kind == "pow":
        x = np.abs(x) + np.asarray(0.5, dtype)
        y = np.clip(y, -2, 2).astype(dtype)
    return x, y


ARITH = {
    "add": (tf.add, np.add, "any"),
    "subtract": (tf.subtract, np.subtract, "any"),
    "multiply": (tf.multiply, np.multiply, "any"),
    "maximum": (tf.maximum, np.maximum, "any"),
    "minimum": (tf.minimum, np.minimum, "any"),
    "squared_difference": (tf.squared_difference, lambda x, y: (x - y) ** 2, "any"),
    "pow": (tf.pow, np.power, "pow"),
    "floordiv": (tf.floordiv, np.floor_divide, "div"),
    "mod": (tf.mod, np.mod, "div"),
}


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("name", sorted(ARITH))
def test_arithmetic_broadcasts(name, dtype, shapes):
    api, ref, kind = ARITH[name]
    x, y = _operands(dtype, *shapes, kind=kind)
    if name == "floordiv" and x.dtype.kind == "f":  # TF: floor of the quotient in x's dtype
        ref = lambda a, b: np.floor((a.astype(x.dtype) / b.astype(x.dtype)).astype(np.float64))  # noqa: E731
    tx, ty = placeholder_for(x), placeholder_for(y, unknown=True)
    out = run(api(tx, ty), {tx: x, ty: y})
    assert_matches(out, expected(ref, x, y))
    static = api(tx, placeholder_for(y)).shape.as_list()
    assert static == list(np.broadcast_shapes(x.shape, y.shape))


@pytest.mark.parametrize("dtype", FLOATS)
def test_divide_and_truediv_of_floats(dtype):
    x, y = _operands(dtype, (2, 3), (3,))
    tx, ty = placeholder_for(x), placeholder_for(y)
    a, b, c = run([tf.divide(tx, ty), tf.truediv(tx, ty), tf.div(tx, ty)], {tx: x, ty: y})
    for out in (a, b, c):
        assert_matches(out, expected(np.divide, x, y))


@pytest.mark.parametrize("dtype,result", [(np.int32, np.float64), (np.int64, np.float64),
                                          (np.int8, np.float32), (np.uint8, np.float32)])
def test_truediv_of_integers_gives_float_as_tf(dtype, result):
    x = np.array([7, 8, 0, 9], dtype)
    y = np.array([2, 3, 5, 4], dtype)
    tx, ty = placeholder_for(x), placeholder_for(y)
    out = run(tx / ty, {tx: x, ty: y})
    assert_matches(out, expected(np.divide, x, y, dtype=result))


def test_int_floordiv_and_mod_follow_floor_semantics_with_negative_operands():
    x = np.array([-7, 7, -7, 7, 0, -1], np.int32)
    y = np.array([2, -2, -2, 2, 3, 5], np.int32)
    q, r, d = run([tf.floordiv(x, y), tf.floormod(x, y), tf.div(x, y)])
    np.testing.assert_array_equal(q, [-4, -4, 3, 3, 0, -1])
    np.testing.assert_array_equal(r, [1, -1, -1, 1, 0, 4])
    np.testing.assert_array_equal(d, q)  # TF1's tf.div floors integers
    np.testing.assert_array_equal(q * y + r, x)


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_mod_takes_the_divisor_sign(dtype):
    x = np.array([-7.5, 7.5, -7.5, 7.5, 3.0, -0.0, 1.0], dtype)
    y = np.array([2.0, -2.0, -2.0, 2.0, 1.5, 3.0, 0.0], dtype)
    out = run(tf.mod(x, y))
    assert_matches(out, expected(np.mod, x, y))
    np.testing.assert_array_equal(out[:5], np.array([0.5, -0.5, -1.5, 1.5, 0.0], dtype))


def test_float_floordiv_floors_the_rounded_quotient():
    x = np.array([1.0, -1.0, 7.0, 1.0], np.float32)
    y = np.array([0.1, 0.1, 0.0, -0.0], np.float32)
    out = run(tf.floordiv(x, y))
    np.testing.assert_array_equal(out, [10.0, -10.0, np.inf, -np.inf])


@pytest.mark.parametrize("op", [tf.floordiv, tf.floormod, tf.div])
def test_integer_division_by_zero_raises_as_tf(op):
    x = tf.placeholder(tf.int32, [None])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Integer division by zero"):
        run(op(x, np.array([1, 0], np.int32)), {x: [3, 4]})


def test_pow_special_cases():
    x = np.array([0.0, -2.0, -2.0, -8.0, 2.0, 0.0, -1.5], np.float32)
    y = np.array([0.0, 3.0, 2.0, 1.0 / 3.0, -1.0, -1.0, 2.0], np.float32)
    out = run(tf.pow(x, y))
    assert_matches(out, expected(np.power, x, y))
    assert out[0] == 1.0 and out[1] == -8.0 and out[2] == 4.0 and np.isnan(out[3]) and out[5] == np.inf
    ints = run(tf.pow(np.array([0, -2, -3, 5], np.int32), np.array([0, 3, 2, 0], np.int32)))
    np.testing.assert_array_equal(ints, [1, -8, 9, 1])


def test_integer_pow_with_negative_exponent_raises():
    with pytest.raises(tf.errors.InvalidArgumentError, match="negative integer powers"):
        run(tf.pow(np.array([2], np.int32), np.array([-1], np.int32)))


def test_maximum_minimum_propagate_nan():
    x = np.array([np.nan, 1.0, np.nan, -np.inf], np.float32)
    y = np.array([1.0, np.nan, np.nan, 0.0], np.float32)
    hi, lo = run([tf.maximum(x, y), tf.minimum(x, y)])
    np.testing.assert_array_equal(hi, [np.nan, np.nan, np.nan, 0.0])
    np.testing.assert_array_equal(lo, [np.nan, np.nan, np.nan, -np.inf])


COMPARE = {"equal": (tf.equal, np.equal), "not_equal": (tf.not_equal, np.not_equal),
           "less": (tf.less, np.less), "less_equal": (tf.less_equal, np.less_equal),
           "greater": (tf.greater, np.greater), "greater_equal": (tf.greater_equal, np.greater_equal)}


@pytest.mark.parametrize("shapes", SHAPE_PAIRS[:5], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32, np.int64])
@pytest.mark.parametrize("name", sorted(COMPARE))
def test_comparisons(name, dtype, shapes):
    api, ref = COMPARE[name]
    x, y = _operands(dtype, *shapes)
    if x.dtype.kind == "f":
        x.reshape(-1)[:1] = np.nan
        y.reshape(-1)[-1:] = x.reshape(-1)[-1]  # at least one equal pair
    tx, ty = placeholder_for(x, unknown=True), placeholder_for(y)
    assert_matches(run(api(tx, ty), {tx: x, ty: y}), ref(x, y))


def test_equality_of_bools_is_allowed_but_ordering_is_not():
    a = np.array([True, False])
    assert_matches(run(tf.equal(a, np.array([True, True]))), np.array([True, False]))
    with pytest.raises(GraphError, match="less"):
        tf.less(a, a)


LOGICAL = {"logical_and": (tf.logical_and, np.logical_and, "__and__"),
           "logical_or": (tf.logical_or, np.logical_or, "__or__"),
           "logical_xor": (tf.logical_xor, np.logical_xor, "__xor__")}


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", sorted(LOGICAL))
def test_logical_ops(name, shapes):
    api, ref, dunder = LOGICAL[name]
    x, y = RNG.random(shapes[0]) < 0.5, RNG.random(shapes[1]) < 0.5
    tx, ty = placeholder_for(np.asarray(x), unknown=True), placeholder_for(np.asarray(y))
    a, b = run([api(tx, ty), getattr(tx, dunder)(ty)], {tx: x, ty: y})
    assert_matches(a, ref(x, y))
    assert_matches(b, ref(x, y))


def test_bool_operators_reject_numbers():
    t = tf.constant([1, 2])
    with pytest.raises(TypeError, match="bool"):
        t & t


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16])
def test_select_and_where(dtype):
    cond = np.array([[True, False, True], [False, False, True]])
    x = np.arange(6).reshape(2, 3).astype(dtype)
    y = -x - 1
    tc, tx, ty = placeholder_for(cond, unknown=True), placeholder_for(x), placeholder_for(y)
    same, rows, scalar_y, v2 = run([
        tf.where(tc, tx, ty),
        tf.where(np.array([False, True]), tx, ty),
        tf.where(tc, tx, np.zeros((), dtype)),
        tf.where_v2(np.array([True, False, False]), tx, np.ones((2, 1), dtype)),
    ], {tc: cond, tx: x, ty: y})
    assert_matches(same, np.where(cond, x, y))
    assert_matches(rows, np.where(np.array([False, True])[:, None], x, y))
    assert_matches(scalar_y, np.where(cond, x, np.zeros((), dtype)))
    assert_matches(v2, np.where(np.array([True, False, False]), x, np.ones((2, 1), dtype)))


def test_where_without_values_gives_indices():
    cond = np.array([[True, False], [False, True], [True, True]])
    t = placeholder_for(cond, unknown=True)
    indices = tf.where(t)
    assert indices.op.node.op == "where_indices" and indices.shape.as_list() == [None, 2]
    assert_matches(run(indices, {t: cond}), np.argwhere(cond).astype(np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_add_n(dtype):
    xs = [RNG.normal(0, 3, (2, 3)).astype(dtype) for _ in range(4)]
    ts = [placeholder_for(x, unknown=(i % 2 == 1)) for i, x in enumerate(xs)]
    feed = dict(zip(ts, xs))
    total, single = run([tf.add_n(ts), tf.add_n(ts[:1])], feed)
    with np.errstate(over="ignore"):  # TF adds in the inputs' dtype, rounding after each add
        want = xs[0] + xs[1] + xs[2] + xs[3]
    assert_matches(total, want)
    assert_matches(single, xs[0])


def test_add_n_needs_one_shape():
    with pytest.raises(GraphError, match=r"op `add_n` at .*test_ops_math.py:\d+: .*f32\[2,3\].*f32\[3\]"):
        tf.add_n([tf.zeros([2, 3]), tf.zeros([3])])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_clip_by_value(dtype):
    x = (RNG.normal(0, 5, (3, 4))).astype(dtype)
    t = placeholder_for(x, unknown=True)
    lo = np.array([-1, -2, 0, -3], dtype)
    scalar, per_column = run([tf.clip_by_value(t, -2, 3), tf.clip_by_value(t, lo, 4)], {t: x})
    assert_matches(scalar, np.clip(x, np.asarray(-2, dtype), np.asarray(3, dtype)))
    assert_matches(per_column, np.clip(x, lo, np.asarray(4, dtype)))


def test_clip_by_value_may_not_broadcast_the_values():
    with pytest.raises(GraphError, match=r"op `clip_by_value` at .*test_ops_math.py:\d+: .*f32\[2,3\].*f32\[3\]"):
        tf.clip_by_value(tf.zeros([3]), tf.zeros([2, 3]), 1.0)


# -- references on special values -----------------------------------------------------------
def _ops_of(module_names):
    return [n for n in module_names if n != "cast"]


@pytest.mark.parametrize("name", _ops_of(ELEMENTWISE_UNARY) + ELEMENTWISE_BINARY + list(REDUCTIONS))
def test_references_are_quiet_and_keep_dtype_on_special_values(name):
    """NaN, inf, signed zeros and integer extremes give no NumPy warning and the rule's dtype."""
    op = get_op(name)
    grid = SPECIAL[:, None], SPECIAL[None, :]
    extremes = np.array([np.iinfo(np.int32).min, -1, 0, 1, np.iinfo(np.int32).max], np.int64)
    for dtype in FLOATS + INTS + [np.bool_]:
        args = grid if name in ELEMENTWISE_BINARY else (SPECIAL.reshape(3, 4),)
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            safe = extremes.clip(info.min, info.max)
            divisor = safe[safe != 0] if name in ("floordiv", "mod") else safe[safe >= 0] if name == "pow" else safe
            args = (safe[:, None], divisor[None, :]) if name in ELEMENTWISE_BINARY else (safe[None, :],)
        args = tuple(np.asarray(a).astype(dtype) for a in args)
        attrs = {"axis": 1} if name in ("argmax", "argmin") else {}
        in_types = tuple(_type_of(a) for a in args)
        try:
            (out_type,) = op.infer(in_types, attrs)
        except ValueError:
            continue  # the type rule refuses this dtype
        out = np.asarray(op.reference(*args, **attrs))
        assert out.dtype == out_type.dtype.np_dtype, (name, dtype, out.dtype)


def _type_of(a: np.ndarray):
    from tfjit.ir.types import TensorType

    return TensorType(tf.as_dtype(a.dtype), a.shape)


# -- Python operators -------------------------------------------------------------------------
def test_arithmetic_operators_with_scalars_and_arrays_on_either_side():
    x = np.array([[1.5, -2.0, 3.0], [0.5, 4.0, -6.0]], np.float32)
    a = np.array([2.0, -1.0, 0.5])  # float64: converted to the tensor's float32, as in TF
    t = placeholder_for(x, unknown=True)
    fetches = {
        "add": (t + 2.0, x + np.float32(2)), "radd": (2 + t, x + np.float32(2)),
        "sub": (t - a, x - a.astype(np.float32)), "rsub": (a - t, a.astype(np.float32) - x),
        "mul": (2.0 * t, np.float32(2) * x), "rmul_array": (a * t, a.astype(np.float32) * x),
        "div": (t / 4, x / np.float32(4)), "rdiv": (1.0 / t, np.float32(1) / x),
        "floordiv": (t // 2, np.floor(x / np.float32(2))), "rfloordiv": (7 // t, np.floor(np.float32(7) / x)),
        "mod": (t % 2, np.mod(x, np.float32(2))), "rmod": (7.0 % t, np.mod(np.float32(7), x)),
        "pow": (t ** 2, x ** 2), "rpow": (2 ** t, np.float32(2) ** x),
        "neg": (-t, -x), "abs": (abs(t), np.abs(x)),
    }
    out = run({k: v[0] for k, v in fetches.items()}, {t: x})
    for key, (_, want) in fetches.items():
        assert out[key].dtype == np.float32, key
        np.testing.assert_allclose(out[key], want, rtol=1e-6, err_msg=key)


def test_integer_operators():
    x = np.array([-7, 7, 4], np.int32)
    t = placeholder_for(x)
    q, r, d, p = run([t // 2, t % 3, t / 2, t ** 2], {t: x})
    assert_matches(q, np.floor_divide(x, 2).astype(np.int32))
    assert_matches(r, np.mod(x, 3).astype(np.int32))
    assert_matches(d, x / 2.0)
    assert_matches(p, x ** 2)


def test_comparison_operators_and_tf1_identity_equality():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    t = placeholder_for(x)
    lt, le, gt, ge = run([t < 2, t <= 2.0, 2 < t, np.float32(2) >= t], {t: x})
    assert_matches(lt, x < 2)
    assert_matches(le, x <= 2)
    assert_matches(gt, x > 2)
    assert_matches(ge, x <= 2)
    assert (t == t) is True and (t == tf.identity(t)) is False  # TF1: == is identity
    assert len({t, t}) == 1


def test_matmul_operator_and_bool_operators():
    a = RNG.normal(size=(2, 3)).astype(np.float32)
    b = RNG.normal(size=(3, 4)).astype(np.float32)
    ta, tb = placeholder_for(a), placeholder_for(b)
    m, rm = run([ta @ tb, a @ tb], {ta: a, tb: b})
    np.testing.assert_allclose(m, a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rm, a @ b, rtol=1e-5, atol=1e-6)
    p = np.array([True, True, False])
    q = np.array([True, False, False])
    tp = placeholder_for(p)
    outs = run([tp & q, tp | q, tp ^ q, q ^ tp, True & tp], {tp: p})
    for out, want in zip(outs, [p & q, p | q, p ^ q, p ^ q, p]):
        assert_matches(out, want)


def test_python_float_with_int_tensor_is_a_dtype_error():
    with pytest.raises(GraphError, match=r"op `add` at .*test_ops_math.py:\d+: .*i32\[2\].*f32\[\]"):
        tf.constant([1, 2]) + 2.5


# -- reductions -----------------------------------------------------------------------------
AXES = [None, 0, 1, -1, [0, 2], (1, -1), [], [-3, 0, 1]]
REDUCE = {
    "sum": (tf.reduce_sum, lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims)),
    "mean": (tf.reduce_mean, None),  # float: np.mean; int: truncated toward zero (below)
    "max": (tf.reduce_max, lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims)),
    "min": (tf.reduce_min, lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims)),
    "prod": (tf.reduce_prod, lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims)),
}


def _np_axis(axis, rank=3):
    """NumPy's form of a reduction axis; TF ignores repeated axes, NumPy rejects them."""
    return tuple(sorted({a % rank for a in axis})) if isinstance(axis, (list, tuple)) else axis


def _mean(x, axis, keepdims):
    if x.dtype.kind in "iu":  # TF's integer mean truncates toward zero
        total = np.sum(x, axis=axis, keepdims=keepdims)
        count = x.size // max(np.size(total), 1) if x.size else 1
        return np.fix(total / count)
    return np.mean(x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reductions(name, dtype):
    api, ref = REDUCE[name]
    ref = ref or _mean
    if np.dtype(dtype).kind == "f":
        x = RNG.normal(0, 2 if name != "prod" else 0.7, (2, 3, 4)).astype(dtype)
    else:
        x = int_inputs(dtype, (2, 3, 4), low=-3 if name == "prod" else -20, high=4 if name == "prod" else 21)
    t = placeholder_for(x)
    u = placeholder_for(x, unknown=True)
    cases = [(axis, keep) for axis in AXES for keep in (False, True)]
    fetches = [api(t, axis=axis, keepdims=keep) for axis, keep in cases]
    fetches += [api(u, axis=axis, keepdims=keep) for axis, keep in cases]
    outs = run(fetches, {t: x, u: x})
    for (axis, keep), out, out_u in zip(cases * 2, outs, outs[len(cases):]):
        want = expected(lambda v: ref(v, axis=_np_axis(axis), keepdims=keep), x)
        assert_matches(out, want)
        assert_matches(out_u, want)
    for (axis, keep), f in zip(cases, fetches):
        want_shape = np.sum(x, axis=_np_axis(axis), keepdims=keep).shape
        assert f.shape.as_list() == list(want_shape)


def test_integer_mean_truncates_toward_zero():
    x = np.array([[-7, 2], [3, 4], [-1, -2]], np.int32)
    out = run([tf.reduce_mean(x), tf.reduce_mean(x, 0), tf.reduce_mean(x, 1)])
    np.testing.assert_array_equal(out[0], 0)  # -1 / 6
    np.testing.assert_array_equal(out[1], [-1, 1])  # -5 / 3, 4 / 3
    np.testing.assert_array_equal(out[2], [-2, 3, -1])  # -5 / 2, 7 / 2, -3 / 2


def test_legacy_reduction_argument_names():
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    t = placeholder_for(x)
    a, b, c = run([tf.reduce_sum(t, reduction_indices=[1], keep_dims=True),
                   tf.reduce_mean(t, reduction_indices=0),
                   tf.reduce_max(t, axis=tf.constant(-1))], {t: x})
    np.testing.assert_allclose(a, x.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(b, x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(c, x.max(axis=-1), rtol=1e-6)
    with pytest.raises(ValueError, match="both"):
        tf.reduce_sum(t, axis=0, reduction_indices=0)


def test_reduction_of_unknown_rank_with_negative_axis():
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    t = tf.placeholder(tf.float32, shape=None)
    s, m = run([tf.reduce_sum(t, axis=-1), tf.reduce_max(t, axis=[0, -1], keepdims=True)], {t: x})
    np.testing.assert_allclose(s, x.sum(axis=-1), rtol=1e-5)
    np.testing.assert_allclose(m, x.max(axis=(0, 2), keepdims=True), rtol=1e-6)


def test_empty_reductions():
    empty = np.zeros((0, 3), np.float32)
    t = placeholder_for(empty, unknown=True)
    mean, total, prod = run([tf.reduce_mean(t, 0), tf.reduce_sum(t), tf.reduce_prod(t, 0)], {t: empty})
    np.testing.assert_array_equal(mean, [np.nan] * 3)
    assert total == 0.0 and total.dtype == np.float32
    np.testing.assert_array_equal(prod, [1.0] * 3)


def test_max_min_of_empty_and_nan():
    empty = np.zeros((0, 3), np.float32)
    t = placeholder_for(empty, unknown=True)
    hi, lo, hi_i = run([tf.reduce_max(t, 0), tf.reduce_min(t, 0),
                        tf.reduce_max(tf.zeros([0], tf.int32))], {t: empty})
    np.testing.assert_array_equal(hi, [-np.inf] * 3)
    np.testing.assert_array_equal(lo, [np.inf] * 3)
    assert hi_i == np.iinfo(np.int32).min
    nan = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(run(tf.reduce_max(nan, 1)), [np.nan, 3.0])


@pytest.mark.parametrize("name", ["all", "any"])
def test_boolean_reductions(name):
    api, ref = (tf.reduce_all, np.all) if name == "all" else (tf.reduce_any, np.any)
    x = RNG.random((3, 4, 2)) < 0.6
    t = placeholder_for(x, unknown=True)
    cases = [(axis, keep) for axis in AXES for keep in (False, True)]
    outs = run([api(t, axis=a, keepdims=k) for a, k in cases], {t: x})
    for (axis, keep), out in zip(cases, outs):
        assert_matches(out, np.asarray(ref(x, axis=_np_axis(axis), keepdims=keep)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.float16])
def test_argmax_argmin(dtype):
    x = RNG.permutation(24).reshape(2, 3, 4).astype(dtype)
    t = placeholder_for(x, unknown=True)
    fetches = [tf.argmax(t, 1), tf.argmin(t, axis=-1), tf.argmax(t, dimension=0),
               tf.argmax(t, output_type=tf.int32), tf.argmin(t, 2, output_type=tf.int32)]
    outs = run(fetches, {t: x})
    wants = [np.argmax(x, 1), np.argmin(x, -1), np.argmax(x, 0), np.argmax(x, 0), np.argmin(x, 2)]
    types = [np.int64, np.int64, np.int64, np.int32, np.int32]
    for out, want, ty in zip(outs, wants, types):
        assert_matches(out, want.astype(ty))


def test_argmax_bad_axis_and_output_type():
    with pytest.raises(GraphError, match=r"op `argmax` at .*test_ops_math.py:\d+: axis 2.*rank 2.*f32\[2,3\]"):
        tf.argmax(tf.zeros([2, 3]), 2)
    with pytest.raises(GraphError, match="output_type"):
        tf.argmax(tf.zeros([2, 3]), 0, output_type=tf.float32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_logsumexp(dtype):
    x = RNG.normal(0, 3, (3, 4)).astype(dtype)
    t = placeholder_for(x, unknown=True)
    cases = [(axis, keep) for axis in [None, 0, -1, [0, 1]] for keep in (False, True)]
    outs = run([tf.reduce_logsumexp(t, axis=a, keepdims=k) for a, k in cases], {t: x})
    for (axis, keep), out in zip(cases, outs):
        assert_matches(out, expected(lambda v: special.logsumexp(v, axis=_np_axis(axis), keepdims=keep), x))


def test_logsumexp_is_stable_for_large_values_and_minus_infinity_rows():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1001.0], [-np.inf, -np.inf], [np.inf, 1.0]], np.float32)
    out = run(tf.reduce_logsumexp(x, axis=1))
    want = np.array([1000.0 + np.log(2.0), -1000.0 + np.log1p(np.exp(-1.0)), -np.inf, np.inf])
    np.testing.assert_allclose(out, want.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_, np.float16])
def test_count_nonzero(dtype):
    x = (RNG.integers(-1, 2, (3, 4)) * RNG.random((3, 4))).astype(dtype)
    if x.dtype.kind == "f":
        x[0, 0] = np.nan  # NaN is not zero
    t = placeholder_for(x, unknown=True)
    a, b, c, d = run([tf.count_nonzero(t), tf.count_nonzero(t, axis=1, keepdims=True),
                      tf.count_nonzero(t, reduction_indices=[0], dtype=tf.int32),
                      tf.count_nonzero(input=t, axis=-1, keep_dims=True)], {t: x})
    nz = x != 0
    assert_matches(a, np.int64(nz.sum()))
    assert_matches(b, nz.sum(axis=1, keepdims=True).astype(np.int64))
    assert_matches(c, nz.sum(axis=0).astype(np.int32))
    assert_matches(d, nz.sum(axis=-1, keepdims=True).astype(np.int64))


# -- contraction ----------------------------------------------------------------------------
MATMULS = [((2, 3), (3, 4), False, False), ((3, 2), (3, 4), True, False), ((2, 3), (4, 3), False, True),
           ((3, 2), (4, 3), True, True), ((5, 2, 3), (5, 3, 4), False, False),
           ((2, 3, 4, 5), (2, 3, 5, 6), False, False), ((2, 3, 5, 4), (2, 3, 6, 5), True, True),
           ((5, 2, 3), (3, 4), False, False), ((2, 1, 2, 3), (4, 3, 5), False, False),
           ((1, 3, 2), (4, 3, 5), True, False)]


@pytest.mark.parametrize("dtype", FLOATS + [np.int32])
@pytest.mark.parametrize("case", MATMULS, ids=str)
def test_matmul(case, dtype):
    sa, sb, ta, tb = case
    if np.dtype(dtype).kind == "f":
        a, b = RNG.normal(size=sa).astype(dtype), RNG.normal(size=sb).astype(dtype)
    else:
        a, b = int_inputs(dtype, sa), int_inputs(dtype, sb)
    pa, pb = placeholder_for(a), placeholder_for(b, unknown=True)
    out = run(tf.matmul(pa, pb, transpose_a=ta, transpose_b=tb), {pa: a, pb: b})

    def product(x, y):
        return np.matmul(np.swapaxes(x, -1, -2) if ta else x, np.swapaxes(y, -1, -2) if tb else y)

    want = expected(product, a, b)
    assert out.dtype == want.dtype and out.shape == want.shape
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(out, want)
    else:  # the classic bound for a dot product: rounding error relative to sum |a_i b_i|
        exact = expected(product, a, b, dtype=np.float64)
        scale = expected(product, np.abs(a), np.abs(b), dtype=np.float64)
        assert (np.abs(out.astype(np.float64) - exact) <= TOL[want.dtype] * scale).all()
    static = tf.matmul(pa, placeholder_for(b), transpose_a=ta, transpose_b=tb).shape.as_list()
    assert static == list(want.shape)


def test_matmul_of_unknown_dims_keeps_what_is_known():
    a = tf.placeholder(tf.float32, [None, 3])
    b = tf.placeholder(tf.float32, [3, None])
    assert tf.matmul(a, b).shape.as_list() == [None, None]
    assert tf.matmul(a, tf.zeros([3, 7])).shape.as_list() == [None, 7]


TENSORDOTS = [((3, 4), (4, 5), 1), ((2, 3, 4), (3, 4, 5), 2), ((2, 3), (4, 5), 0),
              ((2, 3, 4), (4, 3, 5), [[1, 2], [1, 0]]), ((2, 3, 4), (5, 2), [[0], [-1]]),
              ((3, 4), (4, 3), [1, 0])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("case", TENSORDOTS, ids=str)
def test_tensordot(case, dtype):
    sa, sb, axes = case
    a, b = int_inputs(dtype, sa), int_inputs(dtype, sb)
    pa, pb = placeholder_for(a), placeholder_for(b)
    t = tf.tensordot(pa, pb, axes)
    np_axes = axes if isinstance(axes, int) else ([axes[0]] if isinstance(axes[0], int) else axes[0],
                                                   [axes[1]] if isinstance(axes[1], int) else axes[1])
    want = expected(lambda x, y: np.tensordot(x, y, np_axes), a, b)
    assert_matches(run(t, {pa: a, pb: b}), want)
    assert t.shape.as_list() == list(want.shape)


def test_tensordot_errors_name_the_op_and_shapes():
    with pytest.raises(GraphError, match=r"op `tensordot` at .*test_ops_math.py:\d+: .*f32\[3,4\].*f32\[5,4\]"):
        tf.tensordot(tf.zeros([3, 4]), tf.zeros([5, 4]), 1)
    with pytest.raises(GraphError, match=r"tensordot.*out of range"):
        tf.tensordot(tf.zeros([3, 4]), tf.zeros([4, 4]), [[2], [0]])
    with pytest.raises(GraphError, match=r"tensordot.*axes=3"):
        tf.tensordot(tf.zeros([3, 4]), tf.zeros([4, 4]), 3)


# -- shape queries ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (3,), (2, 0, 4), (5, 1, 2, 3)], ids=str)
def test_shape_size_rank(shape):
    x = np.zeros(shape, np.float32)
    t = placeholder_for(x, unknown=True)
    r = tf.placeholder(tf.float32, shape=None)
    outs = run([tf.shape(t), tf.size(t), tf.rank(t), tf.shape(r, out_type=tf.int64),
                tf.size(r, out_type=tf.int64), tf.rank(r)], {t: x, r: x})
    assert_matches(outs[0], np.array(shape, np.int32))
    assert_matches(outs[1], np.int32(x.size))
    assert_matches(outs[2], np.int32(x.ndim))
    assert_matches(outs[3], np.array(shape, np.int64))
    assert_matches(outs[4], np.int64(x.size))
    assert_matches(outs[5], np.int32(x.ndim))
    assert tf.shape(t).shape.as_list() == [len(shape)]


def test_shape_rejects_a_non_index_out_type():
    with pytest.raises(GraphError, match=r"shape.*out_type"):
        tf.shape(tf.zeros([2]), out_type=tf.float32)


# -- build-time errors ----------------------------------------------------------------------
def test_incompatible_broadcast_names_op_shapes_and_line():
    a, b = tf.zeros([2, 3]), tf.zeros([4])
    with pytest.raises(GraphError, match=r"op `add` at .*test_ops_math.py:\d+.*\[2,3\].*\[4\]"):
        a + b
    with pytest.raises(GraphError, match=r"op `maximum` at .*test_ops_math.py.*\[2,3\].*\[4\]"):
        tf.maximum(a, b)


def test_unknown_dims_broadcast_fails_at_run_time_not_build_time():
    a = tf.placeholder(tf.float32, [None, 3])
    b = tf.placeholder(tf.float32, [None, 3])
    c = a + b
    assert c.shape.as_list() == [None, 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="add"):
        run(c, {a: np.zeros((2, 3)), b: np.zeros((4, 3))})


def test_matmul_inner_dims_error():
    a, b = tf.zeros([2, 3]), tf.zeros([4, 5])
    with pytest.raises(GraphError, match=r"op `matmul` at .*test_ops_math.py.*f32\[2,3\].*f32\[4,5\]"):
        tf.matmul(a, b)
    with pytest.raises(GraphError, match=r"matmul.*rank >= 2"):
        tf.matmul(tf.zeros([3]), tf.zeros([3, 2]))


def test_bad_reduction_axis_error():
    x = tf.zeros([2, 3])
    with pytest.raises(GraphError, match=r"op `sum` at .*test_ops_math.py.*axis 2.*rank 2.*f32\[2,3\]"):
        tf.reduce_sum(x, axis=2)
    with pytest.raises(GraphError, match=r"op `mean` at .*test_ops_math.py.*axis -3"):
        tf.reduce_mean(x, axis=[0, -3])


def test_dtype_mismatch_error():
    with pytest.raises(GraphError, match=r"op `add` at .*test_ops_math.py.*f32\[2\].*i32\[2\]"):
        tf.zeros([2]) + tf.zeros([2], tf.int32)
    with pytest.raises(GraphError, match=r"op `matmul` at .*test_ops_math.py.*f32\[2,2\].*f64\[2,2\]"):
        tf.matmul(tf.zeros([2, 2]), tf.zeros([2, 2], tf.float64))


def test_wrong_dtype_family_errors():
    with pytest.raises(GraphError, match=r"op `exp` at .*test_ops_math.py.*i32\[2\]"):
        tf.exp(tf.constant([1, 2]))
    with pytest.raises(GraphError, match=r"op `divide` .*i32"):
        tf.divide(tf.constant([1.0]), tf.constant([1]))
    with pytest.raises(GraphError, match=r"op `logical_and` .*f32"):
        tf.logical_and(tf.zeros([2]), tf.zeros([2]))
    with pytest.raises(GraphError, match=r"op `sum` .*bool"):
        tf.reduce_sum(tf.constant([True]))
