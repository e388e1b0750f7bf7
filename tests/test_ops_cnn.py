"""Convolution, pooling, dropout and normalisation ops against straightforward NumPy loops.

The loop implementations below follow the definitions (TF's output sizes and SAME padding
split, windows that never count padding) one output element at a time; the ops' references
use strided views and contractions instead, so the two agree only if both are right.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import tfjit as tf
from tfjit import config

rng = np.random.default_rng(7)
TOL = {np.float16: dict(rtol=2e-2, atol=2e-2), np.float32: dict(rtol=1e-4, atol=1e-4),
       np.float64: dict(rtol=1e-10, atol=1e-10)}


# -- loop implementations ------------------------------------------------------------------
def pads_1d(size, k, stride, dilation, padding):
    """(output size, pad before, pad after) from TF's documented formulas."""
    eff = (k - 1) * dilation + 1
    if padding == "VALID":
        return math.ceil((size - eff + 1) / stride), 0, 0
    if padding == "SAME":
        out = math.ceil(size / stride)
        need = max(0, (out - 1) * stride + eff - size)
        return out, need // 2, need - need // 2
    before, after = padding
    return (size + before + after - eff) // stride + 1, before, after


def windows(h, w, kh, kw, strides, dilations, padding):
    """For each output (oh, ow): the (input row, input col, kernel i, kernel j) it reads."""
    padding_h, padding_w = (padding, padding) if isinstance(padding, str) else padding
    oh, pt, _ = pads_1d(h, kh, strides[0], dilations[0], padding_h)
    ow, pl, _ = pads_1d(w, kw, strides[1], dilations[1], padding_w)
    out = {}
    for r, c in itertools.product(range(oh), range(ow)):
        taps = []
        for i, j in itertools.product(range(kh), range(kw)):
            y, x = r * strides[0] + i * dilations[0] - pt, c * strides[1] + j * dilations[1] - pl
            if 0 <= y < h and 0 <= x < w:
                taps.append((y, x, i, j))
        out[r, c] = taps
    return (oh, ow), out


def loop_conv(x, f, strides=(1, 1), padding="SAME", dilations=(1, 1), depthwise=False):
    x, f = x.astype(np.float64), f.astype(np.float64)
    n, h, w, c = x.shape
    kh, kw = f.shape[:2]
    (oh, ow), taps = windows(h, w, kh, kw, strides, dilations, padding)
    outc = c * f.shape[3] if depthwise else f.shape[3]
    out = np.zeros((n, oh, ow, outc))
    for (r, s), reads in taps.items():
        for y, xx, i, j in reads:
            if depthwise:
                out[:, r, s, :] += (x[:, y, xx, :, None] * f[i, j]).reshape(n, -1)
            else:
                out[:, r, s, :] += x[:, y, xx, :] @ f[i, j]
    return out


def loop_conv_input_grad(shape, f, dy, strides=(1, 1), padding="SAME", dilations=(1, 1), depthwise=False):
    n, h, w, c = shape
    kh, kw = f.shape[:2]
    _, taps = windows(h, w, kh, kw, strides, dilations, padding)
    dx = np.zeros(shape)
    for (r, s), reads in taps.items():
        for y, xx, i, j in reads:
            if depthwise:
                dx[:, y, xx, :] += (dy[:, r, s, :].reshape(n, c, -1) * f[i, j]).sum(-1)
            else:
                dx[:, y, xx, :] += dy[:, r, s, :] @ f[i, j].T
    return dx


def loop_conv_filter_grad(x, fshape, dy, strides=(1, 1), padding="SAME", dilations=(1, 1), depthwise=False):
    n, h, w, c = x.shape
    _, taps = windows(h, w, fshape[0], fshape[1], strides, dilations, padding)
    df = np.zeros(fshape)
    for (r, s), reads in taps.items():
        for y, xx, i, j in reads:
            if depthwise:
                df[i, j] += (x[:, y, xx, :, None] * dy[:, r, s, :].reshape(n, c, -1)).sum(0)
            else:
                df[i, j] += x[:, y, xx, :].T @ dy[:, r, s, :]
    return df


def loop_pool(x, k, strides, padding, kind, dilations=(1, 1)):
    n, h, w, c = x.shape
    (oh, ow), taps = windows(h, w, k[0], k[1], strides, dilations, padding)
    out = np.zeros((n, oh, ow, c), np.float64)
    for (r, s), reads in taps.items():
        vals = np.stack([x[:, y, xx, :] for y, xx, _, _ in reads]).astype(np.float64)
        out[:, r, s, :] = vals.max(0) if kind == "max" else vals.mean(0)
    return out


