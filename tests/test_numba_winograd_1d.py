"""1xK and Kx1 stride-1 convolutions run by 1-D Winograd F(2, K) (winograd_1d.py) give the
reference backend's results: both orientations, K = 3, 5, 7, SAME/VALID/explicit padding
along the window (odd and even lengths: a last tile with one output; beyond the window), an
empty batch, NCHW, float32/float64, their input gradients (run as convolutions of dy), fused
epilogues, chunks on threads, the Inception block and its 128 channels; other windows
keep the im2col GEMM."""
from __future__ import annotations

import numba
import numpy as np
import pytest

import tfjit as tf
from tfjit.backends.numba_cpu import conv, winograd_1d

from test_numba_backend import both
import test_numba_conv
from test_numba_conv import assert_same, conv_and_grads, own_random_stream, window_kernels  # noqa: F401 (an autouse fixture)

RNG = np.random.default_rng(5)  # replaced per test by own_random_stream


@pytest.fixture(autouse=True)
def winograd_for_few_channels(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)


CASES = [  # (input NHWC, filter HWIO, padding, dtype)
    ((2, 3, 9, 3), (1, 7, 3, 2), "SAME", np.float32),
    ((2, 10, 3, 3), (7, 1, 3, 3), "VALID", np.float64),
    ((1, 2, 6, 2), (1, 3, 2, 2), ((0, 0), (2, 1)), np.float32),
    ((1, 7, 3, 2), (5, 1, 2, 2), "SAME", np.float64),
    ((0, 3, 9, 2), (1, 7, 2, 2), "SAME", np.float32),  # empty batch
    ((1, 2, 5, 2), (1, 7, 2, 3), "SAME", np.float32),  # fewer input than output channels
    ((1, 2, 5, 2), (1, 7, 2, 2), ((0, 0), (8, 1)), np.float32),  # padding beyond the window
]


@pytest.mark.parametrize("gradient_min_channels", [1, 32])
@pytest.mark.parametrize("x_shape,f_shape,padding,dtype", CASES)
def test_conv_and_input_gradient_by_winograd_match_the_reference(x_shape, f_shape, padding, dtype,
                                                                 gradient_min_channels, monkeypatch):
    monkeypatch.setattr(conv, "LINE_GRADIENT_MIN_CHANNELS", gradient_min_channels)
    got, want, exe = conv_and_grads(x_shape, f_shape, (1, 1), padding, (1, 1), "NHWC", dtype)
    assert_same(got, want, dtype)
    kernels = window_kernels(exe)
    assert kernels["conv2d"].plan.line.k == max(f_shape[:2])
    # the input gradient is a convolution of dy, by Winograd too, where dx has dy's channels or
    # more, or at least LINE_GRADIENT_MIN_CHANNELS; else col2im
    winograd = f_shape[2] >= f_shape[3] or f_shape[2] >= gradient_min_channels
    gradient = kernels["conv2d_backprop_input"]
    assert isinstance(gradient, conv.Conv2D) == winograd and (not winograd or gradient.plan.line is not None)


def test_nchw_by_winograd():
    got, want, exe = conv_and_grads((2, 3, 9, 2), (7, 1, 2, 2), (1, 1), "SAME", (1, 1), "NCHW", np.float64)
    assert_same(got, want, np.float64)
    assert window_kernels(exe)["conv2d"].plan.line.k == 7


@pytest.mark.parametrize("x_shape,f_shape,padding,dilations", [
    ((1, 3, 9, 2), (1, 7, 2, 2), ((1, 0), (3, 3)), (1, 1)),  # padded across the window
    ((1, 3, 9, 2), (1, 3, 2, 2), "SAME", (1, 2)),           # dilated
    ((1, 3, 9, 2), (1, 4, 2, 2), "SAME", (1, 1)),           # even window
])
def test_other_windows_keep_the_columns(x_shape, f_shape, padding, dilations):
    got, want, exe = conv_and_grads(x_shape, f_shape, (1, 1), padding, dilations, "NHWC", np.float32)
    assert_same(got, want, np.float32)
    assert window_kernels(exe)["conv2d"].plan.line is None


@pytest.mark.parametrize("case", [((2, 3, 9, 3), (1, 7, 3, 4), (1, 1), "SAME", np.float32),
                                  ((1, 15, 2, 2), (7, 1, 2, 2), (1, 1), "VALID", np.float64)])
