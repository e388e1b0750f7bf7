"""Creation ops through the TF1 API, checked against NumPy: constants, fills, *_like, range,
random draws (statistics and seed semantics) and every variable initializer."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tfjit as tf
from tfjit.compat import initializers as init_ops
from tfjit.errors import GraphError

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ALL_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_]


def run(fetches, feed=None):
    with tf.Session() as sess:
        return sess.run(fetches, feed_dict=feed)


def assert_same(actual, want) -> None:
    actual, want = np.asarray(actual), np.asarray(want)
    assert actual.dtype == want.dtype, (actual.dtype, want.dtype)
    assert actual.shape == want.shape, (actual.shape, want.shape)
    np.testing.assert_array_equal(actual, want)


# -- constant -------------------------------------------------------------------------------
@pytest.mark.parametrize("value,dtype", [
    (1.5, np.float32), (3, np.int32), (True, np.bool_), ([1.0, 2.0], np.float32), ([[1, 2], [3, 4]], np.int32),
    ([1, 2.5], np.float32), (2 ** 40, np.int64), ([1, -2 ** 35], np.int64), (np.float64(2.5), np.float64),
    (np.arange(6, dtype=np.int64).reshape(2, 3), np.int64), (np.ones(3, np.float16), np.float16),
    (np.array([True, False]), np.bool_), (np.uint8(7), np.uint8),
], ids=repr)
def test_constant_infers_tf_dtypes(value, dtype):
    t = tf.constant(value)
    assert t.dtype == tf.as_dtype(dtype)
    assert_same(run(t), np.asarray(value).astype(dtype))
    assert t.shape.as_list() == list(np.shape(value))
    assert t.op.node.op == "constant" and t.op.name.startswith("Const")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_constant_with_dtype(dtype):
    value = [0, 1, 1] if dtype is np.bool_ else [0, 1, 7]
    value = [bool(v) for v in value] if dtype is np.bool_ else value
    assert_same(run(tf.constant(value, dtype=tf.as_dtype(dtype))), np.array(value, dtype))
    array = np.array([0.0, 1.0, 7.0])  # NumPy arrays are converted with astype, as in TF
    assert_same(run(tf.constant(array, dtype=tf.as_dtype(dtype))), array.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_, np.float16])
@pytest.mark.parametrize("shape", [[2, 3], [4], [], [2, 0], [1, 2, 2]], ids=str)
def test_constant_scalar_broadcasts_to_shape(shape, dtype):
    value = True if dtype is np.bool_ else 7
    t = tf.constant(value, dtype=tf.as_dtype(dtype), shape=shape)
    assert t.shape.as_list() == shape
    assert_same(run(t), np.full(shape, value, dtype))


def test_constant_reshapes_and_pads_with_the_last_element_as_tf1():
    assert_same(run(tf.constant([1, 2, 3, 4, 5, 6], shape=[2, 3])), np.arange(1, 7, dtype=np.int32).reshape(2, 3))
    assert_same(run(tf.constant([1.0, 2.0], shape=[2, 2])), np.array([[1.0, 2.0], [2.0, 2.0]], np.float32))


def test_constant_errors():
    with pytest.raises(TypeError, match="Expected int32, got 1.5"):
        tf.constant(1.5, dtype=tf.int32)
    with pytest.raises(TypeError, match="Expected bool"):
        tf.constant([1, 0], dtype=tf.bool)
    with pytest.raises(TypeError, match="Too many elements"):
        tf.constant([1, 2, 3], shape=[2])
    with pytest.raises(TypeError, match="Expected Tensor's shape"):
        tf.constant([1, 2], shape=[2, 1], verify_shape=True)
    with pytest.raises(TypeError):
        tf.constant("text")


def test_constant_name_and_scope():
    with tf.name_scope("block"):
        t = tf.constant(1.0, name="c")
    assert t.op.name == "block/c" and t.name == "block/c:0"


# -- zeros, ones, fill --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [[2, 3], [5], [], [3, 0, 2], (1, 2, 3, 1)], ids=str)
def test_zeros_ones(shape, dtype):
    tdt = tf.as_dtype(dtype)
    z, o = tf.zeros(shape, tdt), tf.ones(shape, dtype=tdt)
    assert z.shape.as_list() == list(shape) and z.dtype == tdt
    zv, ov = run([z, o])
    assert_same(zv, np.zeros(shape, dtype))
    assert_same(ov, np.ones(shape, dtype))


def test_zeros_defaults_and_shape_forms():
    assert tf.zeros([2]).dtype == tf.float32 and tf.ones(3).shape.as_list() == [3]
    assert_same(run(tf.zeros(tf.TensorShape([2, 1]))), np.zeros((2, 1), np.float32))
    assert_same(run(tf.ones(np.array([2, 2]), tf.int64)), np.ones((2, 2), np.int64))
    assert_same(run(tf.zeros(tf.constant([3, 1]))), np.zeros((3, 1), np.float32))


@pytest.mark.parametrize("value,dtype", [(2.5, np.float32), (7, np.int32), (False, np.bool_),
                                         (np.float64(-1), np.float64), (np.int8(3), np.int8)])
def test_fill(value, dtype):
    t = tf.fill([2, 3], value)
    assert t.dtype == tf.as_dtype(dtype)
    assert_same(run(t), np.full((2, 3), value, dtype))


def test_fill_with_a_shape_computed_at_run_time():
    x = tf.placeholder(tf.float32, [None, None])
    feed = np.ones((4, 5), np.float32)
    a, b = tf.zeros(tf.shape(x)), tf.fill(tf.shape(x), 9)
    assert a.shape.as_list() == [None, None]
    av, bv = run([a, b], {x: feed})
    assert_same(av, np.zeros((4, 5), np.float32))
    assert_same(bv, np.full((4, 5), 9, np.int32))


def test_fill_errors():
    with pytest.raises(GraphError, match=r"op `fill` at .*test_ops_creation.py.*scalar.*f32\[2\]"):
        tf.fill([2], tf.constant([1.0, 2.0]))
    with pytest.raises(GraphError, match=r"op `fill` .*non-negative"):
        tf.zeros([2, -1])


def test_zeros_with_mixed_static_and_dynamic_dims():
    """`tf.zeros([tf.shape(x)[0], 3])` packs the dims with tf.stack (layout ops)."""
    x = tf.placeholder(tf.float32, [None, 5])
    z = tf.zeros([tf.shape(x)[0], 3])
    o = tf.ones([2, tf.shape(x)[1]], tf.int32)
    assert z.shape.as_list() == [None, 3]
    assert o.shape.as_list() == [2, 5]  # the static part of tf.shape(x) is kept, as TF infers it
    assert tf.zeros(tf.shape(x)).shape.as_list() == [None, 5]
    zv, ov = run([z, o], {x: np.zeros((4, 5), np.float32)})
    assert_same(zv, np.zeros((4, 3), np.float32))
    assert_same(ov, np.ones((2, 5), np.int32))


# -- zeros_like, ones_like -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zeros_like_ones_like(dtype):
    x = np.arange(6).reshape(2, 3).astype(dtype)
    t = tf.placeholder(tf.as_dtype(dtype), [None, 3])
    z, o, zf, ob = run([tf.zeros_like(t), tf.ones_like(t), tf.zeros_like(t, dtype=tf.float64),
                        tf.ones_like(t, dtype=tf.bool)], {t: x})
    assert_same(z, np.zeros_like(x))
    assert_same(o, np.ones_like(x))
    assert_same(zf, np.zeros((2, 3), np.float64))
    assert_same(ob, np.ones((2, 3), np.bool_))
    assert tf.ones_like(t).shape.as_list() == [None, 3]


def test_like_of_python_values():
    assert_same(run(tf.zeros_like([[1.0, 2.0]])), np.zeros((1, 2), np.float32))
    assert_same(run(tf.ones_like(np.zeros(3, np.int64))), np.ones(3, np.int64))


# -- range ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(5,), (0,), (2, 9), (2, 9, 3), (9, 2, -2), (10, 0, -3), (-3, 3),
                                  (5, 5), (5, 5, -1)], ids=str)
def test_range_of_ints(args):
    t = tf.range(*args)
    assert t.dtype == tf.int32
    want = np.arange(*args).astype(np.int32)
    assert t.shape.as_list() == [want.size]
    assert_same(run(t), want)


@pytest.mark.parametrize("args", [(3.5,), (0.0, 1.0, 0.1), (1, 2.5, 0.25), (2.0, -1.0, -0.5),
                                  (0.5, 0.75, 0.3)], ids=str)
def test_range_of_floats(args):
    t = tf.range(*args)
    assert t.dtype == tf.float32
    start, limit, delta = (0.0, args[0], 1.0) if len(args) == 1 else (*args, 1.0)[:3]
    start, limit, delta = (np.float32(v) for v in (start, limit, delta))
    size = int(np.ceil(np.abs((limit - start) / delta)))  # TF computes the length in the dtype
    want = (start + np.arange(size, dtype=np.float32) * delta).astype(np.float32)
    assert t.shape.as_list() == [size]
    np.testing.assert_allclose(run(t), want, rtol=1e-6)
    assert run(t).dtype == np.float32


def test_range_dtype_inference_and_explicit_dtype():
    assert tf.range(np.int64(4)).dtype == tf.int64
    assert tf.range(np.float64(1), 4).dtype == tf.float64
    assert tf.range(1, np.int64(4), 1.5).dtype == tf.float32  # int64 < float32 in TF's order
    assert_same(run(tf.range(4, dtype=tf.float64)), np.arange(4, dtype=np.float64))
    assert_same(run(tf.range(1, 7, 2, dtype=tf.int64)), np.array([1, 3, 5], np.int64))
    with pytest.raises(TypeError):
        tf.range(0.5, dtype=tf.int32)


def test_range_of_tensors_has_dynamic_length():
    n = tf.placeholder(tf.int32, [])
    start = tf.placeholder(tf.int64, [])
    a, b = tf.range(n), tf.range(start, 10, 2)
    assert a.shape.as_list() == [None] and b.dtype == tf.int64
    av, bv = run([a, b], {n: 4, start: 3})
    assert_same(av, np.arange(4, dtype=np.int32))
    assert_same(bv, np.arange(3, 10, 2, dtype=np.int64))


def test_range_errors_at_build_and_run_time():
    with pytest.raises(GraphError, match=r"op `range` at .*test_ops_creation.py.*start <= limit"):
        tf.range(5, 1)
    with pytest.raises(GraphError, match=r"range.*start >= limit"):
        tf.range(1, 5, -1)
    with pytest.raises(GraphError, match=r"range.*delta != 0"):
        tf.range(0, 3, 0)
    d = tf.placeholder(tf.int32, [])
    with pytest.raises(tf.errors.InvalidArgumentError, match="delta != 0"):
        run(tf.range(0, 3, d), {d: 0})


# -- random ---------------------------------------------------------------------------------
N = 200_000


def _sem(std: float, n: int = N) -> float:
    """Five standard errors of a mean: the tests are deterministic (seeded) and far from flaky."""
    return 5 * std / math.sqrt(n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_random_normal_statistics(dtype):
    x = run(tf.random_normal([N], mean=2.0, stddev=3.0, dtype=tf.as_dtype(dtype), seed=7))
    assert x.dtype == dtype and x.shape == (N,)
    assert abs(x.astype(np.float64).mean() - 2.0) < _sem(3.0)
    assert abs(x.astype(np.float64).std() - 3.0) < 0.03
    assert (np.abs(x - 2.0) > 6.0).any()  # not truncated


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truncated_normal_statistics_and_bound(dtype):
    x = run(tf.truncated_normal([N], mean=-1.0, stddev=2.0, dtype=tf.as_dtype(dtype), seed=3))
    assert x.dtype == dtype
    assert np.abs(x - (-1.0)).max() <= 2 * 2.0
    assert abs(x.mean() + 1.0) < _sem(2.0)
    assert abs(x.std() - 2.0 * 0.87962566103423978) < 0.02  # std of a normal truncated at 2 sigma


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_random_uniform_statistics(dtype):
    x = run(tf.random_uniform([4, N // 4], minval=-3.0, maxval=5.0, dtype=tf.as_dtype(dtype), seed=11))
    assert x.dtype == dtype and x.shape == (4, N // 4)
    assert x.min() >= -3.0 and x.max() <= 5.0
    assert abs(x.astype(np.float64).mean() - 1.0) < _sem(8 / math.sqrt(12))
    assert abs(x.astype(np.float64).std() - 8 / math.sqrt(12)) < 0.02
    hist = np.histogram(x, bins=8, range=(-3, 5))[0] / x.size
    np.testing.assert_allclose(hist, 1 / 8, atol=0.01)


def test_random_uniform_default_range_and_integers():
    u = run(tf.random_uniform([1000], seed=1))
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    ints = run(tf.random_uniform([N], minval=-2, maxval=3, dtype=tf.int32, seed=2))
    assert ints.dtype == np.int32 and set(np.unique(ints)) == {-2, -1, 0, 1, 2}
    np.testing.assert_allclose(np.bincount(ints + 2) / N, 0.2, atol=0.01)
    with pytest.raises(ValueError, match="maxval"):
        tf.random_uniform([2], dtype=tf.int64)


def test_random_ops_need_float_dtype():
    with pytest.raises(GraphError, match=r"random_normal.*floating"):
        tf.random_normal([2], dtype=tf.int32)


def test_same_op_seed_same_values_in_two_sessions():
    t = tf.random_normal([5], seed=42)
    with tf.Session() as s1:
        a, a_next = s1.run(t), s1.run(t)
    with tf.Session() as s2:
        b = s2.run(t)
    assert_same(a, b)
    assert not np.array_equal(a, a_next)  # each run draws anew, as in TF
    tf.reset_default_graph()
    assert_same(run(tf.random_normal([5], seed=42)), a)  # op seed alone is deterministic


def test_graph_seed_makes_programs_repeatable():
    def build(graph_seed):
        tf.reset_default_graph()
        tf.set_random_seed(graph_seed)
        return run([tf.random_uniform([4]), tf.random_uniform([4]), tf.random_normal([4], seed=5)])

    a, b = build(1), build(1)
    for x, y in zip(a, b):
        assert_same(x, y)
    assert not np.array_equal(a[0], a[1])  # two ops of one graph get different op seeds
    c = build(2)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])


def test_different_op_seeds_differ():
    a, b = run([tf.random_normal([6], seed=1), tf.random_normal([6], seed=2)])
    assert not np.array_equal(a, b)


# -- initializers ---------------------------------------------------------------------------
def _draw(initializer, shape, dtype=None):
    return run(initializer(shape) if dtype is None else initializer(shape, dtype=dtype))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32, tf.bool])
def test_zeros_ones_initializers(dtype):
    assert_same(_draw(tf.zeros_initializer(), [2, 3], dtype), np.zeros((2, 3), dtype.np_dtype))
    assert_same(_draw(tf.ones_initializer(dtype=dtype), [4]), np.ones(4, dtype.np_dtype))
    assert _draw(tf.zeros_initializer(), [1]).dtype == np.float32


def test_constant_initializer():
    assert_same(_draw(tf.constant_initializer(0.5), [2, 2]), np.full((2, 2), 0.5, np.float32))
    assert_same(_draw(tf.constant_initializer([1, 2, 3, 4]), [2, 2], tf.int32),
                np.array([[1, 2], [3, 4]], np.int32))
    assert_same(_draw(tf.constant_initializer([1.0, 2.0]), [3]), np.array([1, 2, 2], np.float32))
    with pytest.raises(TypeError, match="Expected Tensor's shape"):
        tf.constant_initializer([1.0, 2.0], verify_shape=True)([3])


def test_random_initializers_statistics():
    n = [400, 500]
    normal = _draw(tf.random_normal_initializer(1.0, 2.0, seed=1), n)
    trunc = _draw(tf.truncated_normal_initializer(0.0, 0.5, seed=2), n, tf.float64)
    uniform = _draw(tf.random_uniform_initializer(-1.0, 3.0, seed=3), n)
    unit = _draw(tf.random_uniform_initializer(seed=4), n)
    assert normal.dtype == np.float32 and trunc.dtype == np.float64
    assert abs(normal.mean() - 1.0) < _sem(2.0) and abs(normal.std() - 2.0) < 0.03
    assert np.abs(trunc).max() <= 1.0 and abs(trunc.std() - 0.5 * 0.87962566103423978) < 0.01
    assert uniform.min() >= -1.0 and uniform.max() <= 3.0 and abs(uniform.mean() - 1.0) < _sem(4 / math.sqrt(12))
    assert unit.min() >= 0.0 and unit.max() < 1.0


def test_initializer_seed_is_repeatable():
    a = _draw(tf.random_normal_initializer(seed=9), [10])
    tf.reset_default_graph()
    assert_same(_draw(tf.random_normal_initializer(seed=9), [10]), a)


@pytest.mark.parametrize("shape", [[300, 200], [3, 3, 64, 32], [1000], []], ids=str)
def test_glorot_uniform_limit(shape):
    fan_in, fan_out = _tf_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    x = _draw(tf.glorot_uniform_initializer(seed=1), shape)
    assert x.shape == tuple(shape) and x.dtype == np.float32
    assert np.abs(x).max() <= limit
    if x.size > 1000:
        assert np.abs(x).max() > 0.99 * limit
        assert abs(x.std() - limit / math.sqrt(3)) < 0.02 * limit


def _tf_fans(shape):
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


VARIANCE_SCALING = [
    ("glorot_normal", tf.glorot_normal_initializer(seed=1), 1.0, "fan_avg", "truncated_normal"),
    ("he_normal", init_ops.he_normal(seed=2), 2.0, "fan_in", "truncated_normal"),
    ("he_uniform", init_ops.he_uniform(seed=3), 2.0, "fan_in", "uniform"),
    ("lecun_normal", init_ops.lecun_normal(seed=4), 1.0, "fan_in", "truncated_normal"),
    ("lecun_uniform", init_ops.lecun_uniform(seed=5), 1.0, "fan_in", "uniform"),
    ("fan_out_untruncated", tf.variance_scaling_initializer(3.0, "fan_out", "untruncated_normal", seed=6),
     3.0, "fan_out", "untruncated_normal"),
    ("default", tf.variance_scaling_initializer(seed=7), 1.0, "fan_in", "truncated_normal"),
    ("legacy_normal", tf.variance_scaling_initializer(0.5, "fan_avg", "normal", seed=8), 0.5, "fan_avg",
     "truncated_normal"),
]


@pytest.mark.parametrize("case", VARIANCE_SCALING, ids=lambda c: c[0])
@pytest.mark.parametrize("shape", [[400, 300], [3, 3, 40, 60]], ids=str)
def test_variance_scaling(case, shape):
    _, init, scale, mode, distribution = case
    fan_in, fan_out = _tf_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    x = _draw(init, shape).astype(np.float64)
    assert abs(x.mean()) < _sem(std, x.size)
    assert abs(x.std() - std) < 0.02 * std
    if distribution == "uniform":
        assert np.abs(x).max() <= math.sqrt(3) * std
    if distribution == "truncated_normal":
        assert np.abs(x).max() <= 2 * std / 0.87962566103423978
    if distribution == "untruncated_normal":
        assert np.abs(x).max() > 2.5 * std


def test_variance_scaling_argument_checks_and_dtypes():
    with pytest.raises(ValueError, match="scale"):
        tf.variance_scaling_initializer(scale=0.0)
    with pytest.raises(ValueError, match="mode"):
        tf.variance_scaling_initializer(mode="fan_sideways")
    with pytest.raises(ValueError, match="distribution"):
        tf.variance_scaling_initializer(distribution="cauchy")
    with pytest.raises(ValueError, match="floating point"):
        tf.glorot_uniform_initializer()([2, 2], dtype=tf.int32)
    with pytest.raises(ValueError, match="floating point"):
        tf.random_normal_initializer(dtype=tf.int32)([2])
    assert _draw(tf.glorot_uniform_initializer(dtype=tf.float64), [3, 3]).dtype == np.float64
    with pytest.raises(ValueError, match="fully defined"):
        tf.glorot_uniform_initializer()([None, 3])


def test_initializers_through_get_variable():
    w = tf.get_variable("w", [50, 40], initializer=tf.glorot_uniform_initializer(seed=1))
    b = tf.get_variable("b", [40], initializer=tf.constant_initializer(0.1))
    default = tf.get_variable("d", [30, 20])  # glorot_uniform, as in TF1
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        wv, bv, dv = sess.run([w, b, default])
    assert np.abs(wv).max() <= math.sqrt(6 / 90) and wv.dtype == np.float32
    assert_same(bv, np.full(40, 0.1, np.float32))
    assert np.abs(dv).max() <= math.sqrt(6 / 50) and dv.std() > 0


def test_get_variable_defaults_for_non_float_dtypes():
    flags = tf.get_variable("flags", [2], tf.bool)
    counts = tf.get_variable("counts", [3], tf.int32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        fv, cv = sess.run([flags, counts])
    assert_same(fv, np.zeros(2, np.bool_))
    assert_same(cv, np.zeros(3, np.int32))
    assert_same(run(init_ops.Constant(3)([2, 2], tf.int64)), np.full((2, 2), 3, np.int64))
