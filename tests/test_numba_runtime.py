"""Variables updated in place and contraction kernels on the numba CPU backend: the same
values as the reference backend, fetched arrays the user owns, intact variables after a
failed run, two threads on one session; matmul + epilogue kernels for every transpose,
batches, dtypes, row blocks and the fallback."""
from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np
import pytest

import tfjit as tf
from tfjit.backends.numba_cpu import contraction
from tfjit.runtime.state import RuntimeState

from test_numba_backend import both

RNG = np.random.default_rng(11)


def _address(sess, var):
    return sess.state.variables[var._attrs["var"]].__array_interface__["data"][0]


def _mlp_losses(optimizer, steps=6):
    tf.reset_default_graph()
    tf.set_random_seed(3)
    x = tf.placeholder(tf.float32, [16, 6])
    labels = tf.placeholder(tf.int64, [16])
    h = tf.nn.relu(tf.matmul(x, tf.get_variable("w1", [6, 8])) + tf.get_variable("b1", [8]))
    logits = tf.matmul(h, tf.get_variable("w2", [8, 3]), transpose_b=False) + tf.get_variable("b2", [3])
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = optimizer().minimize(loss)
    feed = {x: np.random.default_rng(1).standard_normal((16, 6)), labels: np.arange(16) % 3}
    w1 = tf.trainable_variables()[0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        losses = [sess.run([loss, step], feed)[0] for _ in range(2)]
        address = _address(sess, w1)
        losses += [sess.run([loss, step], feed)[0] for _ in range(steps)]
        in_place = _address(sess, w1) == address
        final = sess.run(tf.global_variables())
    return losses, final, in_place


@pytest.mark.parametrize("optimizer", [lambda: tf.train.GradientDescentOptimizer(0.3),
                                       lambda: tf.train.MomentumOptimizer(0.1, 0.9),
                                       lambda: tf.train.AdamOptimizer(0.05)], ids=["sgd", "momentum", "adam"])
def test_in_place_updates_train_as_the_reference_backend_does(backend, optimizer):
    backend("reference")
    want_losses, want_vars, _ = _mlp_losses(optimizer)
    backend("numba")
    got_losses, got_vars, in_place = _mlp_losses(optimizer)
    np.testing.assert_allclose(got_losses, want_losses, rtol=2e-5)
    for g, w in zip(got_vars, want_vars):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    assert in_place  # the weight's storage was reused by every update after the first runs


@pytest.mark.parametrize("name", ["reference", "numba"])
def test_a_fetch_with_the_update_in_one_run_sees_the_values_the_reference_sees(backend, name):
    backend(name)
    v = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    update = v.assign_add(tf.ones([2, 3]))
    with tf.control_dependencies([update]):
        after = v.read_value()
    flat = tf.reshape(v, [6])  # a view of the variable's storage
    with tf.Session() as sess:
        sess.run(v.initializer)
        before, flat_before, updated, read_after = sess.run([v, flat, update, after])
        again = sess.run(v)
        sess.run(update)
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(before, base)           # the snapshot taken before the write
    np.testing.assert_array_equal(flat_before, base.reshape(6))
    np.testing.assert_array_equal(updated, base + 1)
    np.testing.assert_array_equal(read_after, base + 1)
    np.testing.assert_array_equal(again, base + 1)        # a later run did not change fetched arrays
    for fetched in (before, flat_before, updated, read_after, again):
        assert fetched.flags.writeable


def test_fetched_arrays_are_not_changed_by_later_in_place_updates(backend):
    backend("numba")
    v = tf.Variable(np.zeros((64, 32), np.float32))
    x = tf.placeholder(tf.float32, [64, 32])
    step = v.assign_sub(x * 0.5)
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(step, {x: np.ones((64, 32))})
        address = _address(sess, v)
        kept, returned = sess.run(v), sess.run(step, {x: np.ones((64, 32))})
        for _ in range(3):
            sess.run(step, {x: np.ones((64, 32))})
        assert _address(sess, v) == address  # updated in place...
        np.testing.assert_array_equal(kept, np.full((64, 32), -0.5))  # ...yet fetched values kept
        np.testing.assert_array_equal(returned, np.full((64, 32), -1.0))
        np.testing.assert_array_equal(sess.run(v), np.full((64, 32), -2.5))


@pytest.mark.parametrize("name", ["reference", "numba"])
def test_a_failed_run_leaves_in_place_variables_intact(backend, name):
    backend(name)
    v = tf.Variable(np.ones(4, np.float32))
    w = tf.Variable(np.ones(4, np.float32))
    table = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))
    index = tf.placeholder(tf.int32, [])
    step = tf.group(v.assign_sub(tf.gather(table, index)), w.assign_add(tf.ones([4])))
    with tf.Session() as sess:
        sess.run([v.initializer, w.initializer])
        sess.run(step, {index: 1})
        with pytest.raises(tf.errors.InvalidArgumentError):
            sess.run(v.assign_sub(tf.gather(table, index)), {index: 7})
        np.testing.assert_array_equal(sess.run(v), 1 - np.arange(4, 8))
        np.testing.assert_array_equal(sess.run(w), [2, 2, 2, 2])


