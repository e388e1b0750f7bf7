"""tf.nn ops (bias_add, softmax, log_softmax, the cross-entropy losses, l2_loss) against NumPy."""
from __future__ import annotations

import os

import numpy as np
import pytest

import tfjit as tf
from tfjit.errors import GraphError, InvalidArgumentError
from tfjit.ir import parse_graph, print_graph
from tfjit.ir.verifier import verify
from tfjit.ops import Fusion, get_op
from tfjit.ops.nn import NN_OPS
from tfjit.runtime.program import extract

FLOATS = [np.float16, np.float32, np.float64]
# float16 results are computed in float32 and rounded once: a couple of float16 ulps.
TOL = {np.float16: dict(rtol=2e-3, atol=2e-3), np.float32: dict(rtol=2e-6, atol=2e-6),
       np.float64: dict(rtol=1e-13, atol=1e-13)}
SHAPES = [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 5)]
RNG = np.random.default_rng(0)


# -- NumPy formulas (float64) --------------------------------------------------------------
@np.errstate(all="ignore")  # -inf logits: TF gives the same inf/NaN silently
def np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@np.errstate(all="ignore")
def np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@np.errstate(all="ignore")
def np_xent(labels: np.ndarray, logits: np.ndarray, axis: int) -> np.ndarray:
    return -np.sum(labels * np_log_softmax(logits, axis), axis=axis)


def np_sparse_xent(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    log_p = np_log_softmax(logits, -1)
    return -np.take_along_axis(log_p, labels[..., None].astype(np.int64), axis=-1)[..., 0]


def np_sigmoid_xent_definition(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-logits))
    return -labels * np.log(p) - (1 - labels) * np.log(1 - p)


