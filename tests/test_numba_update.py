"""Optimizer updates as one in-place kernel on the numba CPU backend (backends/numba_cpu/update.py):
every TF1 optimizer trains as on the reference backend, updating its variables and slots in
place; fed hyperparameters, every rank and size, NaN and inf; fetched values the user owns;
the bodies and runs the kernel does not take fall back to the node-by-node path, rightly."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit.backends.numba_cpu import update

from test_optimizers import OPTIMIZERS


def _kernels(sess):
    """Every kernel the session's plans hold, nested ones (a split product's) included."""
    def walk(exe):
        for node, kernel in exe.kernels:
            yield node, kernel
            if hasattr(kernel, "inner"):
                yield from walk(kernel.inner)
    return [pair for exe, _ in sess._cache.values() if hasattr(exe, "kernels") for pair in walk(exe)]


def _update_kernels(sess):
    return [k for _, k in _kernels(sess) if isinstance(k, update.UpdateKernel)]


def _addresses(sess):
    return {name: a.__array_interface__["data"][0] for name, a in sess.state.variables.items()}


def _train(make_optimizer, dtype, steps=4, feeds=None):
    """A tanh layer then a linear one, trained `steps` times: the losses, every variable's value
    (slots included) by name, the session's update kernels and whether every trained variable
    and slot kept its storage over the last steps."""
    tf.reset_default_graph()
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((4, 3)).astype(dtype))
    t = tf.constant(rng.standard_normal((4, 2)).astype(dtype))
    w1 = tf.Variable(rng.standard_normal((3, 5)).astype(dtype), name="w1")
    b1 = tf.Variable(rng.standard_normal(5).astype(dtype) * 0.1, name="b1")
    w2 = tf.Variable(rng.standard_normal((5, 2)).astype(dtype), name="w2")
    b2 = tf.Variable(rng.standard_normal(2).astype(dtype) * 0.1, name="b2")
    out = tf.matmul(tf.tanh(tf.matmul(x, w1) + b1), w2) + b2
    loss = tf.reduce_mean(tf.square(out - t))
    train = make_optimizer().minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        losses = [sess.run([loss, train], feeds)[0] for _ in range(2)]
        before = _addresses(sess)
        losses += [sess.run([loss, train], feeds)[0] for _ in range(steps - 2)]
        after = _addresses(sess)
        values = {v.name: sess.run(v) for v in tf.global_variables()}
        in_place = all(after[k] == before[k] for k in before if "power" not in k)
        return losses, values, _update_kernels(sess), in_place


def _assert_close(got, want, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n != "sgd"])  # SGD's weights: one GEMM
def test_every_optimizer_trains_as_on_the_reference_backend_in_place(backend, name, dtype):
    backend("reference")
    want_losses, want, _, _ = _train(OPTIMIZERS[name][0], dtype)
    backend("numba")
    got_losses, got, kernels, in_place = _train(OPTIMIZERS[name][0], dtype)
    _assert_close(got_losses, want_losses, dtype)
    assert got.keys() == want.keys()
    for k in want:  # variables and slots
        assert got[k].dtype == want[k].dtype
        _assert_close(got[k], want[k], dtype)
    # the weights' updates (after their products) and the biases' (one kernel for both)
    assert len(kernels) >= 3 and all(k._fallback is None for k in kernels)
    assert in_place


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_a_weight_product_writes_its_gradient_alone_and_the_update_squares_it(backend, name):
    """Adam's and RMSProp's g^2 is computed in the update kernel from g, not written beside g by
    the product kernel for the update to read back."""
    def train():
        tf.reset_default_graph()
        rng = np.random.default_rng(2)
        x = tf.constant(rng.standard_normal((6, 4)).astype(np.float32))
        w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
        step = OPTIMIZERS[name][0]().minimize(tf.reduce_mean(tf.square(tf.tanh(tf.matmul(x, w)))))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(step)
            return {v.name: sess.run(v) for v in tf.global_variables()}, _kernels(sess)

    backend("reference")
    want, _ = train()
    backend("numba")
    got, kernels = train()
    for k in want:
        _assert_close(got[k], want[k], np.float32)
    products = [n for n, _ in kernels if n.op == "fused" and n.attr("kind") == "contraction"  # the gradient's
                and not any(m.op == "variable" for m in n.attr("body").nodes) and tuple(n.types[0].shape) == (4, 3)]
    updates = [k.body for _, k in kernels if isinstance(k, update.UpdateKernel)]
    assert [[m.op for m in p.attr("body").nodes] for p in products] == [["matmul"]] and len(products[0].types) == 1
    assert any(m.op == "square" for u in updates for m in u.nodes)


def _fed_run(make):
    tf.reset_default_graph()
    lr, mu = tf.placeholder(tf.float32, []), tf.placeholder(tf.float32, [])
    v = tf.Variable(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    train = make(lr, mu).minimize(tf.reduce_sum(tf.square(v) * np.float32(0.5)))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(3):
            sess.run(train, {lr: np.float32(0.05 * (step + 1)), mu: np.float32(0.8)})
        return sess.run(v), _update_kernels(sess)


@pytest.mark.parametrize("make", [lambda lr, mu: tf.train.AdamOptimizer(lr),
                                  lambda lr, mu: tf.train.MomentumOptimizer(lr, mu)], ids=["adam", "momentum"])
def test_fed_hyperparameters(backend, make):
    backend("reference")
    want, _ = _fed_run(make)
    backend("numba")
    got, kernels = _fed_run(make)
    assert kernels and all(k._fallback is None for k in kernels)
    _assert_close(got, want, np.float32)


def _shapes_run(values, grads, make):
    """`make()`'s update of variables of `values` by the gradients `grads`, fed, twice: every
    variable and slot."""
    tf.reset_default_graph()
    variables = [tf.Variable(v, name=f"v{i}") for i, v in enumerate(values)]
    fed = [tf.placeholder(tf.as_dtype(g.dtype), g.shape) for g in grads]
    train = make().apply_gradients(list(zip(fed, variables)))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(2):
            sess.run(train, dict(zip(fed, grads)))
        return {v.name: sess.run(v) for v in tf.global_variables()}, _update_kernels(sess)


@pytest.mark.parametrize("make", [lambda: tf.train.AdamOptimizer(0.1), lambda: tf.train.RMSPropOptimizer(0.1)],
                         ids=["adam", "rmsprop"])
def test_every_rank_and_size_and_nan_and_inf(backend, make):
    rng = np.random.default_rng(2)
    shapes = [(), (1,), (0, 3), (2, 3, 4), (2, 3, 4)]
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads[3].reshape(-1)[:5] = [np.nan, np.inf, -np.inf, 0.0, 1e30]  # through m, v and the variable
    values[4].reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    backend("reference")
    want, _ = _shapes_run(values, grads, make)
    backend("numba")
    got, kernels = _shapes_run(values, grads, make)
    assert kernels and all(k._fallback is None for k in kernels)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype
        _assert_close(got[k], want[k], np.float32)
    assert np.isnan(got["v3:0"].reshape(-1)[0]) and np.isnan(got["v4:0"].reshape(-1)[0])


def _broadcast_run():
    tf.reset_default_graph()
    v = tf.Variable(np.ones((3, 4), np.float32))
    row = tf.placeholder(tf.float32, [4])
    step = v.assign_add(tf.broadcast_to(row, [3, 4]) * np.float32(0.5))
    with tf.Session() as sess:
        sess.run(v.initializer)
        results = [sess.run(step, {row: np.arange(4, dtype=np.float32) + k}) for k in range(2)]
        kinds = [(n.attr("kind"), k) for n, k in _kernels(sess) if n.op == "fused"]
        return results, kinds


def test_a_body_the_kernel_does_not_take_runs_node_by_node(backend):
    """A row broadcast into the update (not a scalar): the fallback path, same values."""
    backend("reference")
    want, _ = _broadcast_run()
    backend("numba")
    got, kinds = _broadcast_run()
    assert [kind for kind, _ in kinds] == ["update", "loop"]  # the update; its body's loop kernel
    assert not isinstance(kinds[0][1], update.UpdateKernel)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_a_variable_held_elsewhere_is_updated_into_a_fresh_array(backend):
    """A fetch of the variable in the same run holds its array: the kernel writes a fresh one
    (the store's rule), so the fetched value is the value before the update."""
    backend("numba")
    w = tf.Variable(np.linspace(-1, 1, 8, dtype=np.float32))
    loss = tf.reduce_sum(tf.square(w))
    train = tf.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before, _ = sess.run([w, train])
        after = sess.run(w)
        kernels = _update_kernels(sess)
        assert kernels and all(k._fallback is None for k in kernels)
    start = np.linspace(-1, 1, 8, dtype=np.float32)
    np.testing.assert_array_equal(before, start)
    np.testing.assert_allclose(after, start - np.float32(0.1) * (2 * start), rtol=1e-6)


def test_an_uninitialised_slot_fails_as_on_the_reference_backend(backend):
    for name in ("reference", "numba"):
        backend(name)
        tf.reset_default_graph()
        w = tf.Variable(np.ones(4, np.float32))
        train = tf.train.AdamOptimizer(0.1).minimize(tf.reduce_sum(tf.square(w)))
        with tf.Session() as sess:
            sess.run(w.initializer)
            with pytest.raises(tf.errors.FailedPreconditionError):
                sess.run(train)
            np.testing.assert_array_equal(sess.run(w), np.ones(4))


def test_a_fetched_update_is_an_array_the_user_owns(backend):
    backend("numba")
    v = tf.Variable(np.zeros((2, 5), np.float64))
    x = tf.placeholder(tf.float64, [2, 5])
    step = v.assign_sub(x * 0.5)
    with tf.Session() as sess:
        sess.run(v.initializer)
        first = sess.run(step, {x: np.ones((2, 5))})
        assert _update_kernels(sess)
        first[0, 0] = 42.0  # the user's array: writable, and not the variable's storage
        second = sess.run(step, {x: np.ones((2, 5))})
        np.testing.assert_array_equal(second, np.full((2, 5), -1.0))
        np.testing.assert_array_equal(first[1], np.full(5, -0.5))


def test_the_parallel_loop_of_a_large_update_gives_the_same_values(backend, monkeypatch):
    """Large variables update in a `prange` loop (threshold lowered here to keep compiles small)."""
    backend("reference")
    want_losses, want, _, _ = _train(OPTIMIZERS["adam"][0], np.float32)
    backend("numba")
    monkeypatch.setattr(update, "PARALLEL_MIN_ELEMENTS", 4)
    got_losses, got, kernels, in_place = _train(OPTIMIZERS["adam"][0], np.float32)
    _assert_close(got_losses, want_losses, np.float32)
    for k in want:
        _assert_close(got[k], want[k], np.float32)
    assert any("prange" in k.source for k in kernels) and all(k._fallback is None for k in kernels)
    assert in_place


def test_the_loop_kernels_of_a_mixed_shape_update_give_the_reference_values(backend, monkeypatch):
    """Without the update kernel, the update of a (), (1,), (0, 3) and (2, 3, 4) variable runs
    as loop kernels (the fuse pass's loops only). The empty (0, 3) run stays out of the others'
    loops: fused with the scalar step size they share, one loop spanned no common space and
    failed to compile."""
    rng = np.random.default_rng(2)
    shapes = [(), (1,), (0, 3), (2, 3, 4), (2, 3, 4)]
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    backend("reference")
    want, _ = _shapes_run(values, grads, lambda: tf.train.AdamOptimizer(0.1))
    backend("numba")
    monkeypatch.setattr(update, "build", lambda node, fallback: None)
    got, kernels = _shapes_run(values, grads, lambda: tf.train.AdamOptimizer(0.1))
    assert not kernels
    for k in want:
        assert got[k].shape == want[k].shape
        _assert_close(got[k], want[k], np.float32)
