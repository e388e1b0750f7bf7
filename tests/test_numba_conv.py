"""The numba backend's convolution and pooling kernels give the reference backend's results
(which tests/test_ops_cnn.py and test_cnn_tensorflow.py check against loops and TF) over the
shape classes: NHWC/NCHW, SAME/VALID/explicit padding, strides, dilations, 1x1 (one GEMM)
and wider windows, batch 1, empty dims, float32/float64; the max-pool gradients route to the
first maximum on ties and NaN; other dtypes and run-time sizes fall back to the reference;
kernels inside fused contraction bodies; and a small CNN trains to the reference's losses."""
from __future__ import annotations

import sys
import zlib

import numba
import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import conv, pool, winograd_tiles

from test_numba_backend import both

RNG = np.random.default_rng(11)
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
KERNEL_TYPES = (conv.Conv2D, conv.Conv2DBackpropInput, conv.Conv2DBackpropFilter, conv.Depthwise, pool.Pool)


@pytest.fixture(autouse=True)
def own_random_stream(request, monkeypatch):
    """Each test draws its data from a stream of its own, seeded by its id, so its data does not
    depend on which tests ran before it in the same process (modules importing this fixture,
    such as test_numba_winograd_1d, get theirs the same way)."""
    rng = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
    monkeypatch.setattr(sys.modules[__name__], "RNG", rng)
    if hasattr(request.module, "RNG"):
        monkeypatch.setattr(request.module, "RNG", rng)