@np.errstate(all="ignore")
def np_sigmoid_xent_stable(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def np_l2_loss(t: np.ndarray) -> np.ndarray:
    return np.sum(t ** 2) / 2


def np_bias_add(x: np.ndarray, b: np.ndarray, channels_first: bool) -> np.ndarray:
    if channels_first:
        return x + b.reshape((-1,) + (1,) * (x.ndim - 2))
    return x + b


# -- helpers -------------------------------------------------------------------------------
def run(fetches, feed=None):
    with tf.Session() as sess:
        return sess.run(fetches, feed_dict=feed)


def close(actual: np.ndarray, expected: np.ndarray, dtype) -> None:
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(actual.astype(np.float64), expected, equal_nan=True, **TOL[dtype])


def logits_of(shape, dtype, scale=3.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def distribution(shape, axis, dtype) -> np.ndarray:
    return np_softmax(RNG.standard_normal(shape), axis).astype(dtype)


def ir_text(fetches) -> str:
    """The printed IR of the function computing `fetches`, every placeholder a parameter."""
    nodes = tf.get_default_graph().nodes
    feeds = [(n.out, n.types[0]) for n in nodes if n.op == "placeholder"]
    ir = extract(nodes, [t.value for t in fetches], [], feeds)
    verify(ir)
    return print_graph(ir)


def ir_round_trip(fetches) -> None:
    text = ir_text(fetches)
    assert print_graph(parse_graph(text)) == text


# -- registry ------------------------------------------------------------------------------
@pytest.mark.parametrize("op,fusion", [
    ("bias_add", Fusion.BROADCAST), ("softmax", Fusion.REDUCTION), ("log_softmax", Fusion.REDUCTION),
    ("softmax_cross_entropy_with_logits", Fusion.REDUCTION),
    ("sparse_softmax_cross_entropy_with_logits", Fusion.REDUCTION),
    ("sigmoid_cross_entropy_with_logits", Fusion.ELEMENTWISE), ("l2_loss", Fusion.REDUCTION)])
def test_registry_entries(op, fusion):
    opdef = get_op(op)
    assert op in NN_OPS and opdef.fusion is fusion
    assert opdef.differentiable and not opdef.stateful
    assert callable(opdef.type_rule) and callable(opdef.reference)


# -- bias_add ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [*FLOATS, np.int32, np.int64])
@pytest.mark.parametrize("shape,data_format", [
    ((3, 4), None), ((2, 3, 4), "NHWC"), ((2, 3, 2, 5), "N...C"), ((2, 3, 4), "NCHW"),
    ((2, 3, 2, 5), "NC..."), ((2, 3, 2, 2, 5), "NCHW")])
def test_bias_add(dtype, shape, data_format):
    channels_first = data_format in ("NCHW", "NC...")
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    b = (RNG.standard_normal(shape[1] if channels_first else shape[-1]) * 10).astype(dtype)
    out = tf.nn.bias_add(tf.constant(x), tf.constant(b), data_format=data_format)
    assert out.op.node.op == "bias_add" and out.op.name == "BiasAdd" and out.shape == shape
    expected = np_bias_add(x.astype(np.float64), b.astype(np.float64), channels_first)
    result = run(out)
    if np.dtype(dtype).kind == "i":
        np.testing.assert_array_equal(result, expected.astype(dtype))
        assert result.dtype == dtype
    else:
        close(result, expected, dtype)
    ir_round_trip([out])


def test_bias_add_python_bias_takes_value_dtype_and_unknown_dims():
    x = tf.placeholder(tf.float64, [None, None, 3])
    out = tf.nn.bias_add(x, [1, 2, 3], name="add_b")
    assert out.dtype == tf.float64 and out.op.name == "add_b" and out.shape.as_list() == [None, None, 3]
    for batch in [(1, 2), (4, 5)]:
        feed = RNG.standard_normal(batch + (3,))
        close(run(out, {x: feed}), feed + np.array([1.0, 2.0, 3.0]), np.float64)


def test_bias_add_channel_dim_from_bias_and_unknown_rank():
    x = tf.placeholder(tf.float32, [None, None, 2, 2])
    out = tf.nn.bias_add(x, np.array([1.0, -1.0, 0.5], np.float32), data_format="NCHW")
    assert out.shape.as_list() == [None, 3, 2, 2]
    feed = logits_of((2, 3, 2, 2), np.float32)
    close(run(out, {x: feed}), np_bias_add(feed.astype(np.float64), np.array([1.0, -1.0, 0.5]), True),
          np.float32)
    y = tf.placeholder(tf.float32, None)
    out = tf.nn.bias_add(y, np.array([1.0, 2.0], np.float32))
    assert out.shape.ndims is None
    feed = logits_of((3, 2), np.float32)
    close(run(out, {y: feed}), feed.astype(np.float64) + [1.0, 2.0], np.float32)


def test_bias_add_errors():
    x = tf.placeholder(tf.float32, [None, 4])
    with pytest.raises(GraphError, match=r"op `bias_add`.*bias f32\[3\] must match the channel dimension"
                                         r" 1 of value f32\[\?,4\]"):
        tf.nn.bias_add(x, np.zeros(3, np.float32))
    with pytest.raises(GraphError, match=r"op `bias_add`.*bias must be 1-D, got f32\[1,4\]"):
        tf.nn.bias_add(x, np.zeros((1, 4), np.float32))
    with pytest.raises(GraphError, match=r"op `bias_add`.*rank >= 2 for data_format NHWC, got f32\[4\]"):
        tf.nn.bias_add(tf.zeros([4]), np.zeros(4, np.float32))
    with pytest.raises(GraphError, match=r"op `bias_add`.*rank >= 3 for data_format NCHW, got f32\[\?,4\]"):
        tf.nn.bias_add(x, np.zeros(4, np.float32), data_format="NCHW")
    with pytest.raises(GraphError, match=r"op `bias_add`.*channel dimension 1 of value f32\[2,3,4\]"):
        tf.nn.bias_add(tf.zeros([2, 3, 4]), np.zeros(4, np.float32), data_format="NCHW")
    with pytest.raises(GraphError, match=r"op `bias_add`.*same dtype.*f32\[\?,4\], f64\[4\]"):
        tf.nn.bias_add(x, tf.constant(np.zeros(4)))
    with pytest.raises(GraphError, match=r"op `bias_add`.*numeric.*bool\[2,2\]"):
        tf.nn.bias_add(tf.constant(np.ones((2, 2), bool)), tf.constant(np.ones(2, bool)))
    with pytest.raises(ValueError, match=r"`data_format` must be of the form `N\.\.\.C` or `NC\.\.\.`"):
        tf.nn.bias_add(x, np.zeros(4, np.float32), data_format="CHWN")


def test_bias_add_channel_mismatch_at_run_time():
    x = tf.placeholder(tf.float32, [None, None])
    out = tf.nn.bias_add(x, np.zeros(3, np.float32))
    with pytest.raises(InvalidArgumentError, match=r"op `bias_add`.*f32\[3\].*f32\[2,4\]"):
        run(out, {x: np.zeros((2, 4), np.float32)})


# -- softmax and log_softmax ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_log_softmax_every_axis(dtype, shape):
    x = logits_of(shape, dtype)
    logits = tf.constant(x)
    rank = len(shape)
    axes = list(range(-rank, rank))
    outs = [tf.nn.softmax(logits, axis=a) for a in axes] + [tf.nn.log_softmax(logits, axis=a) for a in axes]
    for out, a in zip(outs, axes + axes):
        assert out.op.get_attr("axis") == a % rank and out.dtype == logits.dtype and out.shape == shape
    results = run(outs)
    x64 = x.astype(np.float64)
    for result, a in zip(results[:len(axes)], axes):
        close(result, np_softmax(x64, a), dtype)
    for result, a in zip(results[len(axes):], axes):
        close(result, np_log_softmax(x64, a), dtype)
    ir_round_trip(outs)


def test_softmax_defaults_names_and_dim_alias():
    x = logits_of((2, 3), np.float32)
    default, by_dim, log_default = (tf.nn.softmax(x), tf.nn.softmax(x, dim=0, name="s0"),
                                    tf.nn.log_softmax(x))
    assert (default.op.name, by_dim.op.name, log_default.op.name) == ("Softmax", "s0", "LogSoftmax")
    assert default.op.get_attr("axis") == 1 and by_dim.op.get_attr("axis") == 0
    x64 = x.astype(np.float64)
    results = run([default, by_dim, log_default, tf.nn.log_softmax(x, dim=-2)])
    for result, expected in zip(results, [np_softmax(x64, 1), np_softmax(x64, 0), np_log_softmax(x64, 1),
                                          np_log_softmax(x64, 0)]):
        close(result, expected, np.float32)
    with pytest.raises(ValueError, match="Cannot specify both 'axis' and 'dim'"):
        tf.nn.softmax(x, axis=0, dim=0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_unknown_dims_and_rank(dtype):
    dt = tf.as_dtype(dtype)
    batch = tf.placeholder(dt, [None, None, 4])
    anyrank = tf.placeholder(dt, None)
    outs = [tf.nn.softmax(batch, axis=1), tf.nn.log_softmax(batch, axis=-1), tf.nn.softmax(anyrank),
            tf.nn.log_softmax(anyrank, axis=0)]
    assert outs[0].shape.as_list() == [None, None, 4] and outs[2].shape.ndims is None
    assert outs[3].op.get_attr("axis") == 0 and outs[2].op.get_attr("axis") == -1
    for shape in [(1, 2, 4), (3, 5, 4)]:
        x = logits_of(shape, dtype)
        x64 = x.astype(np.float64)
        results = run(outs, {batch: x, anyrank: x})
        for result, expected in zip(results, [np_softmax(x64, 1), np_log_softmax(x64, -1),
                                              np_softmax(x64, -1), np_log_softmax(x64, 0)]):
            close(result, expected, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_extreme_logits(dtype):
    inf = np.inf
    x = np.array([[1000, 0, -inf, -1000], [-1000, -1000, -1000, -1000], [1000, 1000, -inf, 3],
                  [-inf, 2, -inf, -inf]])
    logits = tf.constant(x.astype(dtype))
    soft, log_soft, soft0 = run([tf.nn.softmax(logits), tf.nn.log_softmax(logits),
                                 tf.nn.softmax(logits, axis=0)])
    close(soft, np_softmax(x, 1), dtype)
    close(log_soft, np_log_softmax(x, 1), dtype)
    close(soft0, np_softmax(x, 0), dtype)
    assert not np.isnan(soft).any() and not np.isnan(log_soft).any() and not np.isnan(soft0).any()
    np.testing.assert_array_equal(soft[0], [1, 0, 0, 0])  # exact, as the shifted max is exactly 0
    np.testing.assert_array_equal(soft[3], [0, 1, 0, 0])
    np.testing.assert_array_equal(log_soft[0], [0, -1000, -inf, -2000])
    np.testing.assert_array_equal(log_soft[3], [-inf, 0, -inf, -inf])


def test_softmax_of_an_all_minus_inf_row_is_nan_as_in_tf():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], np.float32)
    soft, log_soft = run([tf.nn.softmax(x), tf.nn.log_softmax(x)])
    assert np.isnan(soft[0]).all() and np.isnan(log_soft[0]).all()
    np.testing.assert_array_equal(soft[1], [1, 0])


def test_softmax_errors():
    with pytest.raises(GraphError, match=r"op `softmax`.*floating-point.*i32\[2,3\]"):
        tf.nn.softmax(tf.constant(np.zeros((2, 3), np.int32)))
    with pytest.raises(GraphError, match=r"op `log_softmax`.*floating-point.*i64\[2\]"):
        tf.nn.log_softmax(tf.constant(np.zeros(2, np.int64)))
    with pytest.raises(GraphError, match=r"op `softmax`.*axis 2 is out of range.*rank 2.*f32\[\?,3\]"):
        tf.nn.softmax(tf.placeholder(tf.float32, [None, 3]), axis=2)
    with pytest.raises(GraphError, match=r"op `log_softmax`.*axis -3 is out of range.*rank 2"):
        tf.nn.log_softmax(tf.zeros([2, 3]), axis=-3)
    with pytest.raises(GraphError, match=r"op `softmax`.*rank >= 1, got a scalar f32\[\]"):
        tf.nn.softmax(tf.constant(1.0))


# -- softmax cross-entropy -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_xent_every_axis(dtype, shape):
    rank = len(shape)
    x = logits_of(shape, dtype)
    cases = [(a, distribution(shape, a, dtype)) for a in range(-rank, rank)]
    outs = [tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=x, axis=a) for a, y in cases]
    outs += [tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, dim=a) for a, y in cases]
    for out, (a, _) in zip(outs, cases + cases):
        assert out.op.node.op == "softmax_cross_entropy_with_logits" and out.dtype == tf.as_dtype(dtype)
        assert out.op.get_attr("axis") == a % rank
        assert out.shape == tuple(d for i, d in enumerate(shape) if i != a % rank)
    results = run(outs)
    x64 = x.astype(np.float64)
    for result, (a, y) in zip(results, cases + cases):
        close(result, np_xent(y.astype(np.float64), x64, a), dtype)
    ir_round_trip(outs)