def loop_max_pool_grad(x, dy, k, strides, padding):
    """Each window's gradient goes to its first maximum (row-major in the window)."""
    n, h, w, c = x.shape
    _, taps = windows(h, w, k[0], k[1], strides, (1, 1), padding)
    dx = np.zeros(x.shape)
    for (r, s), reads in taps.items():
        for b, ch in itertools.product(range(n), range(c)):
            vals = [x[b, y, xx, ch] for y, xx, _, _ in reads]
            y, xx, _, _ = reads[int(np.argmax(vals))]
            dx[b, y, xx, ch] += dy[b, r, s, ch]
    return dx


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(a):
    return a.transpose(0, 2, 3, 1)


def run(fetches, feed=None):
    with tf.Session() as sess:
        return sess.run(fetches, feed)


# -- conv2d ----------------------------------------------------------------------------------
CONV_CASES = [  # (input NHWC, filter, strides, padding, dilations)
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1)),
    ((2, 6, 7, 3), (3, 3, 3, 2), (2, 2), "SAME", (1, 1)),
    ((1, 7, 6, 2), (2, 3, 2, 3), (2, 1), "VALID", (1, 1)),
    ((2, 7, 7, 2), (3, 3, 2, 2), (1, 1), "SAME", (2, 2)),
    ((1, 8, 7, 2), (3, 2, 2, 3), (1, 1), "VALID", (2, 3)),
    ((1, 6, 6, 2), (4, 4, 2, 2), (3, 3), "SAME", (1, 1)),
    ((2, 5, 6, 2), (3, 3, 2, 3), (2, 2), ((1, 2), (0, 3)), (1, 1)),
]


def _explicit(padding, fmt):
    if isinstance(padding, str):
        return padding
    hw = [list(p) for p in padding]
    return [[0, 0], *hw, [0, 0]] if fmt == "NHWC" else [[0, 0], [0, 0], *hw]


@pytest.mark.parametrize("xs,fs,strides,padding,dilations", CONV_CASES)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_conv2d_matches_loops(xs, fs, strides, padding, dilations, fmt):
    x, f = rng.standard_normal(xs), rng.standard_normal(fs)
    want = loop_conv(x, f, strides, padding, dilations)
    feed_x = x if fmt == "NHWC" else nchw(x)
    quad = (1, *strides, 1) if fmt == "NHWC" else (1, 1, *strides)
    dil = (1, *dilations, 1) if fmt == "NHWC" else (1, 1, *dilations)
    y = tf.nn.conv2d(tf.constant(feed_x), tf.constant(f), quad, _explicit(padding, fmt), data_format=fmt,
                     dilations=dil)
    got = run(y)
    assert tuple(y.shape.as_list()) == got.shape
    got = got if fmt == "NHWC" else nhwc(got)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_conv2d_dtypes_and_unknown_dims(dtype):
    x, f = rng.standard_normal((2, 6, 5, 3)).astype(dtype), rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    px = tf.placeholder(tf.as_dtype(dtype), [None, None, None, 3])
    y = tf.nn.conv2d(px, tf.constant(f), strides=2, padding="SAME")
    assert y.shape.as_list() == [None, None, None, 4] and y.dtype == tf.as_dtype(dtype)
    got = run(y, {px: x})
    assert got.dtype == dtype
    np.testing.assert_allclose(got, loop_conv(x, f, (2, 2)), **TOL[dtype])


def test_conv2d_output_shapes_for_every_padding_stride_and_dilation():
    for size, k, s, d, padding in itertools.product([5, 6, 8], [1, 2, 3], [1, 2, 3], [1, 2], ["SAME", "VALID"]):
        if (k - 1) * d + 1 > size:
            continue
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float32, [1, size, size + 1, 1])
            y = tf.nn.conv2d(x, tf.zeros([k, k, 1, 2]), [1, s, s, 1], padding, dilations=[1, d, d, 1])
            want_h = pads_1d(size, k, s, d, padding)[0]
            want_w = pads_1d(size + 1, k, s, d, padding)[0]
            assert y.shape.as_list() == [1, want_h, want_w, 2], (size, k, s, d, padding)
    x = tf.placeholder(tf.float32, [1, 6, 6, 1])
    y = tf.nn.conv2d(x, tf.ones([3, 3, 1, 1]), [1, 2, 2, 1], [[0, 0], [2, 1], [0, 0], [0, 0]])
    assert y.shape.as_list() == [1, 4, 2, 1]


def test_same_padding_puts_the_extra_row_at_the_bottom_right():
    """6 wide, kernel 4, stride 1: 3 padding columns, 1 before and 2 after."""
    x = np.arange(1, 7, dtype=np.float64).reshape(1, 1, 6, 1)
    y = tf.nn.conv2d(tf.constant(x), tf.ones([1, 4, 1, 1], tf.float64), 1, "SAME")
    np.testing.assert_allclose(run(y).reshape(-1), [1 + 2 + 3, 10, 14, 18, 4 + 5 + 6, 5 + 6])


