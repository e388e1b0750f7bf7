"""The CUDA backend's kernels, placement, copies and whole programs, on a CUDA device.

The device is numba's CUDA simulator in CI: tests/test_numba_cuda.py runs this file in a
separate pytest process with NUMBA_ENABLE_CUDASIM=1 (it must be set before numba is
imported). On a machine with a GPU, bench/gpu_check.sh runs it with the simulator off.
Not collected by the main run (no `test_` prefix).
"""
from __future__ import annotations

import numpy as np
import pytest

import tfjit
import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cuda import reset_transfer_stats, transfer_stats
from tfjit.backends.numba_cuda.axes_reduction import CudaAxesReduction
from tfjit.backends.numba_cuda.executable import compile_graph, device_kernels, kernel_sources
from tfjit.backends.numba_cuda.gather import CudaGather, CudaOneHot, CudaScatterAdd
from tfjit.backends.numba_cuda.conv import CudaConv
from tfjit.backends.numba_cuda.pool import CudaPool
from tfjit.backends.numba_cuda.loop import CudaLoopKernel
from tfjit.backends.numba_cuda.matmul import CudaMatmulKernel
from tfjit.backends.numba_cuda.reduction import CudaRowKernel
from tfjit.backends.numba_cuda.update import CudaUpdateKernel
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.runtime.state import RuntimeState

import cuda_programs as programs

from tfjit.backends.numba_cuda.placement import gpu_available

if not gpu_available():
    pytest.fail("no CUDA device: run with NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) or on a GPU",
                pytrace=False)


def run_both(build):
    program, args = programs.optimized(build)
    exe = compile_graph(program)
    got = exe.run(args, RuntimeState())
    want = reference_compile(program).run(args, RuntimeState())
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True)
    return exe, args, got


def kernel_types(exe):
    return {type(k) for _, k in device_kernels(exe)}


def test_elementwise_kernels_broadcast_like_numpy():
    exe, _, _ = run_both(programs.elementwise_broadcast)
    assert kernel_types(exe) == {CudaLoopKernel}


def test_float64_elementwise_kernels():
    exe, _, _ = run_both(lambda: programs.elementwise_broadcast(programs.tf.float64))
    assert kernel_types(exe) == {CudaLoopKernel}


@pytest.mark.parametrize("build", [programs.softmax_rows, programs.layer_norm_rows])
def test_row_kernels(build):
    exe, _, _ = run_both(build)
    assert CudaRowKernel in kernel_types(exe)


@pytest.mark.parametrize("dtype", [programs.tf.float32, programs.tf.float64])
def test_matmul_kernels_with_epilogues_transposes_and_batches(dtype):
    exe, _, _ = run_both(lambda: programs.matmul_epilogue(dtype))
    products = [k for _, k in device_kernels(exe) if isinstance(k, CudaMatmulKernel)]
    assert len(products) == 5 and {(k.ta, k.tb) for k in products} == {(False, False), (True, True)}
    assert sorted(k.product.op for k in products) == ["matmul"] * 3 + ["tensordot"] * 2
    assert max(k.batch for k in products) == 6


def test_reductions_along_any_axes():
    exe, _, _ = run_both(programs.axes_reductions)
    reductions = [k for _, k in device_kernels(exe) if isinstance(k, CudaAxesReduction)]
    assert len(reductions) == 8
    assert 1 in {k.tx for k in reductions} and max(k.tx for k in reductions) == 32  # strided rows and columns


def test_gather_scatter_add_and_one_hot():
    exe, _, _ = run_both(programs.gather_scatter)
    kinds = [type(k) for _, k in device_kernels(exe)]
    assert kinds.count(CudaGather) == 2 and kinds.count(CudaScatterAdd) == 2 and kinds.count(CudaOneHot) == 2