def test_softmax_xent_v1_stops_the_gradient_into_labels_v2_does_not():
    labels, logits = tf.placeholder(tf.float32, [None, 3]), tf.placeholder(tf.float32, [None, 3])
    v1 = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    v2 = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
    v1_logits, v1_labels = v1.op.inputs
    assert v1_logits is logits and v1_labels.op.node.op == "stop_gradient"
    assert v1_labels.op.inputs[0] is labels
    assert v1_labels.op.name == "softmax_cross_entropy_with_logits_sg/labels_stop_gradient"
    assert v1.op.name == "softmax_cross_entropy_with_logits_sg"
    assert v2.op.inputs[1] is labels and v2.op.name == "softmax_cross_entropy_with_logits"
    assert tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits).op.name == \
        "softmax_cross_entropy_with_logits_sg_1"
    assert tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, name="xe").op.name == "xe"
    assert v1.shape.as_list() == [None]
    for batch in [1, 6]:
        x, y = logits_of((batch, 3), np.float32), distribution((batch, 3), -1, np.float32)
        r1, r2 = run([v1, v2], {labels: y, logits: x})
        expected = np_xent(y.astype(np.float64), x.astype(np.float64), -1)
        close(r1, expected, np.float32)
        close(r2, expected, np.float32)
    ir_round_trip([v1, v2])