def test_conv2d_gradients_as_ops_match_loops():
    x, f = rng.standard_normal((2, 6, 5, 3)), rng.standard_normal((3, 2, 3, 4))
    for strides, padding, dil in [((2, 2), "SAME", (1, 1)), ((1, 2), "VALID", (1, 1)), ((1, 1), "SAME", (2, 1))]:
        dy = rng.standard_normal(loop_conv(x, f, strides, padding, dil).shape)
        attrs = dict(strides=(1, *strides, 1), padding=padding, dilations=(1, *dil, 1))
        dx = tf.nn.conv2d_backprop_input(list(x.shape), tf.constant(f), tf.constant(dy), **attrs)
        df = tf.nn.conv2d_backprop_filter(tf.constant(x), list(f.shape), tf.constant(dy), **attrs)
        got_dx, got_df = run([dx, df])
        np.testing.assert_allclose(got_dx, loop_conv_input_grad(x.shape, f, dy, strides, padding, dil), atol=1e-10)
        np.testing.assert_allclose(got_df, loop_conv_filter_grad(x, f.shape, dy, strides, padding, dil), atol=1e-10)


def test_conv2d_backprop_with_run_time_sizes():
    x, f = rng.standard_normal((2, 7, 7, 2)), rng.standard_normal((3, 3, 2, 3))
    dy = rng.standard_normal((2, 4, 4, 3))
    px = tf.placeholder(tf.float64, [None, 7, None, 2])
    dx = tf.nn.conv2d_backprop_input(tf.shape(px), tf.constant(f), tf.constant(dy), [1, 2, 2, 1], "SAME")
    assert dx.shape.as_list() == [2, 7, None, 2]
    assert any(node.op == "conv2d_backprop_input" and len(node.inputs) == 3 for node in tf.get_default_graph().nodes)
    np.testing.assert_allclose(run(dx, {px: x}), loop_conv_input_grad(x.shape, f, dy, (2, 2)), atol=1e-10)


def test_conv2d_transpose_is_the_input_gradient():
    f = rng.standard_normal((3, 3, 2, 4))  # [h, w, out_c, in_c]
    value = rng.standard_normal((2, 3, 3, 4))
    y = tf.nn.conv2d_transpose(tf.constant(value), tf.constant(f), [2, 6, 6, 2], [1, 2, 2, 1], "SAME")
    assert y.shape.as_list() == [2, 6, 6, 2] and y.op.name == "conv2d_transpose"
    np.testing.assert_allclose(run(y), loop_conv_input_grad((2, 6, 6, 2), f, value, (2, 2)), atol=1e-10)
    y5 = tf.nn.conv2d_transpose(tf.constant(value), tf.constant(f), [2, 5, 5, 2], [1, 2, 2, 1], "SAME")
    np.testing.assert_allclose(run(y5), loop_conv_input_grad((2, 5, 5, 2), f, value, (2, 2)), atol=1e-10)
    v_nchw = tf.constant(nchw(value))
    y_nchw = tf.nn.conv2d_transpose(v_nchw, tf.constant(f), [2, 2, 6, 6], [1, 1, 2, 2], "SAME", data_format="NCHW")
    np.testing.assert_allclose(nhwc(run(y_nchw)), run(y), atol=1e-10)
    with pytest.raises(ValueError, match="output_shape does not match filter's output channels, 3 != 2"):
        tf.nn.conv2d_transpose(tf.constant(value), tf.constant(f), [2, 6, 6, 3], [1, 2, 2, 1], "SAME")
    with pytest.raises(ValueError, match="input channels does not match filter's input channels, 4 != 5"):
        tf.nn.conv2d_transpose(tf.constant(value), tf.zeros([3, 3, 2, 5], tf.float64), [2, 6, 6, 2], 2)


# -- depthwise -------------------------------------------------------------------------------
@pytest.mark.parametrize("strides,padding,rate", [((1, 1), "SAME", None), ((2, 2), "VALID", None),
                                                  ((1, 1), "SAME", (2, 2)), ((1, 1), "VALID", (1, 2))])
def test_depthwise_conv2d_matches_loops(strides, padding, rate):
    x, f = rng.standard_normal((2, 7, 6, 3)), rng.standard_normal((3, 2, 3, 2))
    y = tf.nn.depthwise_conv2d(tf.constant(x), tf.constant(f), (1, *strides, 1), padding, rate=rate)
    want = loop_conv(x, f, strides, padding, rate or (1, 1), depthwise=True)
    assert y.shape.as_list() == list(want.shape) and y.op.name == "depthwise"
    np.testing.assert_allclose(run(y), want, atol=1e-10)
    y_nchw = tf.nn.depthwise_conv2d(tf.constant(nchw(x)), tf.constant(f), (1, 1, *strides), padding, rate=rate,
                                    data_format="NCHW")
    np.testing.assert_allclose(nhwc(run(y_nchw)), want, atol=1e-10)


