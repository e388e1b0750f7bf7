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
    axis (c along its rows); returns nothing."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[i, j] = c[i, j] * beta if beta != 0 else 0
    elif m > 0 and n > 0:
        # Row-major c = a @ b is column-major c^T = b^T @ a^T: BLAS gets b first.
        tb, ldb = _operand(b)
        ta, lda = _operand(a)
        ldc = max(c.strides[0] // c.itemsize, n)
        _gemm(c.itemsize == 4, tb, ta, n, m, k, b.ctypes.data, ldb, a.ctypes.data, lda, float(beta),
              c.ctypes.data, ldc)


@njit(nogil=True)
def _gemm(single, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """The Fortran call, all arguments scalars (one compile serves every caller)."""
    ints = np.empty(8, np.int32)
    ints[0] = ta
    ints[1] = tb
    ints[2] = m
    ints[3] = n
    ints[4] = k
    ints[5] = lda
    ints[6] = ldb
    ints[7] = ldc
    f32 = np.empty(2, np.float32)
    f64 = np.empty(2, np.float64)
    f32[0] = f64[0] = 1.0
    f32[1] = f64[1] = beta
    i = ints.ctypes.data
    if single:
        s, step = f32.ctypes.data, 4
        _sgemm(i, i + 4, i + 8, i + 12, i + 16, s, a, i + 20, b, i + 24, s + step, c, i + 28)
    else:
        s, step = f64.ctypes.data, 8
        _dgemm(i, i + 4, i + 8, i + 12, i + 16, s, a, i + 20, b, i + 24, s + step, c, i + 28)
    ints[0] += f32[0] + f64[0]  # keeps the argument arrays alive until BLAS has read them
