"""A BLAS GEMM callable from inside numba kernels: `matmul(a, b, c, beta)`.

numba's own `np.dot` costs 0.5-1 s of compile time per kernel that types it (most of a cold
CNN step's 10 s went to three convolution kernels) and can neither accumulate into its output
(`beta`) nor write a strided block. This calls scipy's `sgemm`/`dgemm` (the OpenBLAS that
`np.dot` uses, set single-threaded by `blas.single_threaded`: kernels thread over blocks
themselves) through symbols registered with LLVM, so kernels calling it stay cacheable.
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address

from . import blas

blas.single_threaded()
for _name in ("sgemm", "dgemm"):
    llvm.add_symbol(f"tfjit_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name))

# Fortran BLAS takes every argument by address; addresses are passed as intp (the x86-64 and
# AArch64 ABIs pass both in the same integer registers).
_SIGNATURE = types.void(*([types.intp] * 13))
_sgemm = types.ExternalFunction("tfjit_sgemm", _SIGNATURE)
_dgemm = types.ExternalFunction("tfjit_dgemm", _SIGNATURE)
_N, _T = 78, 84  # 'N', 'T'


@njit(nogil=True)
def _operand(x):
    """(transpose flag, leading dimension) of a row-major 2-D operand as column-major BLAS
    sees it: a row-major view as is ('N'), a transposed one ('T')."""
    size = x.itemsize
    if x.shape[1] <= 1 or x.strides[1] == size:
        return _N, max(x.strides[0] // size, x.shape[1], 1)
    return _T, max(x.strides[1] // size, x.shape[0], 1)


@njit(nogil=True)
def matmul(a, b, c, beta):
    """c = a @ b + beta * c for float32/float64 2-D arrays, each with a unit stride along one
    axis (c along its rows); returns c."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m == 0 or n == 0:
        return c
    if k == 0:
        if beta == 0:
            c[:] = 0
        else:
            c[:] *= beta
        return c
    # Row-major c = a @ b is column-major c^T = b^T @ a^T: BLAS gets b first.
    tb, ldb = _operand(b)
    ta, lda = _operand(a)
    ints = np.empty(8, np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4] = tb, ta, n, m, k
    ints[5], ints[6], ints[7] = ldb, lda, max(c.strides[0] // c.itemsize, n)
    scalars = np.empty(2, c.dtype)
    scalars[0], scalars[1] = 1, beta
    i, s = ints.ctypes.data, scalars.ctypes.data
    step = scalars.itemsize
    if c.itemsize == 4:
        _sgemm(i, i + 4, i + 8, i + 12, i + 16, s, b.ctypes.data, i + 20, a.ctypes.data, i + 24, s + step,
               c.ctypes.data, i + 28)
    else:
        _dgemm(i, i + 4, i + 8, i + 12, i + 16, s, b.ctypes.data, i + 20, a.ctypes.data, i + 24, s + step,
               c.ctypes.data, i + 28)
    ints[0] += 0  # keeps `ints` and `scalars` alive until BLAS has read them
    scalars[0] += 0
    return c