@pytest.fixture(autouse=True)
def winograd_for_few_channels(monkeypatch):
    """The small shapes here take the Winograd path too (by default only from 8 channels)."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)


def kernels(exe):
    """(op, kernel) of every node the plan runs, inside fused bodies too."""
    out = []
    for node, kernel in exe.kernels:
        inner = getattr(kernel, "inner", None)
        out += kernels(inner) if inner is not None else [(node.op, kernel)]
    return out


def window_kernels(exe):
    return {op: k for op, k in kernels(exe) if isinstance(k, KERNEL_TYPES)}


def assert_same(got, want, dtype):
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, equal_nan=True, **TOL[dtype])


def nchw(shape):
    return (shape[0], shape[3], shape[1], shape[2])


def quad(pair, fmt):
    return (1, *pair, 1) if fmt == "NHWC" else (1, 1, *pair)


def explicit(padding, fmt):
    if isinstance(padding, str):
        return padding
    hw = [list(p) for p in padding]
    return [[0, 0], *hw, [0, 0]] if fmt == "NHWC" else [[0, 0], [0, 0], *hw]


def conv_and_grads(x_shape, f_shape, strides, padding, dilations, fmt, dtype, depthwise=False):
    """A convolution, its input and filter gradients (through a random cotangent), on both backends."""
    tdtype = tf.as_dtype(dtype)
    shape = x_shape if fmt == "NHWC" else nchw(x_shape)
    x = tf.placeholder(tdtype, shape, name="x")
    f = tf.placeholder(tdtype, f_shape, name="f")
    if depthwise:
        y = tf.nn.depthwise_conv2d_native(x, f, quad(strides, fmt), explicit(padding, fmt), data_format=fmt,
                                          dilations=quad(dilations, fmt))
    else:
        y = tf.nn.conv2d(x, f, quad(strides, fmt), explicit(padding, fmt), data_format=fmt,
                         dilations=quad(dilations, fmt))
    r = tf.placeholder(tdtype, y.shape.as_list(), name="r")
    dx, df = tf.gradients(y, [x, f], grad_ys=[r])
    feeds = {x: RNG.standard_normal(shape), f: RNG.standard_normal(f_shape),
             r: RNG.standard_normal(y.shape.as_list())}
    return both([y, dx, df], feeds)


CONV_CASES = [  # (input NHWC, filter HWIO, strides, padding, dilations)
    ((2, 6, 5, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1)),
    ((2, 7, 6, 3), (3, 3, 3, 2), (2, 2), "SAME", (1, 1)),
    ((1, 7, 6, 2), (2, 3, 2, 3), (2, 1), "VALID", (1, 1)),
    ((1, 8, 7, 3), (3, 2, 3, 2), (1, 1), "VALID", (2, 3)),
    ((2, 5, 6, 2), (3, 3, 2, 3), (2, 2), ((1, 2), (0, 3)), (1, 1)),
    ((3, 4, 5, 6), (1, 1, 6, 5), (1, 1), "SAME", (1, 1)),   # pointwise: one GEMM
    ((2, 5, 5, 4), (1, 1, 4, 3), (2, 2), "VALID", (1, 1)),  # 1x1 strided: columns again
    ((2, 3, 4, 2), (1, 1, 2, 3), (1, 1), ((0, 1), (0, 2)), (1, 1)),  # 1x1 padded below/right
    ((1, 3, 3, 2), (3, 3, 2, 2), (1, 1), "VALID", (1, 1)),  # a single output pixel
    ((1, 5, 4, 3), (2, 3, 3, 2), (1, 1), ((3, 0), (1, 4)), (1, 1)),  # padding beyond the window
    ((2, 5, 6, 3), (3, 3, 3, 3), (1, 1), ((2, 0), (1, 3)), (1, 1)),  # 3x3 stride 1: Winograd, odd sizes
    ((1, 4, 4, 3), (3, 3, 3, 2), (1, 1), ((3, 1), (0, 4)), (1, 1)),  # Winograd, padding beyond the window
    ((1, 6, 13, 2), (3, 3, 2, 3), (1, 1), "SAME", (1, 1)),  # Winograd, a row of inner tiles (shared columns)
    # 3x3 on 3 channels by columns: window rows copied as 9-value segments (im2col.RGB_SEGMENT)
    ((2, 7, 8, 3), (3, 3, 3, 2), (1, 1), ((2, 1), (1, 3)), (2, 1)),  # ... dilated rows, padding
    ((1, 6, 9, 3), (2, 3, 3, 2), (1, 1), "SAME", (1, 2)),  # ... not with dilated columns
]


@pytest.mark.parametrize("x_shape,f_shape,strides,padding,dilations", CONV_CASES)
def test_conv2d_and_its_gradients_match_the_reference(x_shape, f_shape, strides, padding, dilations):
    got, want, exe = conv_and_grads(x_shape, f_shape, strides, padding, dilations, "NHWC", np.float32)
    assert_same(got, want, np.float32)
    kernels = window_kernels(exe)
    assert set(kernels) == {"conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"}
    # at stride 1 with dx's channels >= dy's, or by Winograd, the input gradient runs as a
    # convolution of dy
    winograd = f_shape[:2] == (3, 3) and strides == (1, 1) and dilations == (1, 1)
    as_convolution = strides == (1, 1) and (f_shape[2] >= f_shape[3] or winograd)
    assert isinstance(kernels["conv2d_backprop_input"], conv.Conv2D) == as_convolution
    assert kernels["conv2d"].plan.winograd == winograd
    assert kernels["conv2d_backprop_filter"].winograd == winograd


@pytest.mark.parametrize("x_shape,f_shape,strides,padding,dilations",
                         [CONV_CASES[1], CONV_CASES[4], CONV_CASES[5], CONV_CASES[10]])
def test_conv2d_nchw_and_float64(x_shape, f_shape, strides, padding, dilations):
    got, want, exe = conv_and_grads(x_shape, f_shape, strides, padding, dilations, "NCHW", np.float64)
    assert_same(got, want, np.float64)
    assert len(window_kernels(exe)) == 3


def test_conv2d_split_across_threads(monkeypatch):
    """Big convolutions split their pixels (the input gradient: its images) into chunks that
    threads take in turn, each chunk block by block (a last block shorter)."""
    monkeypatch.setattr(conv, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(conv, "MAX_BLOCK_ROWS", 7)
    monkeypatch.setattr(conv, "MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_BLOCK_BYTES", 16 * 5 * 4 * 3)  # 3 tiles a block
    for x_shape, f_shape, strides, padding in [((3, 6, 5, 3), (3, 3, 3, 4), (2, 1), "SAME"),
                                               ((3, 4, 5, 6), (1, 1, 6, 5), (1, 1), "VALID"),
                                               ((3, 7, 5, 5), (3, 3, 5, 4), (1, 1), "SAME")]:  # Winograd
        got, want, exe = conv_and_grads(x_shape, f_shape, strides, padding, (1, 1), "NHWC", np.float32)
        assert_same(got, want, np.float32)
        assert all(k.threads == min(numba.get_num_threads(), 3) for k in window_kernels(exe).values())
        assert all(k.chunks > k.threads for k in window_kernels(exe).values())


@pytest.mark.parametrize("x_shape,f_shape", [((0, 5, 5, 2), (3, 3, 2, 3)), ((2, 5, 5, 0), (3, 3, 0, 3)),
                                             ((2, 5, 5, 2), (3, 3, 2, 0)), ((1, 2, 2, 2), (3, 3, 2, 2))])
def test_conv2d_with_empty_dims(x_shape, f_shape):
    """Empty batch, channels or filters, and a VALID window larger than the input (no output)."""
    padding = "VALID" if x_shape[1] < f_shape[0] else "SAME"
    got, want, exe = conv_and_grads(x_shape, f_shape, (1, 1), padding, (1, 1), "NHWC", np.float32)
    assert_same(got, want, np.float32)
    assert len(window_kernels(exe)) == 3


DEPTHWISE_CASES = [
    ((2, 6, 5, 3), (3, 3, 3, 1), (1, 1), "SAME", (1, 1), "NHWC", np.float32),
    ((1, 7, 6, 2), (2, 3, 2, 2), (2, 1), "VALID", (1, 1), "NCHW", np.float64),
    ((2, 7, 7, 2), (3, 3, 2, 2), (1, 1), "SAME", (2, 2), "NHWC", np.float64),
    ((1, 6, 6, 3), (3, 3, 3, 2), (2, 2), ((1, 0), (2, 1)), (1, 1), "NHWC", np.float32),
]


@pytest.mark.parametrize("x_shape,f_shape,strides,padding,dilations,fmt,dtype", DEPTHWISE_CASES)
def test_depthwise_conv2d_and_its_gradients_match_the_reference(x_shape, f_shape, strides, padding, dilations,
                                                                 fmt, dtype):
    got, want, exe = conv_and_grads(x_shape, f_shape, strides, padding, dilations, fmt, dtype, depthwise=True)
    assert_same(got, want, dtype)
    assert set(window_kernels(exe)) == {"depthwise_conv2d_native", "depthwise_conv2d_native_backprop_input",
                                        "depthwise_conv2d_native_backprop_filter"}


POOL_CASES = [  # (input NHWC, ksize, strides, padding)
    ((2, 6, 5, 3), (2, 2), (2, 2), "VALID"),
    ((2, 4, 6, 3), (2, 2), (2, 2), "VALID"),  # 2x2 windows tiling the input: their own kernels
    ((2, 7, 6, 3), (3, 3), (2, 2), "SAME"),
    ((1, 5, 6, 2), (3, 2), (1, 2), "SAME"),
    ((1, 4, 4, 1), (4, 4), (1, 1), "VALID"),
]


def pools_and_grads(x, ksize, strides, padding, fmt, dtype, grad_grad=False):
    tdtype = tf.as_dtype(dtype)
    xt = tf.placeholder(tdtype, x.shape, name="x")
    k, s = quad(ksize, fmt), quad(strides, fmt)
    mx = tf.nn.max_pool(xt, k, s, padding, data_format=fmt)
    av = tf.nn.avg_pool(xt, k, s, padding, data_format=fmt)
    r = tf.placeholder(tdtype, mx.shape.as_list(), name="r")
    (gm,) = tf.gradients(mx, [xt], grad_ys=[r])
    (ga,) = tf.gradients(av, [xt], grad_ys=[r])
    fetches = [mx, av, gm, ga]
    feeds = {xt: x, r: RNG.standard_normal(mx.shape.as_list())}
    if grad_grad:
        q = tf.placeholder(tdtype, x.shape, name="q")
        (ggm,) = tf.gradients(gm, [r], grad_ys=[q])   # max_pool_grad_grad
        fetches.append(ggm)
        feeds[q] = RNG.standard_normal(x.shape)
    return both(fetches, feeds)


@pytest.mark.parametrize("x_shape,ksize,strides,padding", POOL_CASES)
def test_pooling_and_its_gradients_match_the_reference(x_shape, ksize, strides, padding):
    x = RNG.standard_normal(x_shape)
    got, want, exe = pools_and_grads(x, ksize, strides, padding, "NHWC", np.float32, grad_grad=True)
    assert_same(got, want, np.float32)
    assert set(window_kernels(exe)) == {"max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad",
                                        "max_pool_grad_grad"}


def test_pooling_nchw_float64_and_empty_batch():
    for x_shape, ksize, strides in [((2, 3, 7, 6), (3, 2), (2, 1)), ((0, 3, 4, 4), (3, 2), (2, 1)),
                                    ((2, 3, 4, 6), (2, 2), (2, 2))]:
        got, want, exe = pools_and_grads(RNG.standard_normal(x_shape), ksize, strides, "SAME", "NCHW", np.float64,
                                         grad_grad=True)
        assert_same(got, want, np.float64)
        assert len(window_kernels(exe)) == 5


def test_max_pool_gradients_route_to_the_first_maximum_on_ties_nan_and_inf():
    x = RNG.integers(0, 2, (2, 6, 6, 3)).astype(np.float32)  # many ties in every window
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = x[1, 3, 2, 1] = np.nan  # two NaNs in a 2x2 window: the first wins
    x[0, 2, 3, 2] = x[1, 4, 4, 0] = np.inf
    x[1, :3, :3, 2] = -np.inf                                # windows of -inf only, padding among them
    for ksize, strides, padding in [((3, 3), (1, 1), "SAME"), ((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME")]:
        got, want, _ = pools_and_grads(x, ksize, strides, padding, "NHWC", np.float32, grad_grad=True)
        assert_same(got, want, np.float32)


def test_max_pool_gradient_over_images_in_parallel(monkeypatch):
    from tfjit.backends.numba_cpu import pool

    monkeypatch.setattr(pool, "_PARALLEL_MIN_ELEMENTS", 0)
    x = RNG.integers(0, 3, (3, 6, 5, 4)).astype(np.float32)  # ties; 2x2/2 leaves a column untouched
    x[2, 1, 1, 3] = np.nan
    for ksize, strides, padding in [((2, 2), (2, 2), "VALID"), ((3, 3), (1, 1), "SAME")]:
        got, want, exe = pools_and_grads(x, ksize, strides, padding, "NHWC", np.float32)
        assert_same(got, want, np.float32)
        assert any(k.kernel is pool._compiled("max_pool_grad", True) for _, k in exe.kernels if isinstance(k, pool.Pool))
    got, want, exe = pools_and_grads(x[:, :, :4], (2, 2), (2, 2), "VALID", "NHWC", np.float32)  # tiled 2x2
    assert_same(got, want, np.float32)
    assert any(k.kernel is pool._compiled("max_pool_grad_2x2", True) for _, k in exe.kernels if isinstance(k, pool.Pool))


def test_other_dtypes_and_run_time_sizes_fall_back_to_the_reference():
    x16 = tf.placeholder(tf.float16, [1, 5, 5, 2], name="x16")
    f16 = tf.placeholder(tf.float16, [3, 3, 2, 2], name="f16")
    xi = tf.placeholder(tf.int32, [1, 4, 4, 2], name="xi")
    dy = tf.placeholder(tf.float32, [None, 5, 5, 2], name="dy")
    f = tf.placeholder(tf.float32, [3, 3, 2, 2], name="f")
    sizes = tf.shape(dy)  # only known at run time: the op takes it as an operand
    outs = [tf.nn.conv2d(x16, f16, 1, "SAME"), tf.nn.max_pool(xi, 2, 2, "VALID"),
            tf.nn.conv2d_backprop_input(sizes, f, dy, [1, 1, 1, 1], "SAME")]
    feeds = {x16: RNG.standard_normal((1, 5, 5, 2)), f16: RNG.standard_normal((3, 3, 2, 2)),
             xi: RNG.integers(-5, 5, (1, 4, 4, 2)), dy: RNG.standard_normal((2, 5, 5, 2)),
             f: RNG.standard_normal((3, 3, 2, 2))}
    got, want, exe = both(outs, feeds)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not window_kernels(exe)


def test_conv_inside_a_fused_contraction_with_its_epilogue():
    x = tf.placeholder(tf.float32, [2, 6, 6, 3], name="x")
    f = tf.placeholder(tf.float32, [3, 3, 3, 4], name="f")
    b = tf.placeholder(tf.float32, [4], name="b")
    y = tf.nn.relu(tf.nn.conv2d(x, f, 1, "SAME") + b)
    got, want, exe = both([y], {x: RNG.standard_normal((2, 6, 6, 3)), f: RNG.standard_normal((3, 3, 3, 4)),
                                b: RNG.standard_normal(4)})
    assert_same(got, want, np.float32)
    assert [n.attr("kind") for n, _ in exe.kernels if n.op == "fused"] == ["contraction"]
    assert [type(k) for n, k in exe.kernels if n.op == "fused"] == [conv.FusedConv]


FUSED_CASES = [  # (input NHWC, filter HWIO, strides, padding, dtype)
    ((2, 6, 5, 3), (3, 3, 3, 5), (1, 1), "SAME", np.float32),
    ((1, 7, 6, 2), (2, 3, 2, 3), (2, 1), "VALID", np.float64),
    ((3, 4, 5, 7), (1, 1, 7, 5), (1, 1), "SAME", np.float32),  # pointwise
    ((1, 5, 7, 4), (3, 3, 4, 4), (1, 1), "VALID", np.float64),  # Winograd, both layers
]


@pytest.mark.parametrize("x_shape,f_shape,strides,padding,dtype", FUSED_CASES)
def test_fused_conv_epilogues_match_the_reference(x_shape, f_shape, strides, padding, dtype):
    """Two layers: conv + bias + relu keeping the relu mask; the second layer's input gradient
    through that mask (fused into the input gradient, which at stride 1 runs as a
    convolution); and a scaled residual on the second layer, whose output is a result too."""
    tdtype = tf.as_dtype(dtype)
    x = tf.placeholder(tdtype, x_shape, name="x")
    f = tf.placeholder(tdtype, f_shape, name="f")
    f2 = tf.placeholder(tdtype, (*f_shape[:2], f_shape[3], f_shape[3]), name="f2")
    b = tf.placeholder(tdtype, [f_shape[3]], name="b")
    y = tf.nn.relu(tf.nn.conv2d(x, f, quad(strides, "NHWC"), padding) + b)
    y2 = tf.nn.conv2d(y, f2, quad(strides, "NHWC"), padding)
    res = tf.placeholder(tdtype, y2.shape.as_list(), name="res")
    out = tf.nn.relu(res + 0.25 * y2)
    r = tf.placeholder(tdtype, y2.shape.as_list(), name="r")
    dx, df, db, df2 = tf.gradients(y2, [x, f, b, f2], grad_ys=[r])
    # filters scaled by 1/sqrt(fan-in), as initialisers do, so every output is about unit scale:
    # the absolute tolerance then measures float32 error relative to the data (with unit filters
    # the second layer's outputs reach ~40, and Winograd's rounding, ~2e-6 of that, passed atol)
    feeds = {x: RNG.standard_normal(x_shape), f: RNG.standard_normal(f_shape) / np.sqrt(np.prod(f_shape[:3])),
             b: RNG.standard_normal(f_shape[3]), f2: RNG.standard_normal(f2.shape.as_list()) / np.sqrt(np.prod(f2.shape.as_list()[:3])),
             r: RNG.standard_normal(y2.shape.as_list()), res: RNG.standard_normal(y2.shape.as_list())}
    got, want, exe = both([y, dx, df, db, df2, out, y2], feeds)
    assert_same(got, want, dtype)
    fused = [k for n, k in exe.kernels if isinstance(k, conv.FusedConv)]
    assert len(fused) >= 2
    assert any(k.direct for k in fused)  # y2 is a result too: its GEMM writes it, the epilogue reads it
    assert any(k.plan.transposed for k in fused) == (strides == (1, 1))  # strided: col2im, then the select


def test_fused_conv_split_across_threads(monkeypatch):
    """Chunks of blocks of pixels (im2col) and of 2x2 tiles (Winograd: 3 a block here) on threads."""
    monkeypatch.setattr(conv, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(conv, "MAX_BLOCK_ROWS", 7)
    monkeypatch.setattr(conv, "MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_BLOCK_BYTES", 16 * 5 * 4 * 3)
    test_fused_conv_epilogues_match_the_reference(*FUSED_CASES[0])
    test_fused_conv_epilogues_match_the_reference(*FUSED_CASES[1])


def test_few_input_channels_take_im2col_rather_than_winograd(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 8)
    for channels, winograd in [(3, False), (8, True)]:
        with tf.Graph().as_default():
            got, want, exe = conv_and_grads((1, 4, 5, channels), (3, 3, channels, 2), (1, 1), "SAME", (1, 1), "NHWC",
                                            np.float32)
        assert_same(got, want, np.float32)
        assert window_kernels(exe)["conv2d"].plan.winograd == winograd


def test_winograd_transforms_refuse_strided_arrays():
    """The transforms get raw addresses: a view that is not C-contiguous fails to compile
    rather than being read as if it were."""
    winograd_tiles.register(np.float32, "input")

    @numba.njit
    def transform(x, v):
        winograd_tiles.input_tiles(x, 1, 1, 2, 2, 0, 1, v)

    x = RNG.standard_normal((1, 4, 4, 2)).astype(np.float32)
    v = np.zeros((16, 1, 2), np.float32)
    transform(x, v)  # tile 0: rows and columns -1..2, the first of each padding
    d = np.pad(x[0], ((1, 0), (1, 0), (0, 0)))[:4, :4]
    b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
    np.testing.assert_allclose(v.reshape(4, 4, 2), np.einsum("ai,ijc,bj->abc", b_t, d, b_t), rtol=1e-6, atol=1e-6)
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        transform(x[:, :, :, ::-1], np.zeros((16, 1, 2), np.float32))


def test_winograd_output_transforms_match_their_matrices():
    """A^T M A (a tile's 4 outputs from its 16 products) and A dY A^T (the filter gradient's
    transform of a 2x2 block of dy, zeros past a 5x7 output's edge) against their matrices."""
    winograd_tiles.register(np.float32, "output", "output_gradient")

    @numba.njit
    def transforms(mm, ys, dy, t0, m, dm):
        winograd_tiles.output_tiles(mm, mm.shape[1], ys)
        winograd_tiles.output_gradient_tiles(dy, 3, 4, t0, m, dm)

    a_t = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
    dy = RNG.standard_normal((2, 5, 7, 3)).astype(np.float32)
    padded = np.pad(dy, ((0, 0), (0, 1), (0, 1), (0, 0)))
    for t0 in range(0, 24, 7):  # 2 images of 3 x 4 tiles, 7 a block
        m = min(7, 24 - t0)
        mm = RNG.standard_normal((16, 7, 3)).astype(np.float32)
        ys, dm = np.zeros((4, 7, 3), np.float32), np.zeros((16, 7, 3), np.float32)
        transforms(mm, ys, dy, t0, m, dm)
        want = np.einsum("ai,ijrc,bj->abrc", a_t, mm.reshape(4, 4, 7, 3), a_t)
        np.testing.assert_allclose(ys.reshape(2, 2, 7, 3), want, rtol=1e-6, atol=1e-6)
        for r in range(m):
            n, ty, tx = (t0 + r) // 12, (t0 + r) // 4 % 3, (t0 + r) % 4
            block = padded[n, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2]
            np.testing.assert_allclose(dm[:, r].reshape(4, 4, 3), np.einsum("ia,ijc,jb->abc", a_t, block, a_t),
                                       rtol=1e-6, atol=1e-6)


def test_scratch_arrays_share_one_recycled_buffer():
    """A call's scratch arrays are disjoint, cache-line aligned views of one pooled buffer, which
    a later call gets again once the first call's arrays are gone (and not while they are held)."""
    from tfjit.backends.numba_cpu.scratch import scratch

    a, b, c = scratch(np.float32, (2, 3, 5), (7,), (0, 4))
    assert (a.shape, b.shape, c.shape) == ((2, 3, 5), (7,), (0, 4)) and a.dtype == b.dtype == np.float32
    assert all(x.flags.c_contiguous for x in (a, b, c)) and a.ctypes.data % 64 == b.ctypes.data % 64 == 0
    a.fill(1)
    b.fill(2)
    assert (a == 1).all() and (b == 2).all()  # no overlap
    held = scratch(np.float32, (2, 3, 5))[0]
    assert not np.shares_memory(held, a)
    address = a.base.ctypes.data  # the pooled buffer's
    del a, b, c, held
    assert scratch(np.float32, (4,))[0].base.ctypes.data == address


def test_a_pointwise_convolution_reads_the_pieces_of_its_input_concat():
    net = tf.placeholder(tf.float32, [2, 5, 3, 6], name="net")
    w0, w1 = tf.placeholder(tf.float32, [1, 1, 6, 3], name="w0"), tf.placeholder(tf.float32, [3, 3, 6, 2], name="w1")
    wu = tf.placeholder(tf.float32, [1, 1, 5, 6], name="wu")
    b = tf.placeholder(tf.float32, [6], name="b")
    mixed = tf.concat([tf.nn.relu(tf.nn.conv2d(net, w0, 1, "SAME")), tf.nn.relu(tf.nn.conv2d(net, w1, 1, "SAME"))], 3)
    y = tf.nn.relu(net + 0.2 * (tf.nn.conv2d(mixed, wu, 1, "SAME") + b))
    wide = tf.nn.conv2d(tf.concat([net, net * 2.0], 3), tf.ones([3, 3, 12, 2]), 1, "SAME") + 1.0  # not pointwise
    kept = tf.concat([net, net], -1)  # also a result: stays a concat
    z = tf.nn.conv2d(kept, tf.ones([1, 1, 12, 2]), 1, "VALID") + 1.0
    feeds = {net: RNG.standard_normal((2, 5, 3, 6)), w0: RNG.standard_normal((1, 1, 6, 3)),
             w1: RNG.standard_normal((3, 3, 6, 2)), wu: RNG.standard_normal((1, 1, 5, 6)), b: RNG.standard_normal(6)}
    got, want, exe = both([y, wide, z, kept], feeds)
    assert_same(got, want, np.float32)
    assert [len(k._pieces) for _, k in exe.kernels if isinstance(k, conv.FusedConv)].count(2) == 1
    assert [n.op for n, _ in exe.kernels].count("concat") == 2


def _train_small_cnn(backend):
    previous = config.current.backend
    config.set_backend(backend)
    try:
        rng = np.random.default_rng(3)
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float32, [4, 8, 8, 2], name="x")
            labels = tf.placeholder(tf.float32, [4, 3], name="labels")
            k1 = tf.Variable(rng.standard_normal((3, 3, 2, 4)).astype(np.float32) * 0.3)
            k2 = tf.Variable(rng.standard_normal((3, 3, 4, 4)).astype(np.float32) * 0.3)
            b1 = tf.Variable(np.zeros(4, np.float32))
            w = tf.Variable(rng.standard_normal((16, 3)).astype(np.float32) * 0.3)
            h = tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1)
            h = tf.nn.max_pool(h, 2, 2, "VALID")
            h = tf.nn.relu(tf.nn.conv2d(h, k2, 2, "SAME"))
            h = tf.nn.avg_pool(h, 2, 1, "SAME")
            logits = tf.matmul(tf.reshape(h, [4, 16]), w)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits))
            train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
            feeds = {x: rng.standard_normal((4, 8, 8, 2)), labels: np.eye(3)[[0, 1, 2, 1]]}
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                return [sess.run([train, loss], feeds)[1] for _ in range(8)]
    finally:
        config.set_backend(previous)


def test_a_small_cnn_trains_to_the_reference_losses():
    want = _train_small_cnn("reference")
    got = _train_small_cnn("numba")
    assert want[-1] < want[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_kernel_dump_shows_the_conv_and_pooling_kernels():
    from tfjit.backends.numba_cpu.executable import kernel_sources

    x = tf.placeholder(tf.float32, [1, 4, 4, 2])
    y = tf.nn.max_pool(tf.nn.conv2d(x, tf.ones([3, 3, 2, 2]), [1, 1, 1, 1], "SAME"), [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    got, want, exe = both([y], {x: RNG.standard_normal((1, 4, 4, 2))})
    assert_same(got, want, np.float32)
    sources = kernel_sources(exe)
    assert "def conv_winograd(" in sources  # 3x3, stride 1: Winograd
    assert "def max_pool_2x2(" in sources  # 2x2 windows tiling the input