def test_a_mismatched_update_raises_before_writing():
    state = RuntimeState()
    state.write("v", np.ones(3, np.float32))
    with pytest.raises(ValueError):
        state.update("v", np.ones(4, np.float32), np.add)
    np.testing.assert_array_equal(state.read("v"), [1, 1, 1])


def test_two_threads_training_one_session_apply_every_update(backend):
    backend("numba")
    xv = np.arange(12, dtype=np.float64).reshape(4, 3) % 5
    x = tf.constant(xv)
    w = tf.Variable(np.zeros((3, 2)))
    loss = tf.reduce_sum(tf.matmul(x, w))  # constant gradient x^T 1: the order of steps does not matter
    step = tf.train.GradientDescentOptimizer(0.25).minimize(loss)
    delta = 0.25 * xv.T @ np.ones((4, 2))
    runs, errors = 40, []
    with tf.Session() as sess:
        sess.run(w.initializer)
        sess.run(step)

        def train():
            try:
                for _ in range(runs):
                    snapshot, _ = sess.run([w, step])
                    k = -snapshot[0, 0] / delta[0, 0]  # each fetch is one whole state, never torn
                    np.testing.assert_array_equal(snapshot, -k * delta)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=train) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        np.testing.assert_array_equal(sess.run(w), -(2 * runs + 1) * delta)


# -- contraction kernels ----------------------------------------------------------------------------
def _both(fetches, feed_dict):
    got, want, exe = both(fetches, feed_dict)
    return got, want, [k for _, k in exe.kernels if isinstance(k, contraction.ContractionKernel)]


def _assert_same(got, want, dtype):
    tol = 2e-6 if dtype == tf.float32 else 1e-13
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_epilogue_kernels_match_the_reference(dtype, transpose_a, transpose_b):
    m, k, n = 5, 7, 3
    x = tf.placeholder(dtype, [k, m] if transpose_a else [m, k])
    w = tf.placeholder(dtype, [n, k] if transpose_b else [k, n])
    b = tf.placeholder(dtype, [n])
    product = tf.matmul(x, w, transpose_a=transpose_a, transpose_b=transpose_b)
    xv = RNG.standard_normal(x.shape.as_list())
    xv[0, 0] = np.nan  # NaN propagates through BLAS and the epilogue as in NumPy
    feed = {x: xv, w: RNG.standard_normal(w.shape.as_list()), b: RNG.standard_normal(n)}
    got, want, kernels = _both([tf.nn.relu(product + b), tf.sigmoid(product) * 2.0], feed)
    assert len(kernels) == 1
    _assert_same(got, want, dtype)


