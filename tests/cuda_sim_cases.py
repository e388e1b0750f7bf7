"""The CUDA backend's kernels and whole programs under numba's CUDA simulator.

Run by tests/test_numba_cuda.py in a separate pytest process with NUMBA_ENABLE_CUDASIM=1
(it must be set before numba is imported); not collected by the main run (no `test_` prefix).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

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

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"


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
    assert transfer_stats() == {"host_to_device": sum(a.nbytes for a in args) + constants,
                                "device_to_host": sum(g.nbytes for g in got)}


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