def test_an_index_out_of_range_raises_the_reference_error():
    import tfjit as tf

    program, (params, _) = programs.optimized(lambda: _gather_program(tf))
    exe = compile_graph(program)
    good = exe.run([params, np.array([2, 0], np.int32)], RuntimeState())[0]
    np.testing.assert_array_equal(good, params[[2, 0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[1\] = 3 is not in \[0, 3\)"):
        exe.run([params, np.array([0, 3], np.int32)], RuntimeState())


def _gather_program(tf):
    p = tf.placeholder(tf.float32, [3, 2])
    i = tf.placeholder(tf.int32, [2])
    return [tf.gather(p, i)], {p: np.arange(6, dtype=np.float32).reshape(3, 2), i: np.zeros(2, np.int32)}


def test_pooling_and_its_gradients():
    exe, _, _ = run_both(programs.pooling)
    ops = sorted(k.node.op for _, k in device_kernels(exe) if isinstance(k, CudaPool))
    assert set(ops) == {"max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad", "max_pool_grad_grad"}


def test_convolutions_and_their_gradients():
    exe, _, _ = run_both(programs.convolutions)
    convs = [k for _, k in device_kernels(exe) if isinstance(k, CudaConv)]
    assert sorted({k.node.op for k in convs}) == ["conv2d", "conv2d_backprop_filter", "conv2d_backprop_input"]
    assert len(convs) == 15 and any(k.nchw for k in convs)
    sources = kernel_sources(exe)
    assert all(f"def kernel({args}):" in sources for args in ("x, cols", "cols, dx", "src, dst", "a, b, out0"))


def test_ops_without_a_kernel_run_their_reference():
    exe, _, _ = run_both(programs.host_fallbacks)
    assert not list(device_kernels(exe))


def test_only_feeds_and_fetches_cross():
    reset_transfer_stats()
    exe, args, got = run_both(programs.softmax_rows)
    constants = sum(n.attr("value").array.nbytes for n in exe.graph.nodes if n.op == "constant")
    stats = transfer_stats()
    assert stats["host_to_device"] == sum(a.nbytes for a in args) + constants
    assert stats["device_to_host"] == sum(g.nbytes for g in got) and stats["implicit"] == 0


def test_a_plan_allocates_its_device_buffers_once():
    program, args = programs.optimized(programs.softmax_rows)
    exe = compile_graph(program)
    first = exe.run(args, RuntimeState())
    arrays = [id(a) for a in exe._arena.arrays]
    second = exe.run([a * 2 for a in args], RuntimeState())
    assert arrays and [id(a) for a in exe._arena.arrays] == arrays
    want = reference_compile(program).run([a * 2 for a in args], RuntimeState())
    np.testing.assert_allclose(second[0], want[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(first[0], second[0])  # the first run's fetched results are the caller's


def test_optimizer_updates_are_in_place_kernels():
    program, _ = programs.optimized(programs.mlp_train_step)
    kernels = [k for _, k in device_kernels(compile_graph(program))]
    assigned = {v for k in kernels for v in getattr(k, "variables", ())}
    assert {"w1", "w1/Adam", "w1/Adam_1", "w2", "b1", "beta1_power"} <= assigned
    assert any(isinstance(k, CudaMatmulKernel) and k.variables for k in kernels)  # Adam in the GEMM's epilogue
    assert any(isinstance(k, CudaUpdateKernel) for k in kernels)


@pytest.mark.parametrize("build", programs.TRAINING_PROGRAMS)
def test_training_steps_match_the_reference_backend(build):
    cuda = programs.train(build, "numba_cuda")
    reference = programs.train(build, "reference")
    np.testing.assert_allclose(cuda, reference, rtol=1e-5)
    assert cuda[-1] < cuda[0]


# -- placement, copies and device-resident state (a Session on the numba_cuda backend) ----------
GPU = "/job:localhost/replica:0/task:0/device:GPU:0"
CPU = "/job:localhost/replica:0/task:0/device:CPU:0"


@pytest.fixture
def cuda_backend():
    previous = config.current.backend
    config.set_backend("numba_cuda")
    tf.reset_default_graph()
    yield
    config.set_backend(previous)


def test_placement_log_shows_the_gpu_and_why_a_node_fell_back(cuda_backend, capsys):
    x = tf.placeholder(tf.float32, [2, 3], name="x")
    y = tf.exp(x, name="Exp")
    noise = tf.random_uniform([2, 3], seed=1, name="noise")  # random ops draw on the host
    with tf.Session(config=tf.ConfigProto(log_device_placement=True)) as sess:
        got = sess.run(y + noise, feed_dict={x: np.ones((2, 3))})
    err = capsys.readouterr().err
    assert f"x: (Placeholder): {GPU}" in err and f"Exp: (Exp): {GPU}" in err
    assert f"noise: (RandomUniform): {CPU}" in err
    assert f"placement fallback: noise: {GPU} -> {CPU} (no CUDA kernel for `random_uniform` on float32)" in err
    assert got.shape == (2, 3) and np.all(got >= np.e) and np.all(got < np.e + 1)


def test_an_explicit_gpu_node_without_a_kernel_fails_or_falls_back_softly(cuda_backend, capsys):
    with tf.device("/gpu:0"):
        r = tf.random_normal([3], seed=4, name="draw")  # the line the error names
    line = test_an_explicit_gpu_node_without_a_kernel_fails_or_falls_back_softly.__code__.co_firstlineno + 2
    with tf.Session() as sess, pytest.raises(Exception, match=rf"operation draw \(created at .*cuda_cases.py:{line}\)"
                                                              r".*no CUDA kernel for `random_normal`"):
        sess.run(r)
    soft = tf.ConfigProto(allow_soft_placement=True, log_device_placement=True)
    with tf.Session(config=soft) as sess:
        got = sess.run(r * 2.0)
    config.set_backend("reference")
    with tf.Session(config=tf.ConfigProto(allow_soft_placement=True)) as sess:
        want = sess.run(r * 2.0)
    np.testing.assert_array_equal(got, want)
    assert f"draw: (RandomStandardNormal): {CPU}" in capsys.readouterr().err


def test_dropout_on_the_gpu_draws_the_cpu_masks(cuda_backend):
    x = tf.placeholder(tf.float32, [4, 8])
    y = tf.nn.dropout(tf.exp(x), keep_prob=0.5, seed=7)
    feed = {x: np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)}
    runs = {}
    for backend in ("numba_cuda", "reference"):
        config.set_backend(backend)
        with tf.Session() as sess:
            runs[backend] = [sess.run(y, feed_dict=feed) for _ in range(2)]
    np.testing.assert_allclose(runs["numba_cuda"], runs["reference"], rtol=1e-6)
    assert not np.array_equal(runs["reference"][0] == 0, runs["reference"][1] == 0)  # a new mask each run


def _bytes(v):
    return int(np.prod(v.type.shape)) * v.type.dtype.np_dtype.itemsize


def _crossings(graph):
    """Bytes a plan moves per run besides its fetches: feeds a GPU node reads, and what its
    placed `device_copy` nodes move (a copy of a constant or a feed finds it there already)."""
    read_on_gpu = {v for n in graph.nodes if n.device == GPU for v in n.inputs}
    feeds = sum(_bytes(p) for p in graph.params if p in read_on_gpu)
    copies = [n for n in graph.nodes if n.op == "device_copy" and n.inputs[0].node.op not in ("constant", "param")]
    to_gpu = sum(_bytes(n.out) for n in copies if n.device == GPU)
    return feeds + to_gpu, sum(_bytes(n.out) for n in copies) - to_gpu


@pytest.mark.parametrize("build", [programs.gpu_resident_model, programs.mlp_train_step])
def test_a_training_step_copies_feeds_fetches_and_placed_copies_only(cuda_backend, build):
    (loss, step), feeds = build()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run([loss, step], feed_dict=feeds)[0]
        (plan, _), = [v for k, v in sess._cache.items() if loss.value in k[0]]
        to_gpu, to_cpu = _crossings(plan.graph)
        reset_transfer_stats()
        with tfjit.debug.no_implicit_transfers():
            losses = [sess.run([loss, step], feed_dict=feeds)[0] for _ in range(3)]
        stats = transfer_stats()
        names = [v.op.node.attr("var") for v in tf.trainable_variables()]
        assert all(n in sess.state.device_variables and n not in sess.state.variables for n in names)
    assert stats["host_to_device"] == 3 * to_gpu
    assert stats["device_to_host"] == 3 * (np.asarray(first).nbytes + to_cpu) and stats["implicit"] == 0
    if build is programs.gpu_resident_model:  # every node on the GPU: nothing but feeds and fetches crosses
        assert to_gpu == sum(np.asarray(v).nbytes for v in feeds.values()) and to_cpu == 0
    np.testing.assert_allclose([first] + losses, programs.train(build, "reference", steps=4), rtol=1e-5)


def test_variables_stay_on_the_device_and_are_read_back_on_demand(cuda_backend):
    (loss, step), feeds = programs.gpu_resident_model()
    w = [v for v in tf.trainable_variables() if v.op.node.attr("var") == "w"][0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(step, feed_dict=feeds)
        w.load(np.full((6, 1), 0.25, np.float32), sess)  # a host write: the next GPU read uploads it
        sess.run(step, feed_dict=feeds)
        got = sess.run(w)
        fetched = got.copy()
        got[:] = 99.0  # the fetched array is the caller's: editing it leaves the variable alone
        np.testing.assert_array_equal(sess.run(w), fetched)
    config.set_backend("reference")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(step, feed_dict=feeds)
        w.load(np.full((6, 1), 0.25, np.float32), sess)
        sess.run(step, feed_dict=feeds)
        want = sess.run(w)
    np.testing.assert_allclose(fetched, want, rtol=1e-6)


IMPLICIT = """
func @f(%0: f32[4] {device="CPU:0"}) -> (f32[4]) {
  %1: f32[4] = exp(%0) {name="e", device="CPU:0"}
  %2: f32[4] = neg(%1) {name="n", device="GPU:0"}  # model.py:7
  return %2
}"""


def test_an_implicit_copy_is_counted_and_the_guard_makes_it_an_error():
    from tfjit.ir.parser import parse_graph

    graph = parse_graph(IMPLICIT.strip())
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    reset_transfer_stats()
    np.testing.assert_allclose(compile_graph(graph).run([x], RuntimeState())[0], -np.exp(x), rtol=1e-6)
    assert transfer_stats()["implicit"] == 16
    with tfjit.debug.no_implicit_transfers(), \
            pytest.raises(tf.errors.FailedPreconditionError, match=r"input 0 of `neg` node n at model.py:7"):
        compile_graph(graph).run([x], RuntimeState())


def test_the_softmax_op_runs_as_one_row_kernel_on_the_gpu(cuda_backend):
    x = tf.placeholder(tf.float32, [3, 10])
    y = tf.nn.softmax(x * 2.0)
    feed = {x: np.linspace(-3, 3, 30, dtype=np.float32).reshape(3, 10)}
    with tf.Session() as sess, tfjit.debug.no_implicit_transfers():
        got = sess.run(y, feed_dict=feed)
        (plan, _), = sess._cache.values()
    assert {type(k) for _, k in device_kernels(plan)} == {CudaRowKernel}
    z = feed[x] * 2.0
    want = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), rtol=1e-5)
