"""An RNN cell's product, gate split and gate math as one kernel (backends/numba_cpu/
sink_splits.py, split_contraction.py), cell by cell: the reference backend's values for LSTM- and GRU-like
cells, with tiny and large products (each way `blas` runs them); hidden states written
straight into the concat stacking them; chains of another form left alone, same values."""
from __future__ import annotations

import linecache

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import blas, executable, split_contraction
from tfjit.backends.numba_cpu.executable import compile_graph as numba_compile
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.debug import program_for
from tfjit.runtime.state import RuntimeState

from test_numba_backend import assert_same, both

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _cell_by_cell(monkeypatch):
    """These tests are about the one-cell kernel: runs of cells are not made one layer kernel
    here (test_numba_recurrence.py covers those)."""
    monkeypatch.setattr(executable, "fuse_recurrences", lambda graph: graph)


def _merged(exe):
    return [k for _, k in exe.kernels if isinstance(k, split_contraction.SplitContractionKernel)]


def _lstm(batch, inputs, hidden, steps, dtype=tf.float32):
    """An unrolled LSTM layer (BasicLSTMCell's math) and its feeds: (hs, c, feeds)."""
    x = tf.placeholder(dtype, [steps, batch, inputs], name="x")
    wx = tf.placeholder(dtype, [inputs, 4 * hidden], name="wx")
    wh = tf.placeholder(dtype, [hidden, 4 * hidden], name="wh")
    b = tf.placeholder(dtype, [4 * hidden], name="b")
    h = c = tf.zeros([batch, hidden], dtype=dtype)
    hs = []
    for inp in tf.unstack(x, axis=0):
        i, j, f, o = tf.split(tf.matmul(inp, wx) + tf.matmul(h, wh) + b, 4, axis=1)
        c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
        hs.append(h)
    scale = 1.0 / np.sqrt(hidden)
    feeds = {x: RNG.standard_normal((steps, batch, inputs)), wx: RNG.standard_normal((inputs, 4 * hidden)) * scale,
             wh: RNG.standard_normal((hidden, 4 * hidden)) * scale, b: RNG.standard_normal(4 * hidden) * 0.1}
    return hs, c, feeds