def test_fused_epilogues_by_winograd(case):
    """conv + bias + relu, the next layer's input gradient through the relu mask, a residual
    (conv.py's epilogue test on 1xK and Kx1 windows)."""
    test_numba_conv.test_fused_conv_epilogues_match_the_reference(*case)


def test_winograd_1d_split_across_threads(monkeypatch):
    """Chunks of tiles on threads, each in blocks of 3 tiles (a last block shorter)."""
    monkeypatch.setattr(conv, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(conv, "MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(winograd_1d, "BLOCK_BYTES", 8 * 4 * 4 * 3)
    got, want, exe = conv_and_grads((3, 5, 7, 4), (1, 7, 4, 4), (1, 1), "SAME", (1, 1), "NHWC", np.float32)
    assert_same(got, want, np.float32)
    plan = window_kernels(exe)["conv2d"].plan
    assert plan.line.rows == 3 and plan.threads == min(numba.get_num_threads(), 3) and plan.chunks > plan.threads


def test_winograd_1d_at_the_inception_blocks_channels():
    """128 channels, bias and relu: float32 within the suite's tolerance of the reference."""
    x = tf.placeholder(tf.float32, [1, 3, 17, 128], name="x")
    f = tf.placeholder(tf.float32, [1, 7, 128, 128], name="f")
    b = tf.placeholder(tf.float32, [128], name="b")
    y = tf.nn.relu(tf.nn.conv2d(x, f, 1, "SAME") + b)
    feeds = {x: RNG.standard_normal((1, 3, 17, 128)), f: RNG.standard_normal((1, 7, 128, 128)) / np.sqrt(7 * 128),
             b: RNG.standard_normal(128)}
    got, want, exe = both([y], feeds)
    assert_same(got, want, np.float32)
    assert [k.plan.line.k for _, k in exe.kernels if isinstance(k, conv.FusedConv)] == [7]


@pytest.mark.parametrize("k", winograd_1d.SIZES)
def test_the_transforms_convolve_exactly(k):
    """A^T [(G w) * (B^T d)] is the correlation of d with w, in exact arithmetic."""
    a_t, g, b_t = winograd_1d.matrices(k)
    d = [int(v) for v in RNG.integers(-9, 9, k + 1)]
    w = [int(v) for v in RNG.integers(-9, 9, k)]
    products = [sum(g[j][l] * w[l] for l in range(k)) * sum(b_t[j][l] * d[l] for l in range(k + 1))
                for j in range(k + 1)]
    y = [sum(a_t[i][j] * products[j] for j in range(k + 1)) for i in range(2)]
    assert y == [sum(d[i + l] * w[l] for l in range(k)) for i in range(2)]


def test_the_inception_block_by_winograd():
    """The bench's Inception-ResNet block (bench/tf_models.py), small: its 1x7 and 7x1 run by
    F(2, 7) between 1x1 convolutions, with bias, relu and the residual; the reference's numbers."""
    shapes = {"net": [2, 6, 6, 8], "W0": [1, 1, 8, 3], "W1a": [1, 1, 8, 3], "W1b": [1, 7, 3, 3],
              "W1c": [7, 1, 3, 3], "Wup": [1, 1, 6, 8]}
    shapes.update({"b" + name[1:]: [shape[3]] for name, shape in shapes.items() if name != "net"})
    t = {name: tf.placeholder(tf.float32, shape, name=name) for name, shape in shapes.items()}

    def conv2d(x, w, b):
        return tf.nn.conv2d(x, t[w], [1, 1, 1, 1], "SAME") + t[b]

    tower0 = tf.nn.relu(conv2d(t["net"], "W0", "b0"))
    tower1 = tf.nn.relu(conv2d(tf.nn.relu(conv2d(tf.nn.relu(conv2d(t["net"], "W1a", "b1a")), "W1b", "b1b")),
                               "W1c", "b1c"))
    y = tf.nn.relu(t["net"] + 0.17 * conv2d(tf.concat([tower0, tower1], 3), "Wup", "bup"))
    feeds = {t[name]: RNG.standard_normal(shape) * (1.0 if name == "net" else 0.5) for name, shape in shapes.items()}
    got, want, exe = both([y], feeds)
    assert_same(got, want, np.float32)
    fused = [k for _, k in exe.kernels if isinstance(k, conv.FusedConv)]
    assert sorted(k.plan.line.k for k in fused if k.plan.line) == [7, 7]