def test_depthwise_gradients_match_loops():
    x, f = rng.standard_normal((2, 6, 5, 2)), rng.standard_normal((3, 3, 2, 3))
    dy = rng.standard_normal((2, 3, 3, 6))
    attrs = dict(strides=[1, 2, 2, 1], padding="SAME")
    dx = tf.nn.depthwise_conv2d_native_backprop_input(list(x.shape), tf.constant(f), tf.constant(dy), **attrs)
    df = tf.nn.depthwise_conv2d_native_backprop_filter(tf.constant(x), list(f.shape), tf.constant(dy), **attrs)
    y = tf.nn.depthwise_conv2d_native(tf.constant(x), tf.constant(f), **attrs)
    got_dx, got_df, got_y = run([dx, df, y])
    np.testing.assert_allclose(got_y, loop_conv(x, f, (2, 2), depthwise=True), atol=1e-10)
    np.testing.assert_allclose(got_dx, loop_conv_input_grad(x.shape, f, dy, (2, 2), depthwise=True), atol=1e-10)
    np.testing.assert_allclose(got_df, loop_conv_filter_grad(x, f.shape, dy, (2, 2), depthwise=True), atol=1e-10)
    with pytest.raises(ValueError, match="strides > 1 not supported in conjunction with dilation_rate > 1"):
        tf.nn.depthwise_conv2d(tf.constant(x), tf.constant(f), [1, 2, 2, 1], "SAME", rate=[2, 2])


# -- pooling ---------------------------------------------------------------------------------
POOL_CASES = [((2, 2), (2, 2), "SAME"), ((3, 3), (2, 2), "SAME"), ((3, 2), (1, 2), "VALID"),
              ((2, 3), (2, 1), "SAME"), ((3, 3), (3, 3), "VALID")]


@pytest.mark.parametrize("k,strides,padding", POOL_CASES)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_max_and_avg_pool_match_loops(k, strides, padding, fmt):
    x = rng.standard_normal((2, 7, 6, 3))
    feed = x if fmt == "NHWC" else nchw(x)
    quad = (lambda v: (1, *v, 1)) if fmt == "NHWC" else (lambda v: (1, 1, *v))
    mx = tf.nn.max_pool(tf.constant(feed), quad(k), quad(strides), padding, data_format=fmt)
    av = tf.nn.avg_pool(tf.constant(feed), quad(k), quad(strides), padding, data_format=fmt)
    got_max, got_avg = run([mx, av])
    if fmt == "NCHW":
        got_max, got_avg = nhwc(got_max), nhwc(got_avg)
    want_max, want_avg = loop_pool(x, k, strides, padding, "max"), loop_pool(x, k, strides, padding, "avg")
    assert tuple(mx.shape.as_list()) == tuple(av.shape.as_list()) == (feed.shape[0],) + tuple(
        (want_max.shape[1:3] + (3,)) if fmt == "NHWC" else ((3,) + want_max.shape[1:3]))
    np.testing.assert_allclose(got_max, want_max, atol=1e-12)
    np.testing.assert_allclose(got_avg, want_avg, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32, np.int64])
def test_max_pool_dtypes(dtype):
    x = (rng.standard_normal((1, 5, 5, 2)) * 10).astype(dtype)
    y = run(tf.nn.max_pool2d(tf.constant(x), 2, 2, "SAME"))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, loop_pool(x, (2, 2), (2, 2), "SAME", "max").astype(dtype))
    if dtype in (np.float16, np.float32):
        avg = run(tf.nn.avg_pool2d(tf.constant(x), [3, 3], [2, 2], "SAME"))
        np.testing.assert_allclose(avg, loop_pool(x, (3, 3), (2, 2), "SAME", "avg"), **TOL[dtype])


def test_avg_pool_excludes_padding_in_its_average():
    x = np.ones((1, 3, 3, 1), np.float32)
    np.testing.assert_array_equal(run(tf.nn.avg_pool(tf.constant(x), 3, 1, "SAME")), x)


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 1))
    x[0, 1, 1, 0] = x[0, 1, 2, 0] = 1.0  # a tie in the first 3x3 window
    xt = tf.constant(x)
    for k, s, padding in [(2, 2, "VALID"), (3, 1, "SAME"), (2, 1, "VALID")]:
        y = tf.nn.max_pool(xt, k, s, padding)
        dy = rng.standard_normal(y.shape.as_list())
        (dx,) = tf.gradients(y, [xt], grad_ys=[tf.constant(dy)])
        np.testing.assert_allclose(run(dx), loop_max_pool_grad(x, dy, (k, k), (s, s), padding), atol=1e-12)


def test_pool_gradients_match_loops():
    x = rng.standard_normal((2, 6, 5, 3))
    xt = tf.constant(x)
    for k, s, padding in POOL_CASES:
        quad = (1, *k, 1), (1, *s, 1)
        mx, av = tf.nn.max_pool(xt, *quad, padding), tf.nn.avg_pool(xt, *quad, padding)
        dy = rng.standard_normal(mx.shape.as_list())
        (gm,) = tf.gradients(mx, [xt], grad_ys=[tf.constant(dy)])
        (ga,) = tf.gradients(av, [xt], grad_ys=[tf.constant(dy)])
        got_max, got_avg = run([gm, ga])
        np.testing.assert_allclose(got_max, loop_max_pool_grad(x, dy, k, s, padding), atol=1e-12)
        # avg's gradient is the transpose of the loop average: <avg(x), dy> = <x, grad>
        probe = rng.standard_normal(x.shape)
        lhs = np.sum(loop_pool(probe, k, s, padding, "avg") * dy)
        assert abs(lhs - np.sum(probe * got_avg)) < 1e-10


