"""An unrolled RNN layer's cells as one parallel kernel (backends/numba_cpu/recurrence.py) and
its product tile (microgemm.py): the reference backend's values for LSTM- and GRU-like
layers in float32 and float64, batches that are no multiple of the tile's rows, one thread
or two, NaN and inf; fed arrays left as they were; layers the kernel does not cover run cell
by cell with the same values."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from numba import njit

import tfjit as tf
from tfjit.backends.numba_cpu import microgemm, recurrence, split_contraction

from test_numba_backend import assert_same, both
from test_numba_split_contraction import _lstm

RNG = np.random.default_rng(23)


def _layers(exe):
    return [k for _, k in exe.kernels if isinstance(k, recurrence.RecurrenceKernel)]


def _cells(exe):
    return [k for _, k in exe.kernels if isinstance(k, split_contraction.SplitContractionKernel)]


@njit
def _product(a, packed, src, dst):
    m = a.shape[0]
    for p in range(packed.shape[0]):
        for r in range(0, m, microgemm.MR):
            microgemm.tile(a, packed, src, dst, r, min(microgemm.MR, m - r), p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(64, 256, 1024), (5, 7, 64), (13, 1, 32), (1, 3, 48), (9, 40, 20)])
def test_the_tile_computes_src_plus_a_times_w(dtype, m, k, n):
    """Rows past a multiple of MR, one-element sums, and columns past a multiple of the panel
    width (packed as zeros; the result is written in whole panels, so it gets a wider array)."""
    nr = microgemm.panel_width(dtype)
    a, w = RNG.standard_normal((m, k)).astype(dtype), RNG.standard_normal((k, n)).astype(dtype)
    wide = -(-n // nr) * nr
    src = RNG.standard_normal((m, wide)).astype(dtype)
    packed = np.full(microgemm.packed_shape(k, n, dtype), np.nan, dtype)
    for panel in range(packed.shape[0]):
        microgemm.pack_panel(w, packed, panel)
    dst = np.full((m, wide), np.nan, dtype)
    _product(a, packed, src, dst)
    want = np.concatenate([a @ w, np.zeros((m, wide - n), dtype)], axis=1) + src
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dst, want, rtol=tol, atol=tol * np.sqrt(k))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch, hidden, dtype", [(64, 64, tf.float32), (5, 32, tf.float32), (11, 48, tf.float64)])
def test_lstm_layers_give_the_references_values(threads, batch, hidden, dtype):
    """Every hidden state fetched: the cells after the first are one kernel (the first's zero
    state, h and c at once, makes its body differ); one thread runs every block itself. The
    fed arrays stay as they were."""
    steps = 6
    hs, c, feeds = _lstm(batch, 16, hidden, steps, dtype)
    feeds = {k: np.asarray(v, k.dtype.np_dtype) for k, v in feeds.items()}  # so the kernels get these arrays
    before = {k: np.array(v) for k, v in feeds.items()}
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got, want, exe = both([tf.concat(hs, 0), c], feeds)
    finally:
        numba.set_num_threads(previous)
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    assert_same(got, want, rtol=tol, atol=tol)
    assert [k.steps for k in _layers(exe)] == [steps - 1]
    for k, v in feeds.items():
        np.testing.assert_array_equal(v, before[k])


def test_a_two_layer_lstm_fetching_only_the_top_state():
    """The benchmark's form: the lower layer's states stacked for the upper layer's hoisted
    product, only the upper layer's last state fetched (so each layer's last cell leaves out
    the cell state and differs in form)."""
    batch, hidden, steps = 8, 32, 5
    x = tf.placeholder(tf.float32, [steps, batch, 16], name="x")
    weights = {}
    for layer, fan_in in enumerate([16, hidden]):
        weights[layer] = (tf.placeholder(tf.float32, [fan_in, 4 * hidden], name=f"wx{layer}"),
                          tf.placeholder(tf.float32, [hidden, 4 * hidden], name=f"wh{layer}"),
                          tf.placeholder(tf.float32, [4 * hidden], name=f"b{layer}"))
    zeros = tf.zeros([batch, hidden])
    h, c = [zeros, zeros], [zeros, zeros]
    for inp in tf.unstack(x, axis=0):
        for layer in range(2):
            wx, wh, b = weights[layer]
            i, j, f, o = tf.split(tf.matmul(inp, wx) + tf.matmul(h[layer], wh) + b, 4, axis=1)
            c[layer] = c[layer] * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
            h[layer] = inp = tf.tanh(c[layer]) * tf.sigmoid(o)
    feeds = {x: RNG.standard_normal((steps, batch, 16))}
    for wx, wh, b in weights.values():
        feeds[wx] = RNG.standard_normal(wx.shape.as_list()) * 0.2
        feeds[wh] = RNG.standard_normal(wh.shape.as_list()) * 0.2
        feeds[b] = RNG.standard_normal(b.shape.as_list()) * 0.1
    got, want, exe = both([h[1]], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    # per layer: the middle cells; the first (zero state) and the last (no state out) apart
    assert [k.steps for k in _layers(exe)] == [steps - 2, steps - 2] and len(_cells(exe)) == 4


def test_gru_like_layers_with_a_transposed_weight_row_column_and_scalar_inputs_in_float64():
    """Three pieces, W used transposed, a bias row and a scalar before the split, a per-row
    mask column after it, each step's own input rows; no hoisted addend for BLAS to fold."""
    batch, hidden, steps = 6, 32, 4
    xs = tf.placeholder(tf.float64, [steps, batch, 3 * hidden], name="xs")
    w = tf.placeholder(tf.float64, [3 * hidden, hidden], name="w")
    b = tf.placeholder(tf.float64, [1, 3 * hidden], name="b")
    mask = tf.placeholder(tf.float64, [batch, 1], name="mask")
    h = h0 = tf.placeholder(tf.float64, [batch, hidden], name="h0")
    outs = []
    for x in tf.unstack(xs, axis=0):
        gates = (tf.matmul(h, w, transpose_b=True) + b) * 0.5 + x
        r, z, n = tf.split(gates, 3, axis=1)
        new = (1.0 - tf.sigmoid(z)) * tf.tanh(n * tf.sigmoid(r)) + tf.sigmoid(z) * h
        h = mask * new + (1.0 - mask) * h
        outs.append(h)
    feeds = {xs: RNG.standard_normal((steps, batch, 3 * hidden)), w: RNG.standard_normal((3 * hidden, hidden)) * 0.3,
             b: RNG.standard_normal((1, 3 * hidden)), mask: (RNG.random((batch, 1)) > 0.3).astype(np.float64),
             h0: RNG.standard_normal((batch, hidden))}
    got, want, exe = both([tf.stack(outs)], feeds)
    assert_same(got, want, rtol=1e-12, atol=1e-12)
    layers = _layers(exe)
    assert [k.steps for k in layers] == [steps - 2]  # the middle cells; the first and last differ in form


def test_nan_and_inf_pass_through_as_in_the_reference():
    hs, c, feeds = _lstm(8, 8, 32, 4)
    x = next(k for k in feeds if k.name.startswith("x"))
    feeds[x][1, 2, 3] = np.nan
    feeds[x][2, 5, 1] = np.inf
    got, want, exe = both([tf.concat(hs, 0), c], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(got[0]).any() and _layers(exe)


def test_layers_the_kernel_does_not_cover_run_cell_by_cell_with_the_same_values():
    """A hidden width that is no multiple of the panel width (20): the cells stay apart."""
    hs, c, feeds = _lstm(4, 8, 20, 4)
    got, want, exe = both([tf.concat(hs, 0), c], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert not _layers(exe) and len(_cells(exe)) == 4
