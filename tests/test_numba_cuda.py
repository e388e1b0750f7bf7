"""The numba CUDA backend without a GPU: its kernels, placement, copies and whole programs run
under numba's CUDA simulator (a separate process: the simulator must be switched on before
numba is imported; the cases are in tests/cuda_cases.py, which bench/gpu_check.sh also runs
on a real GPU), every kernel it generates for those programs compiles to PTX for sm_90, and
a program asking for a GPU where there is none fails clearly or falls back softly."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import tfjit as tf
from tfjit import config

import cuda_programs as programs

HERE = os.path.dirname(os.path.abspath(__file__))


def test_kernels_and_programs_match_the_reference_backend_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    # cwd: not the checkout's root, whose tfjit/ folder would shadow an installed (or PYTHONPATH) tfjit
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.join(HERE, "cuda_cases.py")],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


@pytest.mark.parametrize("build", programs.KERNEL_PROGRAMS + programs.TRAINING_PROGRAMS)
def test_every_generated_kernel_compiles_to_ptx_for_sm_90(build):
    pytest.importorskip("numba_cuda")  # numba-cuda[cu13]: NVVM from PyPI, no GPU or driver needed
    from tfjit.backends.numba_cuda.compile import to_ptx
    from tfjit.backends.numba_cuda.executable import CudaExecutable, device_kernels
    from tfjit.backends.numba_cuda.loop import CudaLoopKernel

    program, _ = programs.optimized(build)
    kernels = list(device_kernels(CudaExecutable(program)))
    assert kernels
    for node, kernel in kernels:
        if isinstance(kernel, CudaLoopKernel):
            try:
                kernel = kernel.variant(tuple(_concrete(p, kernel.body) for p in kernel.body.params))
            except NotImplementedError:  # a body one loop cannot hold: it runs node by node
                continue
        parts = kernel.parts() if hasattr(kernel, "parts") else [(kernel.kernel, kernel.dtypes)]
        for compiled, dtypes in parts:  # a conv is im2col + GEMM, a scatter-add zeroes first
            ptx = to_ptx(compiled, dtypes, cc=(9, 0))
            assert ".target sm_90" in ptx and ".entry" in ptx, node.name


def _concrete(param, body):
    """A loop input's shape; an unknown dim (a dropout mask's batch) is the result's."""
    space = max((r.type.shape for r in body.results), key=len)
    shape = param.type.shape
    offset = len(space) - len(shape)
    return tuple(d if isinstance(d, int) else space[offset + i] for i, d in enumerate(shape))


def test_state_kernels_compile_to_ptx_for_sm_90():
    pytest.importorskip("numba_cuda")
    from numba import float32, float64, int64
    from tfjit.backends.numba_cuda import state_ops
    from tfjit.backends.numba_cuda.compile import python_function

    for kernel, arity in [(state_ops._copy_kernel, 2), (state_ops._add_kernel, 3), (state_ops._sub_kernel, 3)]:
        for t in (float32, float64, int64):
            ptx, _ = cuda_compile_ptx(python_function(kernel), (t[::1],) * arity)
            assert ".target sm_90" in ptx and ".entry" in ptx


def cuda_compile_ptx(fn, sig):
    from numba import cuda

    return cuda.compile_ptx(fn, sig, cc=(9, 0))


@pytest.fixture
def no_gpu(monkeypatch):
    """The numba_cuda backend on a machine without a GPU (or the simulator), even on one with."""
    from tfjit.backends.numba_cuda import placement

    monkeypatch.setattr(placement, "gpu_available", lambda: False)
    previous = config.current.backend
    config.set_backend("numba_cuda")
    yield
    config.set_backend(previous)


def test_without_a_gpu_an_explicit_gpu_node_fails_naming_its_line(no_gpu):
    x = tf.placeholder(tf.float32, [3])
    with tf.device("/gpu:0"):
        y = tf.exp(x, name="on_gpu")  # the line the error names
    line = test_without_a_gpu_an_explicit_gpu_node_fails_naming_its_line.__code__.co_firstlineno + 3
    with tf.Session() as sess, pytest.raises(Exception, match=rf"operation on_gpu \(created at .*test_numba_cuda.py:{line}\)"
                                                              r".*GPU:0 but no such device.*numba.cuda.is_available"):
        sess.run(y, feed_dict={x: np.ones(3)})


def test_without_a_gpu_soft_placement_and_the_default_run_on_the_cpu(no_gpu, capsys):
    x = tf.placeholder(tf.float32, [3], name="x")
    with tf.device("/gpu:0"):
        y = tf.exp(x, name="on_gpu")
    z = tf.sqrt(y, name="default")
    soft = tf.ConfigProto(allow_soft_placement=True, log_device_placement=True)
    with tf.Session(config=soft) as sess:
        got = sess.run(z, feed_dict={x: [0.0, 1.0, 2.0]})
    np.testing.assert_allclose(got, np.exp([0.0, 0.5, 1.0]), rtol=1e-6)
    err = capsys.readouterr().err
    cpu = "/job:localhost/replica:0/task:0/device:CPU:0"
    assert f"on_gpu: (Exp): {cpu}" in err and f"default: (Sqrt): {cpu}" in err
    assert "placement fallback: on_gpu: /job:localhost/replica:0/task:0/device:GPU:0 -> " + cpu + " (no such device" in err


def test_other_backends_name_the_gpu_backend_when_asked_for_a_gpu():
    x = tf.placeholder(tf.float32, [3])
    with tf.device("/gpu:0"):
        y = tf.exp(x)
    with tf.Session() as sess, pytest.raises(Exception, match=r"no such device \(GPU devices need "
                                                              r"tfjit.config.set_backend\('numba_cuda'\)\)"):
        sess.run(y, feed_dict={x: np.ones(3)})


def test_gpu_placement_puts_what_has_a_cuda_kernel_on_the_gpu_and_says_why_the_rest_is_not():
    from tfjit.backends.numba_cuda.placement import GPU0, gpu_placement
    from tfjit.compat.device import CPU0
    from tfjit.debug import program_for

    x = tf.placeholder(tf.float32, [4, 3], name="x")
    w = tf.Variable(tf.ones([3, 2]), name="w")
    h = tf.matmul(x, w, name="mm")
    col = tf.reduce_sum(h, 0, name="colsum")  # a leading-axis sum: an any-axes reduction kernel
    y = tf.reduce_sum(tf.exp(h, name="e"), -1, name="rowsum")
    upd = w.assign_sub(tf.ones([3, 2]) * 0.1, name="upd")
    top = tf.argmax(h, 1, name="top")  # no CUDA kernel
    place = gpu_placement()
    placed = place(program_for([y, col, upd, top], {x: np.ones((4, 3))}, default_device=None))
    device = {n.name: n.device for n in placed.nodes}
    assert {device[k] for k in ("mm", "colsum", "e", "rowsum", "w", "upd")} == {GPU0}
    assert device["top"] == CPU0
    assert placed.params[0].node.device == GPU0
    copies = [n for n in placed.nodes if n.op == "device_copy"]
    assert ("mm", CPU0) in {(n.inputs[0].node.name, n.device) for n in copies}  # argmax reads the product on the CPU
    assert f"top: {GPU0} -> {CPU0} (no CUDA kernel for `argmax` on float32, int64)" in place.fallbacks
