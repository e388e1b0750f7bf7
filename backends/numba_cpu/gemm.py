"""A BLAS GEMM callable from inside numba kernels: `matmul(a, b, c, beta)`.

numba's own `np.dot` costs 0.5-1 s of compile time per kernel that types it (most of a cold
CNN step's 10 s went to three convolution kernels) and can neither accumulate into its output
(`beta`) nor write a strided block. This calls the CBLAS `?gemm` of scipy's bundled OpenBLAS
(the library `np.dot` uses, set single-threaded by `blas.single_threaded`: kernels thread over
blocks themselves) through symbols registered with LLVM, so kernels calling it stay cacheable.
The library is found without importing scipy.linalg (0.18 s of a first call, measured).
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from numba import njit, types

from . import blas

blas.single_threaded()
for _char, _symbol in (("f", "tfjit_sgemm"), ("d", "tfjit_dgemm")):
    _function = blas.cblas_gemm(_char)
    if _function is None:
        raise ImportError("tfjit's convolution kernels need scipy's bundled OpenBLAS (cblas_?gemm), "
                          "which was not found: reinstall scipy from its wheels")
    llvm.add_symbol(_symbol, ctypes.cast(_function, ctypes.c_void_p).value)

# cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): enums and
# sizes are C ints, pointers are passed as intp, alpha and beta in the matrix's precision.
_i, _p = types.int32, types.intp
_sgemm = types.ExternalFunction("tfjit_sgemm", types.void(_i, _i, _i, _i, _i, _i, types.float32, _p, _i, _p, _i,
                                                          types.float32, _p, _i))
_dgemm = types.ExternalFunction("tfjit_dgemm", types.void(_i, _i, _i, _i, _i, _i, types.float64, _p, _i, _p, _i,
                                                          types.float64, _p, _i))
_ROW_MAJOR, _N, _T = 101, 111, 112  # CblasRowMajor, CblasNoTrans, CblasTrans


@njit(nogil=True)
def _operand(x):
    """(transpose flag, leading dimension) of a 2-D operand for row-major CBLAS: a row-major
    view as is (NoTrans), a transposed one (Trans)."""
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
        ta, lda = _operand(a)
        tb, ldb = _operand(b)
        ldc = max(c.strides[0] // c.itemsize, n)
        _gemm(c.itemsize == 4, ta, tb, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb, float(beta),
              c.ctypes.data, ldc)


@njit(nogil=True)
def _gemm(single, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """The CBLAS call, all arguments scalars (one compile serves every caller)."""
    if single:
        _sgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