def test_softmax_xent_labels_broadcast_and_cast_to_logits_dtype():
    x = logits_of((4, 3), np.float64)
    row = distribution((1, 3), -1, np.float32)
    out = tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.constant(row), logits=x)
    assert out.dtype == tf.float64 and out.op.inputs[1].op.node.op == "cast"
    close(run(out), np_xent(np.broadcast_to(row.astype(np.float64), (4, 3)), x, -1), np.float64)
    python_labels = tf.nn.softmax_cross_entropy_with_logits_v2(labels=[[0.0, 1.0, 0.0]] * 4, logits=x)
    assert python_labels.op.inputs[1].op.node.op == "constant"
    close(run(python_labels), np_xent(np.tile([0.0, 1.0, 0.0], (4, 1)), x, -1), np.float64)


def test_softmax_xent_labels_of_unknown_size_must_broadcast_at_run_time():
    labels = tf.placeholder(tf.float32, [None, 3])
    x = logits_of((1, 3), np.float32)
    out = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=x)
    assert out.shape.as_list() == [1]
    y = distribution((1, 3), -1, np.float32)
    close(run(out, {labels: y}), np_xent(y.astype(np.float64), x.astype(np.float64), -1), np.float32)
    with pytest.raises(InvalidArgumentError, match=r"op `softmax_cross_entropy_with_logits`.*labels f32\[4,3\] "
                                                   r"must have the shape of logits f32\[1,3\]"):
        run(out, {labels: distribution((4, 3), -1, np.float32)})