def test_nn_pool_as_the_lecture_writes_it():
    x = rng.standard_normal((2, 6, 6, 3))
    got = run(tf.nn.pool(tf.constant(x), window_shape=[2, 2], pooling_type="MAX", padding="SAME"))
    np.testing.assert_allclose(got, loop_pool(x, (2, 2), (1, 1), "SAME", "max"))
    got = run(tf.nn.pool(tf.constant(x), [3, 3], "AVG", "SAME", strides=[2, 2]))
    np.testing.assert_allclose(got, loop_pool(x, (3, 3), (2, 2), "SAME", "avg"))
    dilated = tf.nn.pool(tf.constant(x), [2, 2], "MAX", "VALID", dilation_rate=[2, 2])
    assert dilated.op.node.op == "max_pool" and dilated.op.name.startswith("max_pool")
    np.testing.assert_allclose(run(dilated), loop_pool(x, (2, 2), (1, 1), "VALID", "max", (2, 2)))
    seq = rng.standard_normal((2, 7, 3))
    one_d = tf.nn.pool(tf.constant(seq), [3], "AVG", "VALID", strides=[2])
    assert one_d.shape.as_list() == [2, 3, 3]
    np.testing.assert_allclose(run(one_d), loop_pool(seq[:, None], (1, 3), (1, 2), "VALID", "avg")[:, 0])
    one_d_ncw = tf.nn.pool(tf.constant(seq.transpose(0, 2, 1)), [3], "MAX", "SAME", data_format="NCW")
    np.testing.assert_allclose(run(one_d_ncw).transpose(0, 2, 1),
                               loop_pool(seq[:, None], (1, 3), (1, 1), "SAME", "max")[:, 0])


def test_nn_pool_errors():
    x = tf.zeros([1, 6, 6, 1])
    with pytest.raises(ValueError, match="SAME padding is not implemented for dilation_rate > 1"):
        tf.nn.pool(x, [2, 2], "MAX", "SAME", dilation_rate=[2, 2])
    with pytest.raises(ValueError, match="strides > window_shape not supported"):
        tf.nn.pool(x, [2, 2], "MAX", "SAME", strides=[3, 3])
    with pytest.raises(ValueError, match="2-D MIN pooling is not supported"):
        tf.nn.pool(x, [2, 2], "MIN", "SAME")
    with pytest.raises(ValueError, match="strides > 1 not supported in conjunction with dilation_rate > 1"):
        tf.nn.pool(x, [2, 2], "MAX", "VALID", strides=[2, 2], dilation_rate=[2, 2])
    with pytest.raises(ValueError, match="ksize cannot be zero"):
        tf.nn.max_pool(x, [1, 0, 2, 1], 1, "SAME")


# -- build-time errors -----------------------------------------------------------------------
def test_conv_errors_name_the_op_and_the_shapes():
    x = tf.placeholder(tf.float32, [2, 5, 5, 3], name="images")
    with pytest.raises(ValueError, match=r"op `conv2d` at .*test_ops_cnn.py.*input depth 3 must equal the "
                                         r"filter's input depth 4.*f32\[2,5,5,3\], f32\[3,3,4,8\]"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 4, 8]), [1, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match=r"op `conv2d`.*strides \[2, 1, 1, 1\] must be 1 in the batch and channel"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8]), [2, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match=r"op `conv2d`.*data_format must be NHWC or NCHW, got 'NHCW'"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8]), [1, 1, 1, 1], "SAME", data_format="NHCW")
    with pytest.raises(ValueError, match=r"op `conv2d`.*padding must be one of SAME, VALID, EXPLICIT, got 'same'"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8]), 1, "same")
    with pytest.raises(ValueError, match=r"op `conv2d`.*output size would be negative.*input_size: 5, "
                                         r"effective_filter_size: 7"):
        tf.nn.conv2d(x, tf.zeros([4, 4, 3, 8]), 1, "VALID", dilations=2)
    with pytest.raises(ValueError, match=r"op `conv2d`.*input must be 4-D, got f32\[5,5,3\]"):
        tf.nn.conv2d(tf.zeros([5, 5, 3]), tf.zeros([3, 3, 3, 8]), 1, "SAME")
    with pytest.raises(ValueError, match=r"explicit paddings .* must be 0 in the batch and channel"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8]), 1, [[1, 0], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="strides should be of length 1, 2 or 4 but was 3"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8]), [1, 1, 1], "SAME")
    with pytest.raises(ValueError, match=r"op `conv2d`.*same dtype"):
        tf.nn.conv2d(x, tf.zeros([3, 3, 3, 8], tf.float64), 1, "SAME")
    with pytest.raises(ValueError, match=r"op `max_pool`.*ksize \[1, 2, 2, 2\] must be 1 in the batch and channel"):
        tf.nn.max_pool(x, [1, 2, 2, 2], 1, "SAME")
    with pytest.raises(ValueError, match=r"op `conv2d_backprop_input`.*out_backprop: shape \[2, 5, 5, 8\] does not "
                                         r"match the expected \[2, 3, 3, 8\]"):
        tf.nn.conv2d_backprop_input([2, 5, 5, 3], tf.zeros([3, 3, 3, 8]), tf.zeros([2, 5, 5, 8]), 2, "SAME")


