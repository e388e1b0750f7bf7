"""The numba CPU backend gives the reference backend's results: every kernel class (loops with
broadcasting, scalars, strided and empty inputs, NaN/inf; row reductions; fallbacks), and
whole programs trained on it."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import column, loop, reduction
from tfjit.backends.numba_cpu.executable import compile_graph as numba_compile
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.debug import program_for
from tfjit.runtime.state import RuntimeState

RNG = np.random.default_rng(7)


def both(fetches, feed_dict):
    """Optimise the program once; run it on both backends; return both results and the plan."""
    program = config.pass_manager().run(program_for(fetches, feed_dict))
    args = [np.asarray(feed_dict[k], k.dtype.np_dtype) for k in sorted(feed_dict, key=lambda t: t.op.node.uid)]
    numba_exe = numba_compile(program)
    got = numba_exe.run(args, RuntimeState())
    want = reference_compile(program).run(args, RuntimeState())
    return got, want, numba_exe


def assert_same(got, want, rtol=2e-6, atol=1e-6):
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)


def generated(exe, cls):
    return [k for _, k in exe.kernels if isinstance(k, cls)]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("shape_x, shape_b", [((6, 5), (5,)), ((6, 5), (6, 1)), ((3, 1, 4), (2, 4)),
                                               ((7,), ()), ((0, 3), (3,)), ((1, 1), (1,))])
def test_loop_kernels_broadcast_like_numpy(dtype, shape_x, shape_b):
    x = tf.placeholder(dtype, shape_x, name="x")
    b = tf.placeholder(dtype, shape_b, name="b")
    y = tf.nn.gelu(tf.tanh(x * b + 1.0) - tf.exp(-tf.abs(x)), approximate=True)
    z = tf.maximum(tf.nn.relu6(x * 3.0), tf.sigmoid(b)) / (1.0 + tf.square(b))
    feeds = {x: RNG.standard_normal(shape_x), b: RNG.standard_normal(shape_b)}
    got, want, exe = both([y, z], feeds)
    assert_same(got, want)
    assert generated(exe, loop.LoopKernel)


@pytest.mark.parametrize("dtype", [tf.float32, tf.int32, tf.bool])
def test_a_loop_over_c_arrays_indexes_them_and_takes_scalar_inputs_as_scalars(dtype):
    """A bias-add-like loop over C arrays reads `in0[i0, i]` (no row views) and its size-1
    inputs arrive as NumPy scalars of their dtype; values as the reference's, the second run
    through the kernel's plan."""
    x = tf.placeholder(dtype, [4, 6], name="x")
    b = tf.placeholder(dtype, [6], name="b")
    s = tf.placeholder(dtype, [1, 1], name="s")
    if dtype == tf.bool:
        outs = [tf.logical_or(tf.logical_and(x, b), s)]
        draw = lambda shape: RNG.random(shape) < 0.5  # noqa: E731
    else:
        outs = [tf.maximum(x + b, s), (x - s) * b]
        draw = lambda shape: RNG.integers(-9, 9, shape)  # noqa: E731
    program = config.pass_manager().run(program_for(outs, {t: np.zeros(t.shape.as_list(), dtype.np_dtype) for t in (x, b, s)}))
    exe, ref = numba_compile(program), reference_compile(program)
    for _ in range(2):
        args = [np.asarray(draw(shape), dtype.np_dtype) for shape in [(4, 6), (6,), (1, 1)]]
        assert_same(exe.run(args, RuntimeState()), ref.run(args, RuntimeState()))
    source = "".join(k.source() for k in generated(exe, loop.LoopKernel))
    assert "in0[i0, i]" in source and "in1[0, i]" in source
    assert "_contiguous_row(" not in source and "[()]" not in source
    assert "for i in range(6):" in source  # a row narrower than a vector: its length is a constant


def test_loop_kernels_propagate_nan_and_inf_as_numpy():
    x = tf.placeholder(tf.float32, [8], name="x")
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3.0], np.float32)
    outs = [tf.maximum(x, 0.0), tf.minimum(x, 1.0), tf.exp(x), tf.sigmoid(x), tf.tanh(x), tf.sign(x),
            tf.nn.relu(x), tf.nn.softplus(x), tf.is_nan(x), tf.is_finite(x), tf.floor(x), tf.round(x * 0.5),
            tf.rsqrt(x), tf.reciprocal(x), 1.0 / x, tf.sqrt(x)]
    got, want, _ = both(outs, {x: values})
    assert_same(got, want)


def test_loop_kernel_with_a_scalar_result_computes_it_once_and_still_loops():
    s = tf.placeholder(tf.float32, [], name="s")
    v = tf.placeholder(tf.float32, [16], name="v")
    rate = tf.sqrt(1.0 - s) / (1.0 - s * s)  # Adam's lr_t has this shape: scalars only
    step = v * rate + 1.0
    got, want, exe = both([rate, step], {s: np.float32(0.5), v: np.arange(16)})
    assert_same(got, want)
    kernel = generated(exe, loop.LoopKernel)[0]
    assert "out0[0] = " in kernel.source() and "for i in range(out1.shape[0])" in kernel.source()