def test_softmax_xent_unknown_dims_and_rank():
    labels, logits = tf.placeholder(tf.float32, [None, None, 5]), tf.placeholder(tf.float32, [None, None, 5])
    any_labels, any_logits = tf.placeholder(tf.float32, None), tf.placeholder(tf.float32, None)
    batch = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits, axis=1)
    unknown = tf.nn.softmax_cross_entropy_with_logits_v2(labels=any_labels, logits=any_logits)
    assert batch.shape.as_list() == [None, 5] and unknown.shape.ndims is None
    for shape in [(1, 2, 5), (3, 4, 5)]:
        x = logits_of(shape, np.float32)
        y1, y2 = distribution(shape, 1, np.float32), distribution(shape, -1, np.float32)
        r1, r2 = run([batch, unknown], {labels: y1, logits: x, any_labels: y2, any_logits: x})
        close(r1, np_xent(y1.astype(np.float64), x.astype(np.float64), 1), np.float32)
        close(r2, np_xent(y2.astype(np.float64), x.astype(np.float64), -1), np.float32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_xent_extreme_logits(dtype):
    inf = np.inf
    x = np.array([[1000, -1000, 0], [-1000, 1000, 3], [1000, 1000, -1000], [5, -inf, 1]])
    y = np.array([[0, 1, 0], [0.5, 0.5, 0], [0.25, 0.75, 0], [1, 0, 0]])
    out = run(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y.astype(dtype), logits=x.astype(dtype)))
    close(out, np_xent(y, x, -1), dtype)
    assert np.isfinite(out[:3]).all() and out[0] == 2000
    assert np.isnan(out[3])  # TF's kernel computes 0 * inf for a -inf logit with label 0


@pytest.mark.parametrize("dtype", FLOATS)
def test_sparse_xent(dtype):
    outs, expected = [], []
    for shape in [(4,), (3, 4), (2, 3, 5), (2, 1, 3, 2)]:
        x = logits_of(shape, dtype)
        y = RNG.integers(0, shape[-1], shape[:-1]).astype(np.int64 if len(shape) % 2 else np.int32)
        out = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
        assert out.dtype == tf.as_dtype(dtype) and out.shape == shape[:-1]
        outs.append(out)
        expected.append(np_sparse_xent(y, x.astype(np.float64)))
    assert outs[0].op.name == "SparseSoftmaxCrossEntropyWithLogits"
    assert outs[1].op.name == "SparseSoftmaxCrossEntropyWithLogits_1"
    for result, e in zip(run(outs), expected):
        close(result, e, dtype)
    ir_round_trip(outs)