# -- dropout ---------------------------------------------------------------------------------
def test_dropout_scales_kept_entries_and_repeats_its_mask_for_a_seed():
    x = rng.uniform(1, 2, (40, 50)).astype(np.float32)
    y = tf.nn.dropout(tf.constant(x), keep_prob=0.7, seed=5)
    with tf.Session() as sess:
        first, second = sess.run(y), sess.run(y)
    with tf.Session() as sess:
        again = sess.run(y)
    kept = first != 0
    np.testing.assert_allclose(first[kept], x[kept] / np.float32(0.7), rtol=1e-6)
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_array_equal(first, again)  # run-to-run: the n-th run of a seed is the same
    assert not np.array_equal(first, second)  # each run draws a fresh mask


def test_dropout_mask_is_the_same_on_the_numba_backend():
    x = rng.uniform(1, 2, (8, 16)).astype(np.float32)
    results = {}
    previous = config.current.backend
    try:
        for backend in ("reference", "numba"):
            config.set_backend(backend)
            with tf.Graph().as_default():
                tf.set_random_seed(3)
                px = tf.placeholder(tf.float32, [None, 16])
                y = tf.nn.dropout(px, rate=0.5)
                results[backend] = run(y, {px: x})
    finally:
        config.set_backend(previous)
    np.testing.assert_array_equal(results["reference"], results["numba"])


def test_dropout_with_a_keep_prob_placeholder_and_unknown_batch():
    keep = tf.placeholder(tf.float32)
    px = tf.placeholder(tf.float32, [None, 30])
    y = tf.nn.dropout(px, keep, seed=1)
    assert y.shape.as_list() == [None, 30]
    assert any(node.op == "uniform_noise" for node in tf.get_default_graph().nodes)
    x = rng.uniform(1, 2, (20, 30)).astype(np.float32)
    with tf.Session() as sess:
        full = sess.run(y, {px: x, keep: 1.0})
        half = sess.run(y, {px: x, keep: 0.5})
    np.testing.assert_array_equal(full, x)
    kept = half != 0
    np.testing.assert_allclose(half[kept], 2 * x[kept])
    assert 0.35 < kept.mean() < 0.65


def test_dropout_keep_prob_one_is_the_identity_and_noise_shape_broadcasts():
    x = tf.constant(rng.standard_normal((4, 5, 6)).astype(np.float32))
    assert tf.nn.dropout(x, 1.0) is x
    y = tf.nn.dropout(x, 0.5, noise_shape=[4, 1, None], seed=2)
    got, xv = run([y, x])
    mask = got != 0
    assert (mask == mask[:, :1, :]).all()  # one draw per (batch, channel), repeated over dim 1
    np.testing.assert_allclose(got[mask], 2 * xv[mask])


def test_dropout_gradient_is_the_mask_over_keep_prob():
    x = tf.constant(rng.uniform(1, 2, (10, 10)))
    y = tf.nn.dropout(x, 0.6, seed=4)
    (dx,) = tf.gradients(tf.reduce_sum(y), [x])
    got_y, got_dx, xv = run([y, dx, x])
    np.testing.assert_allclose(got_dx, (got_y != 0) / 0.6)


def test_dropout_errors():
    x = tf.zeros([3])
    with pytest.raises(ValueError, match=r"keep_prob must be a scalar tensor or a float in the range \(0, 1\], got 0"):
        tf.nn.dropout(x, 0.0)
    with pytest.raises(ValueError, match=r"rate must be a scalar tensor or a float in the range \[0, 1\), got 1"):
        tf.nn.dropout(x, rate=1.0)
    with pytest.raises(ValueError, match="Cannot specify both 'rate' and 'keep_prob'"):
        tf.nn.dropout(x, 0.5, rate=0.5)
    with pytest.raises(ValueError, match="x has to be a floating point tensor"):
        tf.nn.dropout(tf.zeros([3], tf.int32), 0.5)


