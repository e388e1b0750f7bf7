"""Variables updated in place and contraction kernels on the numba CPU backend: the same
values as the reference backend, fetched arrays the user owns, intact variables after a
failed run, two threads on one session; matmul + epilogue kernels for every transpose,
batches, dtypes, row blocks and the fallback."""
from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import contraction
from tfjit.runtime.state import RuntimeState

from test_numba_backend import both

RNG = np.random.default_rng(11)


@pytest.fixture
def backend():
    previous = config.current.backend
    yield config.set_backend
    config.set_backend(previous)


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