def test_sparse_xent_unknown_dims_and_extreme_logits():
    labels, logits = tf.placeholder(tf.int32, [None]), tf.placeholder(tf.float32, [None, None])
    out = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, name="loss")
    assert out.op.name == "loss" and out.shape.as_list() == [None]
    x = np.array([[1000, -1000, 0], [-1000, 1000, -np.inf], [1000, 0, -np.inf], [-np.inf, 2, 3]], np.float32)
    y = np.array([1, 1, 0, 2], np.int32)
    result = run(out, {labels: y, logits: x})
    close(result, np_sparse_xent(y, x.astype(np.float64)), np.float32)
    np.testing.assert_array_equal(result[:3], [2000, 0, 0])
    for batch, classes in [(1, 2), (5, 7)]:
        x, y = logits_of((batch, classes), np.float32), RNG.integers(0, classes, batch).astype(np.int32)
        close(run(out, {labels: y, logits: x}), np_sparse_xent(y, x.astype(np.float64)), np.float32)


def test_sparse_xent_out_of_range_labels_fail_at_run_time():
    labels = tf.placeholder(tf.int64, [None])
    out = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.zeros([3, 3]))
    for bad in ([0, 3, 2], [0, -1, 2]):
        with pytest.raises(InvalidArgumentError,
                           match=rf"op `sparse_softmax_cross_entropy_with_logits`.*label value of {bad[1]} "
                                 r"which is outside the valid range of \[0, 3\)"):
            run(out, {labels: np.array(bad)})


def test_sparse_xent_shapes_checked_at_run_time():
    labels, logits = tf.placeholder(tf.int32, [None]), tf.placeholder(tf.float32, [None, 4])
    out = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    with pytest.raises(InvalidArgumentError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*"
                                                   r"labels i32\[3\] must have the shape of logits "
                                                   r"f32\[2,4\] without its last dim"):
        run(out, {labels: np.zeros(3, np.int32), logits: np.zeros((2, 4), np.float32)})


def test_xent_errors():
    logits = tf.placeholder(tf.float32, [2, 3])
    with pytest.raises(GraphError, match=r"op `softmax_cross_entropy_with_logits`.*labels f32\[2,4\] must "
                                         r"have the shape of logits f32\[2,3\]"):
        tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.zeros([2, 4]), logits=logits)
    with pytest.raises(GraphError, match=r"op `softmax_cross_entropy_with_logits`.*labels f32\[3,3\].*"
                                         r"logits f32\[1,3\]"):
        tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.zeros([3, 3]), logits=tf.zeros([1, 3]))
    with pytest.raises(GraphError, match=r"op `softmax_cross_entropy_with_logits`.*floating-point.*"
                                         r"i32\[2,3\]"):
        tf.nn.softmax_cross_entropy_with_logits(labels=tf.zeros([2, 3]), logits=np.zeros((2, 3), np.int32))
    with pytest.raises(GraphError, match=r"op `softmax_cross_entropy_with_logits`.*axis 2 is out of range"):
        tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.zeros([2, 3]), logits=logits, axis=2)
    with pytest.raises(GraphError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*int32 or int64.*"
                                         r"f32\[2\]"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.zeros([2]), logits=logits)
    with pytest.raises(GraphError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*rank of labels "
                                         r"i32\[2,3\] must equal the rank of logits f32\[2,3\] minus 1"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros((2, 3), np.int32), logits=logits)
    with pytest.raises(GraphError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*labels i32\[3\] "
                                         r"must have the shape of logits f32\[2,3\] without its last dim"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros(3, np.int32), logits=logits)
    with pytest.raises(GraphError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*logits cannot be "
                                         r"a scalar, got f32\[\]"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros((), np.int32), logits=1.0)
    with pytest.raises(GraphError, match=r"op `sparse_softmax_cross_entropy_with_logits`.*floating-point"):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[0, 1], logits=np.zeros((2, 3), np.int32))