def test_a_result_broadcast_from_scalars_fills_every_element():
    s = tf.placeholder(tf.float32, [], name="s")
    v = tf.placeholder(tf.float32, [6], name="v")
    filled = tf.broadcast_to(tf.exp(s), [6])
    got, want, _ = both([filled, filled + v], {s: np.float32(0.5), v: np.arange(6)})
    assert_same(got, want)


def test_integer_and_bool_loops_and_casts():
    i = tf.placeholder(tf.int32, [5], name="i")
    j = tf.placeholder(tf.int64, [5], name="j")
    outs = [tf.abs(i * 3 - 7), tf.cast(i, tf.float32) / 2.0, tf.logical_and(i > 0, tf.cast(j, tf.int32) < 3),
            tf.where_v2(i > 1, tf.cast(j, tf.float64), -1.0), tf.cast(tf.cast(i, tf.bool), tf.int64) + j]
    got, want, _ = both(outs, {i: np.array([-2, -1, 0, 1, 5]), j: np.arange(5)})
    assert_same(got, want)


def test_strided_and_transposed_inputs():
    x = tf.placeholder(tf.float32, [6, 4], name="x")
    y = tf.exp(tf.transpose(x)) * 2.0 + x[::2, 1:][0, 0]
    got, want, _ = both(y, {x: RNG.standard_normal((6, 4))})
    assert_same(got, want)


@pytest.mark.parametrize("shape", [(4, 16), (3, 2, 8), (1, 5), (5, 1)])
def test_row_kernels_for_softmax_and_layer_norm(shape):
    x = tf.placeholder(tf.float32, shape, name="x")
    gamma = tf.constant(np.linspace(0.5, 1.5, shape[-1], dtype=np.float32))
    mean = tf.reduce_mean(x, -1, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), -1, keepdims=True)
    norm = (x - mean) * tf.rsqrt(var + 1e-5) * gamma
    peak = tf.reduce_max(norm, -1, keepdims=True)
    e = tf.exp(norm - peak)
    soft = e / tf.reduce_sum(e, -1, keepdims=True)
    got, want, exe = both([soft, tf.reduce_min(soft, -1)], {x: RNG.standard_normal(shape) * 3})
    assert_same(got, want, rtol=1e-5, atol=1e-6)
    assert generated(exe, (reduction.RowKernel, column.ColumnKernel))  # (5, 1) reduces a size-1 axis


def test_row_kernel_rows_of_nan_and_inf():
    x = tf.placeholder(tf.float32, [3, 4], name="x")
    m = tf.reduce_max(x, -1, keepdims=True)
    s = tf.reduce_sum(tf.exp(x - m), -1)
    value = np.array([[1, np.nan, 2, 3], [-np.inf, 0, 1, 2], [np.inf, 1, 2, 3]], np.float32)
    got, want, _ = both([s, tf.reduce_max(x, -1)], {x: value})
    assert_same(got, want)