# -- normalisation ---------------------------------------------------------------------------
def test_l2_normalize_with_axis_and_the_old_dim_name():
    x = rng.standard_normal((3, 4, 2))
    for kw, axes in [({"dim": 1}, (1,)), ({"axis": [0, 2]}, (0, 2)), ({}, None), ({"axis": -1}, (2,))]:
        got = run(tf.nn.l2_normalize(tf.constant(x), **kw))
        want = x / np.sqrt(np.maximum(np.sum(x * x, axis=axes, keepdims=True), 1e-12))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    zero = run(tf.nn.l2_normalize(tf.zeros([2, 3]), 1))
    np.testing.assert_array_equal(zero, np.zeros((2, 3)))


def test_moments_and_batch_normalization():
    x = rng.standard_normal((4, 3, 5)) * 2 + 1
    mean, var = tf.nn.moments(tf.constant(x), axes=[0, 2])
    mean_k, var_k = tf.nn.moments(tf.constant(x), axes=[0, 2], keep_dims=True)
    assert mean.shape.as_list() == [3] and var_k.shape.as_list() == [1, 3, 1]
    got_m, got_v, got_vk = run([mean, var, var_k])
    np.testing.assert_allclose(got_m, x.mean((0, 2)))
    np.testing.assert_allclose(got_v, x.var((0, 2)))
    np.testing.assert_allclose(got_vk, x.var((0, 2), keepdims=True))
    scale, offset = rng.standard_normal((1, 3, 1)), rng.standard_normal((1, 3, 1))
    y = tf.nn.batch_normalization(tf.constant(x), mean_k, var_k, offset, scale, 1e-3)
    want = (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-3) * scale + offset
    np.testing.assert_allclose(run(y), want, rtol=1e-10)
    plain = tf.nn.batch_normalization(tf.constant(x), mean_k, var_k, None, None, 1e-3)
    np.testing.assert_allclose(run(plain), (x - x.mean((0, 2), keepdims=True)) / np.sqrt(
        x.var((0, 2), keepdims=True) + 1e-3), rtol=1e-10)
    m16, v16 = run(tf.nn.moments(tf.constant(x.astype(np.float16)), [0]))
    assert m16.dtype == np.float16
    np.testing.assert_allclose(v16, x.astype(np.float16).astype(np.float32).var(0), rtol=2e-3)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_fused_batch_norm_training_and_inference(fmt):
    x = rng.standard_normal((3, 4, 5, 2)) * 3 + 2
    scale, offset = rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    feed = x if fmt == "NHWC" else nchw(x)
    y, m, v = tf.nn.fused_batch_norm(tf.constant(feed), scale, offset, data_format=fmt)
    got_y, got_m, got_v = run([y, m, v])
    got_y = got_y if fmt == "NHWC" else nhwc(got_y)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(got_m, mean)
    np.testing.assert_allclose(got_v, var * 60 / 59)  # Bessel-corrected, as TF returns it
    np.testing.assert_allclose(got_y, (x - mean) / np.sqrt(var + 1e-3) * scale + offset, rtol=1e-10)
    pm, pv = rng.standard_normal(2), rng.uniform(1, 2, 2)
    y, m, v = tf.nn.fused_batch_norm(tf.constant(feed), scale, offset, pm, pv, epsilon=1e-7, data_format=fmt,
                                     is_training=False)
    got_y, got_m, got_v = run([y, m, v])
    got_y = got_y if fmt == "NHWC" else nhwc(got_y)
    np.testing.assert_allclose(got_y, (x - pm) / np.sqrt(pv + 1.001e-5) * scale + offset, rtol=1e-10)
    np.testing.assert_array_equal(got_m, pm)
    np.testing.assert_array_equal(got_v, pv)


def test_fused_batch_norm_float16_and_errors():
    x = rng.standard_normal((2, 3, 3, 4)).astype(np.float16)
    y, m, v = tf.nn.fused_batch_norm(tf.constant(x), np.ones(4, np.float32), np.zeros(4, np.float32))
    assert (y.dtype, m.dtype, v.dtype) == (tf.float16, tf.float32, tf.float32)
    wide = x.astype(np.float32)
    want = (wide - wide.mean((0, 1, 2))) / np.sqrt(wide.var((0, 1, 2)) + 1e-3)
    np.testing.assert_allclose(run(y), want, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="'mean' and 'variance' must be a 1D tensor when is_training is False"):
        tf.nn.fused_batch_norm(tf.constant(x), np.ones(4, np.float32), np.zeros(4, np.float32), is_training=False)
    with pytest.raises(ValueError, match="x must be 4-D"):
        tf.nn.fused_batch_norm(tf.zeros([2, 3]), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])


def test_local_response_normalization_matches_loops():
    x = rng.standard_normal((2, 3, 3, 7))
    for radius, bias, alpha, beta in [(5, 1.0, 1.0, 0.5), (2, 2.0, 0.1, 0.75)]:
        got = run(tf.nn.local_response_normalization(tf.constant(x), radius, bias, alpha, beta))
        want = np.empty_like(x)
        for d in range(7):
            lo, hi = max(0, d - radius), min(7, d + radius + 1)
            sqr = np.sum(x[..., lo:hi] ** 2, axis=-1)
            want[..., d] = x[..., d] / (bias + alpha * sqr) ** beta
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert tf.nn.lrn is tf.nn.local_response_normalization