@pytest.mark.parametrize("fn", [tf.nn.softmax_cross_entropy_with_logits,
                                tf.nn.sparse_softmax_cross_entropy_with_logits,
                                tf.nn.sigmoid_cross_entropy_with_logits])
def test_xent_needs_named_arguments(fn):
    labels, logits = tf.zeros([2, 3]), tf.zeros([2, 3])
    with pytest.raises(ValueError, match=rf"Only call `{fn.__name__}` with named arguments "
                                         r"\(labels=\.\.\., logits=\.\.\., \.\.\.\)"):
        fn(labels, logits)
    with pytest.raises(ValueError, match="Both labels and logits must be provided"):
        fn(logits=logits)


# -- sigmoid cross-entropy -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
def test_sigmoid_xent(dtype, shape):
    x = logits_of(shape, dtype)
    z = RNG.uniform(0, 1, shape).astype(dtype)
    out = tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x)
    assert out.op.name == "logistic_loss" and out.dtype == tf.as_dtype(dtype) and out.shape == shape
    close(run(out), np_sigmoid_xent_definition(z.astype(np.float64), x.astype(np.float64)), dtype)
    ir_round_trip([out])


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_xent_extreme_logits_and_unknown_dims(dtype):
    dt = tf.as_dtype(dtype)
    labels, logits = tf.placeholder(dt, [None, 4]), tf.placeholder(dt, [None, None])
    out = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits, name="bce")
    assert out.op.name == "bce" and out.shape.as_list() == [None, 4]
    x = np.array([[1000, -1000, 0, 30], [-1000, 1000, -30, np.inf]])
    z = np.array([[0, 1, 0.5, 1], [0.25, 0.75, 0, 1]])
    result = run(out, {labels: z.astype(dtype), logits: x.astype(dtype)})
    close(result, np_sigmoid_xent_stable(z, x), dtype)
    assert result[0, 0] == 1000 and result[0, 1] == 1000 and np.isfinite(result[:, :3]).all()


def test_sigmoid_xent_errors():
    logits = tf.placeholder(tf.float32, [2, 3])
    with pytest.raises(GraphError, match=r"op `sigmoid_cross_entropy_with_logits`.*same shape.*"
                                         r"f32\[2,3\] and f32\[3\]"):
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros([3]), logits=logits)
    with pytest.raises(GraphError, match=r"op `sigmoid_cross_entropy_with_logits`.*same dtype.*f32\[2,3\], "
                                         r"f64\[2,3\]"):
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(np.zeros((2, 3))), logits=logits)
    with pytest.raises(GraphError, match=r"op `sigmoid_cross_entropy_with_logits`.*floating-point.*i32\[3\]"):
        tf.nn.sigmoid_cross_entropy_with_logits(labels=[1, 0, 1], logits=[1, 2, 3])


# -- l2_loss -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_l2_loss(dtype):
    shapes = [(), (7,), (3, 4), (2, 3, 4)]
    values = [logits_of(s, dtype) for s in shapes]
    outs = [tf.nn.l2_loss(v) for v in values]
    assert [o.op.name for o in outs[:2]] == ["L2Loss", "L2Loss_1"]
    assert all(o.shape == () and o.dtype == tf.as_dtype(dtype) for o in outs)
    for result, v in zip(run(outs), values):
        close(result, np_l2_loss(v.astype(np.float64)), dtype)
    ir_round_trip(outs)


def test_l2_loss_unknown_shape_float16_internal_precision_and_errors():
    x = tf.placeholder(tf.float16, None)
    out = tf.nn.l2_loss(x, name="wd")
    assert out.op.name == "wd" and out.shape == ()
    big = np.array([300, 2, 3], np.float16)  # 300**2 overflows float16; the float32 sum does not
    close(run(out, {x: big}), np_l2_loss(big.astype(np.float64)), np.float16)
    feed = logits_of((2, 5, 3), np.float16)
    close(run(out, {x: feed}), np_l2_loss(feed.astype(np.float64)), np.float16)
    with pytest.raises(GraphError, match=r"op `l2_loss`.*floating-point.*i32\[2,3\]"):
        tf.nn.l2_loss(np.zeros((2, 3), np.int32))