def test_reductions_over_scattered_axes_that_cannot_split_fall_back_correctly():
    """An integer mean over axes (0, 2) stays whole (its truncation does not chain); the fused
    body then runs node by node and still gives TF's truncated mean."""
    x = tf.placeholder(tf.int32, [5, 3, 6], name="x")
    y = tf.reduce_mean(x * 3 - 1, axis=[0, 2])
    values = RNG.integers(-9, 10, (5, 3, 6)).astype(np.int32)
    got, want, exe = both(y, {x: values})
    total = (values * 3 - 1).sum((0, 2))
    assert_same(got, want)
    assert_same(got, [(np.sign(total) * (np.abs(total) // 30)).astype(np.int32)])
    assert not generated(exe, (reduction.RowKernel, column.ColumnKernel))


def test_float16_runs_through_the_reference_fallback():
    x = tf.placeholder(tf.float16, [4], name="x")
    got, want, exe = both(tf.exp(x) + 1.0, {x: np.arange(4)})
    assert_same(got, want)
    assert not generated(exe, loop.LoopKernel)


def test_errors_in_the_compiled_step_name_the_op_and_line():
    x = tf.placeholder(tf.int32, [3], name="x")
    y = tf.gather(tf.constant([1, 2, 3]), x)  # this line
    line = test_errors_in_the_compiled_step_name_the_op_and_line.__code__.co_firstlineno + 2
    program = config.pass_manager().run(program_for(y, {x: np.array([0, 1, 2])}))
    with pytest.raises(tf.InvalidArgumentError, match=rf"op `gather` at .*test_numba_backend.py:{line}"):
        numba_compile(program).run([np.array([0, 1, 7], np.int32)], RuntimeState())


@pytest.fixture
def numba_backend():
    previous = config.current.backend
    config.set_backend("numba")
    yield
    config.set_backend(previous)


def test_the_lecture_model_trains_to_the_same_loss_on_both_backends(numba_backend):
    rng = np.random.default_rng(3)
    xv, dv = rng.standard_normal((64, 16)).astype(np.float32), rng.random((64, 4)).astype(np.float32)
    losses = {}
    for backend in ("reference", "numba"):
        config.set_backend(backend)
        tf.reset_default_graph()
        tf.set_random_seed(5)
        x = tf.placeholder(tf.float32, [None, 16])
        d = tf.placeholder(tf.float32, [None, 4])
        W = tf.Variable(tf.random_normal([16, 4], stddev=0.1))
        b = tf.Variable(tf.zeros([4]))
        y = tf.nn.sigmoid(tf.matmul(x, W) + b)
        loss = tf.reduce_mean(tf.square(y - d))
        step = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            losses[backend] = [sess.run([loss, step], feed_dict={x: xv, d: dv})[0] for _ in range(30)]
    np.testing.assert_allclose(losses["numba"], losses["reference"], rtol=1e-5)
    assert losses["numba"][-1] < losses["numba"][0]


def test_an_mlp_trains_to_the_same_loss_on_both_backends(numba_backend):
    rng = np.random.default_rng(4)
    xv, yv = rng.standard_normal((32, 20)).astype(np.float32), rng.integers(0, 5, 32)
    losses = {}
    for backend in ("reference", "numba"):
        config.set_backend(backend)
        tf.reset_default_graph()
        tf.set_random_seed(9)
        x = tf.placeholder(tf.float32, [None, 20])
        labels = tf.placeholder(tf.int64, [None])
        h = tf.nn.relu(tf.matmul(x, tf.get_variable("w1", [20, 16])) + tf.get_variable("b1", [16]))
        logits = tf.matmul(h, tf.get_variable("w2", [16, 5]))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = tf.train.AdamOptimizer(0.01).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            losses[backend] = [sess.run([loss, step], feed_dict={x: xv, labels: yv})[0] for _ in range(15)]
    np.testing.assert_allclose(losses["numba"], losses["reference"], rtol=1e-4)


def test_recycled_output_buffers_never_overwrite_a_result_the_user_keeps():
    from tfjit.backends.numba_cpu.buffers import POOL

    first = POOL.empty((1 << 19,), np.float32)
    first[:] = 1.0
    kept_view = first[5:]
    del first
    second = POOL.empty((1 << 19,), np.float32)
    second[:] = 2.0
    assert not np.shares_memory(kept_view, second) and np.all(kept_view == 1.0)
    address = second.__array_interface__["data"][0]
    del second
    third = POOL.empty((1 << 19,), np.float32)  # the second buffer is free again: recycled
    assert third.__array_interface__["data"][0] == address


def test_session_results_stay_intact_across_runs_with_recycled_buffers(numba_backend):
    x = tf.placeholder(tf.float32, [1 << 19], name="x")
    y = tf.exp(x) * 2.0
    with tf.Session() as sess:
        a = sess.run(y, feed_dict={x: np.zeros(1 << 19)})
        b = sess.run(y, feed_dict={x: np.ones(1 << 19)})
    assert np.all(a == 2.0) and np.allclose(b, 2 * np.e)


def test_row_kernels_over_empty_rows_give_tf_identities():
    x = tf.placeholder(tf.float32, [3, 0], name="x")
    got, want, _ = both([tf.reduce_max(x, -1), tf.reduce_min(x, -1), tf.reduce_sum(tf.exp(x), -1)],
                        {x: np.zeros((3, 0))})
    assert_same(got, want)


def test_big_loops_run_in_parallel_and_match_the_reference(monkeypatch):
    monkeypatch.setattr(loop, "PARALLEL_MIN_ELEMENTS", 64)
    x = tf.placeholder(tf.float32, [4096], name="x")
    y = tf.nn.gelu(x * 0.5, approximate=True) + tf.exp(-tf.abs(x))
    got, want, exe = both(y, {x: RNG.standard_normal(4096)})
    assert_same(got, want)
    kernel = generated(exe, loop.LoopKernel)[0]
    assert "prange(" in kernel.source()


def test_numba_is_the_default_backend_and_the_environment_selects_another():
    import os
    import subprocess
    import sys

    code = "import tfjit; print(tfjit.config.current.backend)"
    env = {k: v for k, v in os.environ.items() if k != "TFJIT_BACKEND"}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "TFJIT_BACKEND": "reference"},
                            capture_output=True, text=True, check=True)
    assert (default.stdout.split()[-1], chosen.stdout.split()[-1]) == ("numba", "reference")


def test_kernels_differing_only_in_names_and_lines_share_one_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("TFJIT_CACHE_DIR", str(tmp_path))
    kernels = []
    for n in (5, 9):  # two graphs, two node names and source lines, the same code
        tf.reset_default_graph()
        x = tf.placeholder(tf.float32, [n], name=f"x{n}")
        y = tf.nn.relu(x * 3.0 - 1.0) if n == 5 else \
            tf.nn.relu(x * 3.0 - 1.0)
        got, want, exe = both([y], {x: RNG.standard_normal(n)})
        assert_same(got, want)
        (kernel,) = generated(exe, loop.LoopKernel)
        kernels.append(kernel)
    first, second = kernels
    assert first.source() != second.source()  # each keeps its own comments
    assert list(first._compiled.values())[0] is list(second._compiled.values())[0]
    assert len(list(tmp_path.glob("*.py"))) == 1