# -- gradients in float64 --------------------------------------------------------------------
GRADIENT_CASES = {
    "conv2d same stride 2": (lambda x, f: tf.nn.conv2d(x, f, 2, "SAME"), [(2, 5, 4, 2), (3, 3, 2, 3)]),
    "conv2d NCHW dilated": (lambda x, f: tf.nn.conv2d(x, f, 1, "VALID", data_format="NCHW", dilations=[1, 1, 2, 1]),
                            [(1, 2, 6, 5), (2, 3, 2, 2)]),
    "conv2d explicit": (lambda x, f: tf.nn.conv2d(x, f, [1, 2, 1, 1], [[0, 0], [1, 2], [0, 1], [0, 0]]),
                        [(1, 4, 4, 2), (2, 2, 2, 2)]),
    "conv2d_transpose": (lambda v, f: tf.nn.conv2d_transpose(v, f, [2, 5, 5, 2], [1, 2, 2, 1], "SAME"),
                         [(2, 3, 3, 3), (3, 3, 2, 3)]),
    "depthwise rate 2": (lambda x, f: tf.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME", rate=[2, 2]),
                         [(1, 5, 5, 2), (2, 2, 2, 2)]),
    "l2_normalize": (lambda x: tf.nn.l2_normalize(x, [1, 2]), [(2, 3, 4)]),
    "moments": (lambda x: tf.nn.moments(x, [0, 1]), [(3, 4, 2)]),
    "batch_normalization": (lambda x, m, v, o, s: tf.nn.batch_normalization(x, m, v * v + 0.5, o, s, 1e-3),
                            [(3, 4), (4,), (4,), (4,), (4,)]),
    "fused_batch_norm training": (lambda x, s, o: tf.nn.fused_batch_norm(x, s, o)[0], [(2, 3, 2, 3), (3,), (3,)]),
    "fused_batch_norm NCHW": (lambda x, s, o: tf.nn.fused_batch_norm(x, s, o, data_format="NCHW")[0],
                              [(2, 3, 2, 2), (3,), (3,)]),
    "fused_batch_norm inference": (
        lambda x, s, o: tf.nn.fused_batch_norm(x, s, o, [0.5, -1.0, 0.0], [1.0, 2.0, 0.5], is_training=False)[0],
        [(2, 2, 2, 3), (3,), (3,)]),
    "lrn": (lambda x: tf.nn.lrn(x, 2, 1.5, 0.3, 0.75), [(2, 2, 2, 5)]),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_first_order_gradients(name):
    fn, shapes = GRADIENT_CASES[name]
    inputs = [rng.standard_normal(s) for s in shapes]
    assert tf.test.check_gradients(fn, inputs) < 1e-6


@pytest.mark.parametrize("name", ["conv2d same stride 2", "conv2d NCHW dilated", "conv2d_transpose",
                                  "depthwise rate 2", "l2_normalize", "fused_batch_norm training"])
def test_second_order_gradients(name):
    fn, shapes = GRADIENT_CASES[name]
    inputs = [rng.standard_normal(s) for s in shapes]
    assert tf.test.check_gradients(fn, inputs, order=2) < 1e-6


def test_backward_program_runs_on_the_numba_backend():
    x, f = rng.standard_normal((2, 6, 6, 2)).astype(np.float32), rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    results = {}
    previous = config.current.backend
    try:
        for backend in ("reference", "numba"):
            config.set_backend(backend)
            with tf.Graph().as_default():
                px, pf = tf.placeholder(tf.float32, [None, 6, 6, 2]), tf.constant(f)
                h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(px, pf, 1, "SAME"), tf.ones([4])))
                loss = tf.reduce_sum(tf.nn.avg_pool(tf.nn.max_pool(h, 2, 2, "SAME"), 2, 1, "VALID") ** 2)
                results[backend] = run([loss] + tf.gradients(loss, [px, pf]), {px: x})
    finally:
        config.set_backend(previous)
    for a, b in zip(results["reference"], results["numba"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gradients_with_inputs_of_unknown_rank():
    x, f = rng.standard_normal((1, 5, 4, 2)), rng.standard_normal((3, 3, 2, 2))

    def loss(tx, tf_):
        y = tf.nn.max_pool(tf.nn.avg_pool(tf.nn.conv2d(tx, tf_, 2, "SAME"), 2, 1, "SAME"), 2, 1, "VALID")
        return tf.gradients(tf.reduce_sum(y * y), [tx, tf_])

    unknown = [tf.placeholder(tf.float64), tf.placeholder(tf.float64)]
    got = run(loss(*unknown), dict(zip(unknown, [x, f])))
    want = run(loss(tf.constant(x), tf.constant(f)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