# -- everything in one graph ---------------------------------------------------------------
def test_ir_round_trip_of_a_classifier_head():
    x = tf.placeholder(tf.float32, [None, 8])
    w = tf.constant(logits_of((8, 4), np.float32))
    logits = tf.nn.bias_add(tf.matmul(x, w), np.arange(4, dtype=np.float32))
    labels = tf.placeholder(tf.int64, [None])
    onehot = tf.placeholder(tf.float32, [None, 4])
    loss = (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            + tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))
            + tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits))
            + 1e-3 * tf.nn.l2_loss(w))
    fetches = [loss, tf.nn.softmax(logits, axis=0), tf.nn.log_softmax(logits)]
    ir_round_trip(fetches)
    text = ir_text(fetches)
    for op in NN_OPS:
        assert f"= {op}" in text


def test_inside_tfjit_function():
    @tf.function
    def loss(logits, labels):
        return (tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                + tf.nn.l2_loss(tf.nn.bias_add(logits, [1.0, -2.0, 0.5])))

    for batch in [2, 5]:
        x, y = logits_of((batch, 3), np.float64), distribution((batch, 3), -1, np.float64)
        expected = np_xent(y, x, -1) + np_l2_loss(x + [1.0, -2.0, 0.5])
        close(loss(x, y), expected, np.float64)


# -- TensorFlow itself, when it is installed -----------------------------------------------
def test_against_tensorflow_compat_v1():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    real = pytest.importorskip("tensorflow", reason="TensorFlow is not installed in this venv; "
                                                    "the NumPy formulas above are the oracle")
    v1 = real.compat.v1
    x = np.concatenate([logits_of((5, 4), np.float64), [[1000, -1000, 0, 3], [-np.inf, 1, 2, 3]]])
    dense = distribution((7, 4), -1, np.float64)
    dense[6] = [0, 1, 0, 0]  # a -inf logit with label 0: NaN in TF
    sparse = RNG.integers(0, 4, 7).astype(np.int32)
    x3, dense3 = logits_of((2, 3, 4), np.float64), distribution((2, 3, 4), 0, np.float64)
    bias = logits_of((4,), np.float64)
    for dtype in (np.float32, np.float64):
        a, y, a3, y3, b = (v.astype(dtype) for v in (x, dense, x3, dense3, bias))
        cases = [
            (tf.nn.softmax(a), v1.nn.softmax(a)),
            (tf.nn.log_softmax(a), v1.nn.log_softmax(a)),
            (tf.nn.softmax(a3, axis=1), v1.nn.softmax(a3, axis=1)),
            (tf.nn.log_softmax(a3, dim=0), v1.nn.log_softmax(a3, dim=0)),
            (tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=a),
             v1.nn.softmax_cross_entropy_with_logits(labels=y, logits=a)),
            (tf.nn.softmax_cross_entropy_with_logits_v2(labels=y3, logits=a3, axis=0),
             v1.nn.softmax_cross_entropy_with_logits_v2(labels=y3, logits=a3, axis=0)),
            (tf.nn.sparse_softmax_cross_entropy_with_logits(labels=sparse, logits=a),
             v1.nn.sparse_softmax_cross_entropy_with_logits(labels=sparse, logits=a)),
            (tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=a),
             v1.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=a)),
            (tf.nn.bias_add(a, b), v1.nn.bias_add(a, b)),
            (tf.nn.bias_add(a3, b[:3], data_format="NCHW"), v1.nn.bias_add(a3, b[:3], data_format="NCHW")),
            (tf.nn.l2_loss(a3), v1.nn.l2_loss(a3)),
        ]
        ours = run([mine for mine, _ in cases])
        for result, (mine, theirs) in zip(ours, cases):
            expected = theirs.numpy()
            assert result.dtype == expected.dtype and result.shape == expected.shape, mine.op.node.op
            np.testing.assert_allclose(result, expected, equal_nan=True, err_msg=mine.op.node.op, **TOL[dtype])
