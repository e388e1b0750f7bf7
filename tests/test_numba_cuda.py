"""The numba CUDA backend without a GPU: its kernels and whole programs run under numba's
CUDA simulator (a separate process: the simulator must be switched on before numba is
imported; the cases are in tests/cuda_sim_cases.py), every kernel it generates for those
programs compiles to PTX for sm_90, and asking for it with neither fails clearly."""
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
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.join(HERE, "cuda_sim_cases.py")],
                          cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True, timeout=300)
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
                kernel = kernel.variant(tuple(tuple(p.type.shape) for p in kernel.body.params))
            except NotImplementedError:  # a body one loop cannot hold: it runs node by node
                continue
        parts = kernel.parts() if hasattr(kernel, "parts") else [(kernel.kernel, kernel.dtypes)]
        for compiled, dtypes in parts:  # a conv is im2col + GEMM, a scatter-add zeroes first
            ptx = to_ptx(compiled, dtypes, cc=(9, 0))
            assert ".target sm_90" in ptx and ".entry" in ptx, node.name


def test_the_backend_without_a_gpu_or_the_simulator_fails_clearly():
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is present")
    x = tf.placeholder(tf.float32, [3])
    previous = config.current.backend
    config.set_backend("numba_cuda")
    try:
        with tf.Session() as sess, pytest.raises(tf.errors.FailedPreconditionError,
                                                 match="needs a CUDA GPU.*NUMBA_ENABLE_CUDASIM=1"):
            sess.run(tf.exp(x), feed_dict={x: np.ones(3)})
    finally:
        config.set_backend(previous)