def test_batched_matmuls_and_broadcast_epilogue_operands_match_the_reference():
    x = tf.placeholder(tf.float32, [10, 6])
    w = tf.placeholder(tf.float32, [6, 4])
    c = tf.placeholder(tf.float32, [10, 1])
    xb = tf.placeholder(tf.float32, [3, 4, 5])
    wb = tf.placeholder(tf.float32, [3, 5, 2])
    w2 = tf.placeholder(tf.float32, [2, 5])
    fetches = [tf.tanh(tf.matmul(x, w)) * c,
               tf.nn.relu(tf.matmul(xb, wb) - 0.5),
               tf.abs(tf.matmul(xb, w2, transpose_b=True)) + 1.0]
    feed = {v: RNG.standard_normal(v.shape.as_list()) for v in (x, w, c, xb, wb, w2)}
    got, want, kernels = _both(fetches, feed)
    assert len(kernels) == 3 and all("through BLAS" in k.source() for k in kernels)
    _assert_same(got, want, tf.float32)


def _reducing(kernels):
    from tfjit.backends.numba_cpu.reducing_epilogue import ReducingEpilogue

    return [k for k in kernels if isinstance(k.epilogue, ReducingEpilogue)]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_a_matmul_epilogue_ending_in_sums_and_means_matches_the_reference(dtype):
    """The regression step's loss and gradients, and row, column and keepdims reductions over
    row, column and scalar broadcast operands, all in the product's kernel; a NaN propagates."""
    m, k, n = 6, 5, 4
    x, w, b = tf.placeholder(dtype, [m, k]), tf.placeholder(dtype, [k, n]), tf.placeholder(dtype, [n])
    d, c, s = tf.placeholder(dtype, [m, n]), tf.placeholder(dtype, [m, 1]), tf.placeholder(dtype, [])
    nan, per_row = tf.placeholder(dtype, [m, n]), tf.placeholder(dtype, [m])
    y = tf.sigmoid(tf.matmul(x, w) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    gw, gb = tf.gradients(loss, [w, b])
    z = y * c - s
    fetches = [loss, gw, gb, tf.reduce_sum(z, axis=1), tf.reduce_mean(z, axis=0, keepdims=True),
               tf.reduce_sum(y * s, keepdims=True), tf.reduce_mean(y - nan, axis=0), tf.reduce_mean(y * nan),
               # values computed from the sums: a bias's step, a scaled loss, per row and per column
               b - 0.1 * gb, tf.sqrt(loss) * s + 1.0, tf.reduce_max(y, axis=1) + tf.reduce_sum(y, axis=1) * per_row,
               tf.exp(-tf.reduce_mean(z, axis=0, keepdims=True)) / b]
    feed = {v: RNG.standard_normal(v.shape.as_list()) for v in (x, w, b, d, c, nan, per_row)}
    feed[s] = 0.75
    feed[nan][2, 1] = np.nan
    got, want, kernels = _both(fetches, feed)
    (kernel,) = _reducing(kernels)
    assert len(kernel.epilogue.reductions) == 8  # the loss, the bias gradient and the six others
    assert {n.op for n in kernel.epilogue.post} == {"subtract", "multiply", "sqrt", "add", "exp", "neg", "divide"}
    assert np.isnan(got[7]) and np.isnan(got[6][1]) and not np.isnan(got[6][0])
    _assert_same(got, want, dtype)


def test_reducing_epilogues_of_batched_and_one_row_or_column_products_match_the_reference():
    """Sums over a batched product (all axes, the leading ones), over a one-row and a one-column
    product; a sum over a middle axis (not fused), and a per-matrix operand broadcast over the
    batch (a loop, then NumPy's sum), give the reference's numbers."""
    xb = tf.placeholder(tf.float32, [3, 4, 5])
    wbs = [tf.placeholder(tf.float32, [3, 5, 2]) for _ in range(3)]
    per_matrix = tf.placeholder(tf.float32, [4, 2])
    row, col = tf.placeholder(tf.float32, [1, 5]), tf.placeholder(tf.float32, [5, 1])
    w = tf.placeholder(tf.float32, [5, 3])
    relu = tf.nn.relu(tf.matmul(xb, wbs[0]) - 0.5)
    fetches = [tf.reduce_sum(relu), tf.reduce_mean(relu, axis=[0, 1]),
               tf.reduce_sum(tf.exp(tf.matmul(xb, wbs[1])), axis=1),
               tf.reduce_sum(tf.matmul(xb, wbs[2]) * per_matrix, axis=[0, 1]) * 2.0,
               tf.reduce_sum(tf.abs(tf.matmul(row, w)), axis=0),
               tf.reduce_mean(tf.tanh(tf.matmul(w, col, transpose_a=True)), axis=1)]
    feed = {v: RNG.standard_normal(v.shape.as_list()) for v in (xb, *wbs, per_matrix, row, col, w)}
    got, want, kernels = _both(fetches, feed)
    assert sorted(type(k.epilogue).__name__ for k in kernels) == \
        ["LoopKernel", "LoopThenReductions", "ReducingEpilogue", "ReducingEpilogue", "ReducingEpilogue"]
    _assert_same(got, want, tf.float32)


def test_a_big_reducing_epilogue_runs_blocks_of_rows_in_parallel(monkeypatch):
    from tfjit.backends.numba_cpu import reducing_epilogue

    monkeypatch.setattr(reducing_epilogue, "PARALLEL_MIN_ELEMENTS", 64)
    x, w = tf.placeholder(tf.float32, [40, 6]), tf.placeholder(tf.float32, [6, 8])
    d = tf.placeholder(tf.float32, [40, 8])
    y = tf.sigmoid(tf.matmul(x, w))
    fetches = [tf.reduce_mean(tf.square(y - d)), tf.reduce_sum(y - d, axis=0), tf.reduce_sum(y, axis=1), y * 2.0]
    feed = {v: RNG.standard_normal(v.shape.as_list()) for v in (x, w, d)}
    got, want, kernels = _both(fetches, feed)
    (kernel,) = _reducing(kernels)
    assert kernel.epilogue.parallel and kernel.epilogue.blocks > 1
    _assert_same(got, want, tf.float32)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_a_product_plus_one_operand_adds_it_with_numpy_as_the_reference_does(dtype):
    # a dense layer's bias with nothing after it (logits): no generated epilogue to compile
    x = tf.placeholder(dtype, [5, 7])
    w = tf.placeholder(dtype, [7, 3])
    w2 = tf.placeholder(dtype, [3, 7])
    b = tf.placeholder(dtype, [3])
    c = tf.placeholder(dtype, [5, 1])
    xv = RNG.standard_normal((5, 7))
    xv[0, 0] = np.inf  # inf + -inf is NaN, without a warning
    feed = {x: xv, w: np.abs(RNG.standard_normal((7, 3))), w2: RNG.standard_normal((3, 7)),
            b: np.array([-np.inf, np.nan, 0.5]), c: RNG.standard_normal((5, 1))}
    fetches = [tf.matmul(x, w) + b, c + tf.matmul(x, w2, transpose_b=True), tf.nn.relu(tf.matmul(w, w2) + 1.0)]
    got, want, kernels = _both(fetches, feed)
    assert [type(k.epilogue).__name__ for k in kernels] == ["AddEpilogue", "AddEpilogue", "LoopKernel"]
    assert np.isnan(got[0][0, 0]) and np.isnan(got[0][:, 1]).all()
    _assert_same(got, want, dtype)


def test_uncovered_contractions_fall_back_to_the_reference():
    x = tf.placeholder(tf.int32, [4, 3])
    w = tf.placeholder(tf.int32, [3, 2])
    xb = tf.placeholder(tf.float32, [1, 4, 3])
    wb = tf.placeholder(tf.float32, [2, 3, 2])  # broadcast batch dims
    feed = {x: RNG.integers(-5, 5, (4, 3)), w: RNG.integers(-5, 5, (3, 2)),
            xb: RNG.standard_normal((1, 4, 3)), wb: RNG.standard_normal((2, 3, 2))}
    got, want, kernels = _both([tf.matmul(x, w) + 1, tf.matmul(xb, wb) * 2.0], feed)
    assert kernels == []
    _assert_same(got, want, tf.float32)


@pytest.mark.parametrize("name", ["reference", "numba"])
def test_a_product_of_a_variable_assigned_back_to_it_in_one_kernel(backend, name):
    backend(name)  # v = (v @ w) * 2: the read moves into the kernel that writes v
    v = tf.Variable(np.ones((2, 3), np.float32), name="v")
    w = tf.placeholder(tf.float32, [3, 3], name="w")
    product = tf.matmul(v.read_value(), w)
    update = tf.assign(v, product * 2.0)
    ws = np.arange(9, dtype=np.float32).reshape(3, 3) / 10
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, _ = sess.run([product, update], {w: ws})
        np.testing.assert_allclose(got, np.ones((2, 3), np.float32) @ ws, rtol=1e-6)
        np.testing.assert_allclose(sess.run(v), got * 2.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_lone_matmuls_small_and_large_match_the_reference(dtype, transpose_a, transpose_b):
    from tfjit.backends.numba_cpu import blas

    fetches, feed = [], {}
    for m, k, n in [(5, 7, 3), (160, 128, 200)]:  # one BLAS call, and blocks shared with the helper thread
        x = tf.placeholder(dtype, [k, m] if transpose_a else [m, k])
        w = tf.placeholder(dtype, [n, k] if transpose_b else [k, n])
        fetches.append(tf.matmul(x, w, transpose_a=transpose_a, transpose_b=transpose_b))
        feed[x] = RNG.standard_normal(x.shape.as_list())
        feed[w] = RNG.standard_normal(w.shape.as_list())
        assert (2.0 * m * k * n < blas.SMALL_GEMM_FLOPS) == (m == 5)
    first = next(iter(feed))
    feed[first][0, 0], feed[first][1, 1] = np.nan, np.inf  # propagate as NumPy's BLAS does
    got, want, exe = both(fetches, feed)
    assert sum(isinstance(k, contraction.MatmulKernel) for _, k in exe.kernels) == 2
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    for g, w_ in zip(got, want):
        assert g.dtype == w_.dtype and g.shape == w_.shape
        np.testing.assert_allclose(g, w_, rtol=tol, atol=tol, equal_nan=True)


# -- a step's new weights as a copy and one GEMM ------------------------------------------------
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_new_weights_by_a_scaled_product_are_one_gemm_into_a_copy(dtype, transpose_a):
    from tfjit.backends.numba_cpu import gemm_update

    m, k, n = 6, 5, 4
    x = tf.placeholder(dtype, [k, m] if transpose_a else [m, k])
    gs = [tf.placeholder(dtype, [k, n]) for _ in range(4)]  # one product per fetch
    ws = [tf.placeholder(dtype, [m, n]) for _ in range(4)]
    lr = tf.placeholder(dtype, [])
    p = [tf.matmul(x, g, transpose_a=transpose_a) for g in gs]
    fetches = [ws[0] - 0.1 * p[0], ws[1] + p[1] * lr, ws[2] - p[2],
               0.5 * p[3] - ws[3]]  # not a step: a generated epilogue
    feed = {x: RNG.standard_normal(x.shape.as_list()), lr: 0.25,
            **{g: RNG.standard_normal((k, n)) for g in gs}, **{w: RNG.standard_normal((m, n)) for w in ws}}
    feed[gs[0]][0, 0] = np.inf  # inf * 0.1 - w: as in NumPy
    got, want, exe = both(fetches, feed)
    steps = [k for _, k in exe.kernels if isinstance(k, gemm_update.GemmStepKernel)]
    assert sorted((s.sign, s.scale is None) for s in steps) == [(-1.0, False), (-1.0, True), (1.0, False)]
    assert len([k for _, k in exe.kernels if isinstance(k, contraction.ContractionKernel)]) == 1
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    for g_, w_ in zip(got, want):
        assert g_.dtype == w_.dtype and g_.shape == w_.shape
        np.testing.assert_allclose(g_, w_, rtol=tol, atol=tol, equal_nan=True)


# -- weight updates as one GEMM into the variable ------------------------------------------------
def _gemm_update_run(dtype, m, k, n, transpose_a, update, order="C", fetch_old=False, runs=3):
    """Runs `update(w, product)` `runs` times on a fresh graph; returns the fetched results of
    every run, the final value, whether every run after the first wrote into the variable's
    array, and the
    GEMM update kernels of the plan (numba only)."""
    from tfjit.backends.numba_cpu import gemm_update

    tf.reset_default_graph()
    rng = np.random.default_rng(5)
    x = tf.placeholder(dtype, [k, m] if transpose_a else [m, k])
    g = tf.placeholder(dtype, [k, n])
    init = rng.standard_normal((m, n)).astype(dtype.np_dtype)
    w = tf.Variable(np.asfortranarray(init) if order == "F" else init)
    read = w.read_value()
    with tf.control_dependencies([read] if fetch_old else []):  # the read runs before the update
        step = update(w, tf.matmul(x, g, transpose_a=transpose_a))
    feed = {x: rng.standard_normal(x.shape.as_list()), g: rng.standard_normal((k, n))}
    feed[x][0, 0] = np.inf  # inf * 0 and inf - inf give NaN as in the reference
    feed[g][0, :2] = [0.0, 1.0]
    fetches = [read, step] if fetch_old else [step]
    results, kept = [], []
    with tf.Session() as sess:
        sess.run(w.initializer)
        for _ in range(runs):
            before = weakref.ref(sess.state.variables[w._attrs["var"]])  # holds no reference
            results.append(sess.run(fetches, feed))
            kept.append(before() is sess.state.variables[w._attrs["var"]])
        final = sess.run(w)
        plans = [exe for exe, _ in sess._cache.values() if hasattr(exe, "kernels")]
    kernels = [kern for exe in plans for _, kern in exe.kernels if isinstance(kern, gemm_update.GemmUpdateKernel)]
    return results, final, all(kept[1:]), kernels


def _sgd(w, product):
    return tf.assign_sub(w, product * 0.125)


def _lr_fed(w, product):
    return tf.assign_sub(w, tf.constant(0.25, w.dtype) * product)


def _plain_add(w, product):
    return tf.assign_add(w, product)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("m, k, n, transpose_a", [(6, 4, 5, True), (160, 128, 200, False), (200, 160, 128, True)])
@pytest.mark.parametrize("update", [_sgd, _lr_fed, _plain_add], ids=["sgd", "constant_first", "assign_add"])
def test_weight_updates_as_one_gemm_give_the_reference_numbers(backend, dtype, m, k, n, transpose_a, update):
    backend("reference")
    want, want_final, _, _ = _gemm_update_run(dtype, m, k, n, transpose_a, update)
    backend("numba")
    got, got_final, in_place, kernels = _gemm_update_run(dtype, m, k, n, transpose_a, update)
    assert len(kernels) == 1 and in_place
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    for g, w in zip([r[0] for r in got] + [got_final], [r[0] for r in want] + [want_final]):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True)
    assert np.isnan(got_final).any() and np.isfinite(got_final).any()


@pytest.mark.parametrize("m, k, n", [(6, 4, 5), (160, 128, 200)])
def test_a_gemm_update_leaves_a_read_held_in_the_same_run_unchanged(backend, m, k, n):
    backend("reference")
    want, want_final, _, _ = _gemm_update_run(tf.float32, m, k, n, True, _sgd, fetch_old=True)
    backend("numba")
    got, got_final, in_place, kernels = _gemm_update_run(tf.float32, m, k, n, True, _sgd, fetch_old=True)
    assert len(kernels) == 1 and not in_place  # the fetched read holds the array: a fresh one
    for (g_old, g_new), (w_old, w_new) in zip(got, want):
        np.testing.assert_array_equal(g_old, w_old)  # the value before the run's update, untouched
        np.testing.assert_allclose(g_new, w_new, rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(got_final, want_final, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_a_gemm_update_of_a_variable_stored_in_fortran_order_takes_the_reference_path(backend):
    backend("reference")
    want, want_final, _, _ = _gemm_update_run(tf.float32, 6, 4, 5, False, _sgd, order="F", runs=1)
    backend("numba")
    got, got_final, _, kernels = _gemm_update_run(tf.float32, 6, 4, 5, False, _sgd, order="F", runs=1)
    assert len(kernels) == 1
    np.testing.assert_allclose(got[0][0], want[0][0], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(got_final, want_final, rtol=1e-5, atol=1e-5, equal_nan=True)


# -- the products' BLAS calls ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("way", ["blocks", "threaded"])
def test_large_products_either_way_match_numpy(monkeypatch, dtype, way):
    from tfjit.backends.numba_cpu import blas

    monkeypatch.setattr(blas, "SMALL_GEMM_FLOPS", 0)  # every product large: in as many blocks as allowed
    monkeypatch.setattr(blas, "BLOCK_FLOPS", 1)
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    rng = np.random.default_rng(4)
    for m, k, n in [(37, 5, 70), (70, 9, 37), (1, 8, 40), (40, 8, 1), (17, 1, 19)]:
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                x, y = (a.T if ta else a), (b.T if tb else b)
                out = np.full((m, n), np.nan, dtype)
                np.testing.assert_allclose(blas.matmul_into(x, y, out), x @ y, rtol=1e-5, atol=1e-5)
                c = rng.standard_normal((m, n)).astype(dtype)
                want = c - dtype(0.5) * (x @ y)
                blas.add_product_into(c, x, y, -0.5)
                np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def test_products_from_two_threads_at_once_each_get_their_own_result(monkeypatch):
    from tfjit.backends.numba_cpu import blas

    monkeypatch.setattr(blas, "SMALL_GEMM_FLOPS", 0)
    monkeypatch.setattr(blas, "BLOCK_FLOPS", 1)
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: "blocks")
    rng = np.random.default_rng(6)
    pairs = [(rng.standard_normal((48, 32)).astype(np.float32), rng.standard_normal((32, 64)).astype(np.float32))
             for _ in range(2)]
    errors = []

    def work(a, b):
        try:
            out = np.empty((48, 64), np.float32)
            for _ in range(200):
                np.testing.assert_allclose(blas.matmul_into(a, b, out), a @ b, rtol=1e-5, atol=1e-5)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _drive(chooser, speed, calls: int) -> list[str]:
    """Runs `calls` picks, each way taking `speed[way]` seconds (a callable: of the call's number)."""
    picks = []
    for i in range(calls):
        way = chooser.pick()
        picks.append(way)
        chooser.record(way, speed[way](i) if callable(speed[way]) else speed[way])
    return picks


def test_the_faster_way_is_chosen_and_the_slower_one_retried_less_often_each_time_it_loses():
    from tfjit.backends.numba_cpu import blas

    chooser = blas._Chooser()
    speed = {"threaded": 1.0, "blocks": 3.0}
    picks = _drive(chooser, speed, 200)
    assert picks[0] == "blocks"  # the first call in blocks, which never wait for a descheduled thread
    assert picks[1:] == ["threaded"] * 199  # threads at their usual speed: no blocks tried
    speed["threaded"] = 10.0  # the machine got busy: the threads stall, the blocks are tried and win
    later = _drive(chooser, speed, 40)
    assert "blocks" in later[:blas.WINDOW] and later.count("blocks") >= 30
    picks = _drive(chooser, speed, 2000)
    starts = [i for i, w in enumerate(picks) if w == "threaded" and (i == 0 or picks[i - 1] != "threaded")]
    assert all(picks[i:i + blas.PROBE_CALLS] == ["threaded"] * blas.PROBE_CALLS for i in starts)  # a few in a row
    gaps = np.diff(starts)  # calls between tries: about doubled after each loss
    assert len(gaps) >= 3 and all(1.9 < b / a < 2.1 for a, b in zip(gaps, gaps[1:]))
    speed["threaded"] = 1.0  # idle again: the next try of the threaded way wins it back
    _drive(chooser, speed, 2 * blas.MAX_PROBE_GAP)
    assert chooser.pick() == "threaded"


def test_a_lone_slow_call_or_a_slow_first_call_does_not_move_a_product_to_the_blocks():
    from tfjit.backends.numba_cpu import blas

    chooser = blas._Chooser()
    # After the first call (in blocks) the threads' first two start NumPy's OpenBLAS threads
    # (the first is untimed); later one call in ten waits out another process's time slice.
    threaded = lambda i: 50.0 if i < 3 or i % 10 == 5 else 1.0  # noqa: E731
    assert _drive(chooser, {"threaded": threaded, "blocks": 2.0}, 200) == ["blocks"] + ["threaded"] * 199


def _stalls(at, fast: float = 0.2, slow: float = 3.0):
    """A way's times by its own call count n: `slow` where at(n), else `fast` (a descheduled
    OpenBLAS thread waited for: the regression step's products, 3 ms where 0.2 is usual)."""
    count = itertools.count()
    return lambda i: slow if at(next(count)) else fast


def _starts(picks: list[str], way: str) -> list[int]:
    """Where each run of `way` in `picks` begins."""
    return [i for i, w in enumerate(picks) if w == way and (i == 0 or picks[i - 1] != way)]


@pytest.mark.parametrize("at", [lambda n: n % 10 == 5, lambda n: n % 10 in (5, 6)], ids=["one", "two-in-a-row"])
def test_up_to_two_stalls_in_ten_threaded_calls_keep_a_product_threaded(at):
    from tfjit.backends.numba_cpu import blas

    picks = _drive(blas._Chooser(), {"threaded": _stalls(at), "blocks": 0.4}, 1000)
    assert picks == ["blocks"] + ["threaded"] * 999


@pytest.mark.parametrize("every", [2, 3])
def test_a_product_whose_threads_stall_every_second_or_third_call_moves_to_the_blocks_and_back_when_they_stop(every):
    from tfjit.backends.numba_cpu import blas

    chooser = blas._Chooser()
    speed = {"threaded": 0.2, "blocks": 0.4}
    assert _drive(chooser, speed, 100)[1:] == ["threaded"] * 99  # idle: threaded, the blocks untried
    speed["threaded"] = _stalls(lambda n: n % every == every - 1)  # heavy load: the median stays 0.2
    picks = _drive(chooser, speed, 2000)
    assert "blocks" in picks[:blas.WINDOW]  # tried once a few stalls are in the window
    assert picks.count("blocks") >= 0.97 * len(picks)  # and kept
    starts = _starts(picks[blas.WINDOW:], "threaded")  # the threads tried now and then, a few calls each
    assert len(starts) >= 4 and all(picks[blas.WINDOW + i:blas.WINDOW + i + blas.PROBE_CALLS] ==
                                    ["threaded"] * blas.PROBE_CALLS for i in starts)
    gaps = np.diff(starts)[1:]  # (the first try follows the blocks' winning one)
    assert all(1.8 < b / a < 2.2 for a, b in zip(gaps, gaps[1:]))  # less often each time they lose
    speed["threaded"] = 0.2  # the load ends: the next try of the threads wins them back for good
    bound = chooser.next_probe - chooser.calls + blas.PROBE_CALLS
    picks = _drive(chooser, speed, bound + 500)
    assert picks[bound:] == ["threaded"] * 500


def test_a_lucky_try_of_stalling_threads_halves_the_gap_between_tries_and_their_next_stalls_end_it():
    from tfjit.backends.numba_cpu import blas

    chooser = blas._Chooser()
    stalling = _stalls(lambda n: n % 2 == 1)
    speed = {"threaded": stalling, "blocks": 0.4}
    _drive(chooser, speed, 500)
    gap = chooser.gap
    assert gap >= 8 * blas.PROBE_GAP
    speed["threaded"] = 0.2  # the threads' next try happens to miss the stalls
    _drive(chooser, speed, chooser.next_probe - chooser.calls + blas.PROBE_CALLS)
    assert chooser.gap == gap // 2  # (not back to PROBE_GAP: tries every few calls, each paying for stalls)
    speed["threaded"] = stalling
    picks = _drive(chooser, speed, chooser.next_probe - chooser.calls - 1)  # up to the next try
    back = picks.index("blocks")  # after a stall or two (a window of 5 leaves out its slowest call)
    assert back <= 4 and "threaded" not in picks[back:]  # and kept until the next try