@pytest.mark.parametrize("way", blas.WAYS)
@pytest.mark.parametrize("batch, hidden", [(5, 24), (64, 128)])
def test_lstm_cells_give_the_references_values(monkeypatch, way, batch, hidden):
    """(5, 24): a tiny product; (64, 128): 2*64*128*512 flops, a large one, on NumPy's threaded
    BLAS or in blocks on our threads (`way`), accumulating onto the pieces of the input
    product the merge pass hoisted."""
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    assert (2 * batch * hidden * 4 * hidden >= blas.SMALL_GEMM_FLOPS) == (batch == 64)
    hs, c, feeds = _lstm(batch, 16, hidden, 3)
    got, want, exe = both([tf.concat(hs, 0), c], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert len(_merged(exe)) == 3  # every step's product, split and gate math: one kernel
    assert not [n for n, _ in exe.kernels if n.op == "split" and n.inputs[0].type.shape == (batch, 4 * hidden)]
    step = "".join(linecache.getlines(exe._filename))
    assert "into=" in step  # the h's written into the concat
    assert step.count("donate=True") == 3  # BLAS accumulating onto the hoisted product's pieces, each way


def test_gru_like_cells_with_row_column_and_scalar_inputs_in_float64():
    """Three pieces, a transposed weight, a bias row and a scalar before the split, a per-row
    mask column and a full state after it."""
    batch, hidden = 6, 20
    x = tf.placeholder(tf.float64, [batch, 3 * hidden], name="x")
    h = tf.placeholder(tf.float64, [batch, hidden], name="h")
    w = tf.placeholder(tf.float64, [3 * hidden, hidden], name="w")  # used transposed
    b = tf.placeholder(tf.float64, [1, 3 * hidden], name="b")
    mask = tf.placeholder(tf.float64, [batch, 1], name="mask")
    gates = (tf.matmul(h, w, transpose_b=True) + b) * 0.5 + x
    r, z, n = tf.split(gates, 3, axis=1)
    new = (1.0 - tf.sigmoid(z)) * tf.tanh(n * tf.sigmoid(r)) + tf.sigmoid(z) * h
    out = mask * new + (1.0 - mask) * h
    feeds = {x: RNG.standard_normal((batch, 3 * hidden)), h: RNG.standard_normal((batch, hidden)),
             w: RNG.standard_normal((3 * hidden, hidden)), b: RNG.standard_normal((1, 3 * hidden)),
             mask: (RNG.random((batch, 1)) > 0.3).astype(np.float64)}
    got, want, exe = both([out], feeds)
    assert_same(got, want, rtol=1e-12, atol=1e-12)
    assert len(_merged(exe)) == 1


def test_nan_and_inf_pass_through_the_gate_math_as_in_the_reference():
    hs, c, feeds = _lstm(4, 8, 16, 2)
    x = next(k for k in feeds if k.name.startswith("x"))
    feeds[x][0, 1, 2] = np.nan
    feeds[x][1, 2, 3] = np.inf
    got, want, exe = both([hs[-1], c], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(got[0]).any() and len(_merged(exe)) == 2


@pytest.mark.parametrize("way", blas.WAYS)
def test_a_zero_first_state_times_weights_with_inf_is_nan_as_in_the_reference(monkeypatch, way):
    """The first cell's state is zeros: with finite weights its product is skipped (blas.Product),
    with an inf in them it is not (0 * inf is NaN). Large products, each way."""
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    hs, c, feeds = _lstm(64, 16, 128, 2)
    wh = next(k for k in feeds if k.name.startswith("wh"))
    feeds[wh][5, 7] = np.inf
    got, want, exe = both([hs[-1], c], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(got[0]).all() and len(_merged(exe)) == 2


def test_chains_of_another_form_are_left_alone_with_the_same_values():
    """A piece also fetched, a split along rows, and pieces at a broadcast shape: not merged."""
    batch, hidden = 4, 8
    a = tf.placeholder(tf.float32, [batch, hidden], name="a")
    w = tf.placeholder(tf.float32, [hidden, 2 * hidden], name="w")
    v = tf.placeholder(tf.float32, [2 * batch, hidden], name="v")
    p, q = tf.split(tf.matmul(a, w) + 1.0, 2, axis=1)
    fetched = [tf.tanh(p) * q, p]
    top, bottom = tf.split(tf.matmul(v, w) * 2.0, 2, axis=0)
    rows = tf.sigmoid(top) - bottom
    s, t = tf.split(tf.matmul(a, w) - 1.0, 2, axis=1)
    wide = tf.expand_dims(s, 0) * tf.expand_dims(t, 1)
    feeds = {a: RNG.standard_normal((batch, hidden)), w: RNG.standard_normal((hidden, 2 * hidden)),
             v: RNG.standard_normal((2 * batch, hidden))}
    got, want, exe = both([*fetched, rows, wide], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert not _merged(exe)



@pytest.mark.parametrize("way", blas.WAYS)
@pytest.mark.parametrize("transpose_b", [False, True])
def test_an_addend_of_the_products_shape_is_accumulated_by_blas_in_float64(monkeypatch, way, transpose_b):
    """`h @ W + xw` (xw: a hoisted input product's rows): BLAS adds the product onto a copy of
    xw (beta = 1), on NumPy's threaded BLAS or in blocks (W untransposed), or through the
    general path (W used transposed); the loop no longer reads xw. The reference's values."""
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    batch, hidden, steps = 64, 128, 2
    assert 2 * batch * hidden * 4 * hidden >= blas.SMALL_GEMM_FLOPS
    xs = tf.placeholder(tf.float64, [steps, batch, 4 * hidden], name="xs")
    w = tf.placeholder(tf.float64, [4 * hidden, hidden] if transpose_b else [hidden, 4 * hidden], name="w")
    h0 = tf.placeholder(tf.float64, [batch, hidden], name="h0")
    h, c = h0, tf.zeros([batch, hidden], dtype=tf.float64)
    for xw in tf.unstack(xs, axis=0):
        i, j, f, o = tf.split(tf.matmul(h, w, transpose_b=transpose_b) + xw, 4, axis=1)
        c = c * tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
    feeds = {xs: RNG.standard_normal((steps, batch, 4 * hidden)), h0: RNG.standard_normal((batch, hidden)),
             w: RNG.standard_normal((4 * hidden, hidden) if transpose_b else (hidden, 4 * hidden)) / np.sqrt(hidden)}
    got, want, exe = both([h, c], feeds)
    assert_same(got, want, rtol=1e-12, atol=1e-12)
    merged = _merged(exe)
    assert len(merged) == steps and all(k._addend is not None for k in merged)
    assert all(k._addend not in [i for i, _ in k._inputs] for k in merged)  # the loop reads the sum only


def test_an_addend_read_again_stays_an_input_and_a_product_read_twice_is_not_accumulated():
    """`(h @ W + x) * x`: x is accumulated onto and read by the loop too; in
    `(h @ W + x) * (h @ W)` the product is read twice, so BLAS computes it alone. Tiny
    products (NumPy's dot, then the add). The reference's values."""
    batch, hidden = 4, 8
    x = tf.placeholder(tf.float32, [batch, 2 * hidden], name="x")
    h = tf.placeholder(tf.float32, [batch, hidden], name="h")
    w, v = (tf.placeholder(tf.float32, [hidden, 2 * hidden], name=name) for name in "wv")
    r, z = tf.split((tf.matmul(h, w) + x) * x, 2, axis=1)
    product = tf.matmul(h, v)
    s, t = tf.split((product + x) * product, 2, axis=1)
    feeds = {x: RNG.standard_normal((batch, 2 * hidden)), h: RNG.standard_normal((batch, hidden)),
             w: RNG.standard_normal((hidden, 2 * hidden)), v: RNG.standard_normal((hidden, 2 * hidden))}
    got, want, exe = both([tf.tanh(r) * z, tf.tanh(s) - t], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    merged = _merged(exe)
    assert len(merged) == 2 and sorted(k._addend is None for k in merged) == [False, True]
    folded = next(k for k in merged if k._addend is not None)
    assert folded._addend in [i for i, _ in folded._inputs]


# -- donated addends: BLAS accumulating onto a dead piece of the hoisted product -------------
def _run_twice(fetches, feeds):
    """The numba backend's results (two runs of one plan: the arena is reused) against the
    reference's, the fed arrays checked unchanged; the plan and the cells it donates."""
    program = config.pass_manager().run(program_for(fetches, feeds))
    args = [np.asarray(feeds[k], k.dtype.np_dtype) for k in sorted(feeds, key=lambda t: t.op.node.uid)]
    kept = [a.copy() for a in args]
    exe = numba_compile(program)
    runs = [exe.run(args, RuntimeState()) for _ in range(2)]
    for a, b in zip(args, kept):
        np.testing.assert_array_equal(a, b)  # no feed written
    want = reference_compile(program).run(kept, RuntimeState())
    for got in runs:
        assert_same(got, want, rtol=1e-5, atol=1e-5)
    donated = executable._donated(exe.graph, [k for _, k in exe.kernels], exe.memory)
    assert "".join(linecache.getlines(exe._filename)).count("donate=True") == len(donated)
    return exe, sorted(node.name for node in donated)


def _hoisted(steps, batch, inputs, hidden, cells=None):
    """An LSTM layer with its input product hoisted by hand (`xw`, cut into steps): the cells'
    h and c, `xw`, its pieces and the feeds. `cells`: which piece each cell adds."""
    x = tf.placeholder(tf.float32, [steps * batch, inputs], name="x")
    wx = tf.placeholder(tf.float32, [inputs, 4 * hidden], name="wx")
    wh = tf.placeholder(tf.float32, [hidden, 4 * hidden], name="wh")
    b = tf.placeholder(tf.float32, [4 * hidden], name="b")
    xw = tf.matmul(x, wx)
    pieces = tf.split(xw, steps, axis=0)
    h = c = tf.zeros([batch, hidden])
    for t in cells or range(steps):
        i, j, f, o = tf.split(pieces[t] + tf.matmul(h, wh, name=f"cell{t}") + b, 4, axis=1)
        c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
    feeds = {x: RNG.standard_normal((steps * batch, inputs)), wx: RNG.standard_normal((inputs, 4 * hidden)) * 0.3,
             wh: RNG.standard_normal((hidden, 4 * hidden)) * 0.3, b: RNG.standard_normal(4 * hidden) * 0.1}
    return h, c, xw, pieces, feeds


def test_cells_accumulate_onto_the_hoisted_products_dead_pieces_in_place():
    """The input product hoisted (by the merge pass from TF1's unstack idiom, or by hand):
    each piece is read by its cell only, so BLAS accumulates onto it, no copy."""
    hs, c, feeds = _lstm(4, 6, 8, 3)
    exe, donated = _run_twice([hs[-1], c], feeds)
    assert len(donated) == len(_merged(exe)) == 3
    h, c, _, _, feeds = _hoisted(3, 4, 6, 8)
    exe, donated = _run_twice([h, c], feeds)
    assert len(donated) == len(_merged(exe)) == 3


@pytest.mark.parametrize("case", ["piece read again", "piece fetched", "product fetched", "product read again",
                                  "piece read by two cells"])
def test_an_addend_anything_else_may_read_is_not_donated_and_the_values_are_right(case):
    cells = [0, 1, 1, 2] if case == "piece read by two cells" else None
    h, c, xw, pieces, feeds = _hoisted(3, 4, 6, 8, cells)
    hh = tf.tile(h, [1, 4])  # read after the last cell
    fetches = {"piece read again": [h, c, pieces[1] * hh], "piece fetched": [h, c, pieces[1]],
               "product fetched": [h, c, xw], "product read again": [h, c, tf.matmul(xw, hh, transpose_b=True)],
               "piece read by two cells": [h, c]}[case]
    exe, donated = _run_twice(fetches, feeds)
    names = sorted(node.name for node, k in exe.kernels if k in _merged(exe))  # fused/cell{piece}[_k]
    assert len(names) == len(cells or range(3))
    if case.startswith("piece read"):  # the cell(s) adding piece 1 copy it; the others accumulate onto theirs
        assert donated == [n for n in names if "cell1" not in n] and len(donated) == 2
    else:  # the product (or a view of it) is the user's: no piece is given up
        assert donated == []


def test_fed_pieces_are_never_donated_and_the_feed_is_unchanged():
    """`h @ W + xs[t]`, xs fed: the addends are views of the user's array."""
    xs = tf.placeholder(tf.float32, [2, 4, 32], name="xs")
    w = tf.placeholder(tf.float32, [8, 32], name="w")
    h = tf.zeros([4, 8])
    c = h
    for xw in tf.unstack(xs, axis=0):
        i, j, f, o = tf.split(tf.matmul(h, w) + xw, 4, axis=1)
        c = c * tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
    exe, donated = _run_twice([h, c], {xs: RNG.standard_normal((2, 4, 32)), w: RNG.standard_normal((8, 32))})
    assert len(_merged(exe)) == 2 and donated == []


def test_a_variable_addend_is_never_donated(backend):
    """The hoisted product kept in a variable: its pieces are the store's array, unchanged by
    the runs, and the results are the reference backend's."""
    results = {}
    for name in ("reference", "numba"):
        backend(name)
        tf.reset_default_graph()
        xw = tf.Variable(np.random.default_rng(3).standard_normal((8, 32)).astype(np.float32), name="xw")
        w = tf.Variable(np.random.default_rng(4).standard_normal((8, 32)).astype(np.float32), name="w")
        h = c = tf.zeros([4, 8])
        for piece in tf.split(xw, 2, axis=0):
            i, j, f, o = tf.split(tf.matmul(h, w) + piece, 4, axis=1)
            c = c * tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            before = sess.run(xw)
            results[name] = [sess.run([h, c]) for _ in range(2)]
            np.testing.assert_array_equal(sess.run(xw), before)
            if name == "numba":
                plans = [exe for exe, _ in sess._cache.values() if hasattr(exe, "kernels")]
                assert any(_merged(exe) for exe in plans)
                assert not any(executable._donated(exe.graph, [k for _, k in exe.kernels], exe.memory) for exe in plans)
    for got in results["numba"]:
        assert_same(got, results["reference"][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fetch_addend", [False, True])
def test_an_addend_computed_by_a_loop_kernel_is_donated_unless_fetched(fetch_addend):
    """`h @ W + tanh(x) * 0.5`: the addend is a planned value of its own (no split); fetched,
    it is the user's and the cell copies it."""
    x = tf.placeholder(tf.float32, [4, 32], name="x")
    w = tf.placeholder(tf.float32, [8, 32], name="w")
    h0 = tf.placeholder(tf.float32, [4, 8], name="h0")
    xw = tf.tanh(x) * 0.5
    i, j, f, o = tf.split(tf.matmul(h0, w) + xw, 4, axis=1)
    c = tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
    h = tf.tanh(c) * tf.sigmoid(o)
    feeds = {x: RNG.standard_normal((4, 32)), w: RNG.standard_normal((8, 32)), h0: RNG.standard_normal((4, 8))}
    exe, donated = _run_twice([h, c, xw] if fetch_addend else [h, c], feeds)
    assert len(_merged(exe)) == 1 and len(donated) == (0 if fetch_addend else 1)
