"""A BLAS GEMM callable from inside numba kernels: `matmul(a, b, c, beta)`.

numba's own `np.dot` costs 0.5-1 s of compile time per kernel that types it (most of a cold
CNN step's 10 s went to three convolution kernels) and can neither accumulate into its output
(`beta`) nor write a strided block. This calls the CBLAS `?gemm` of scipy's bundled OpenBLAS
(the library `np.dot` uses, set single-threaded by `blas.single_threaded`: kernels thread over
blocks themselves) through symbols registered with LLVM, so kernels calling it stay cacheable.
The library is found without importing scipy.linalg (0.18 s of a first call, measured).

`matmul(..., threaded=True)` calls NumPy's multi-threaded OpenBLAS instead (`blas` chooses
when, by measurement): an RNN cell's kernel runs its product and its gate math in one call,
without the Python of a ctypes call in between.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numpy as np
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
# sizes are C ints (NumPy's library: sizes are 64-bit), pointers are passed as intp, alpha and
# beta in the matrix's precision.
_i, _l, _p = types.int32, types.int64, types.intp


def _signature(size, real):  # type: ignore[no-untyped-def]
    return types.void(_i, _i, _i, size, size, size, real, _p, size, _p, size, real, _p, size)


def _forwarding(char: str):  # type: ignore[no-untyped-def]
    """A C callback with NumPy's `cblas_?gemm64_` signature calling scipy's library: where NumPy's
    OpenBLAS is not found (another BLAS build), so the threaded symbol still links; `blas`
    then never picks the threaded way."""
    real = ctypes.c_float if char == "f" else ctypes.c_double
    enum, size, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    single = blas.cblas_gemm(char)
    return ctypes.CFUNCTYPE(None, enum, enum, enum, size, size, size, real, ptr, size, ptr, size, real, ptr, size)(
        lambda *args: single(*args))


_KEEP = []  # the forwarding callbacks, alive as long as the symbols point at them
for _char, _symbol in (("f", "tfjit_sgemm_threaded"), ("d", "tfjit_dgemm_threaded")):
    _function = blas._numpy_gemm(_char)
    if _function is None:
        _function = _forwarding(_char)
        _KEEP.append(_function)
    llvm.add_symbol(_symbol, ctypes.cast(_function, ctypes.c_void_p).value)
THREADED = all(blas._numpy_gemm(c) is not None for c in "fd")  # NumPy's threaded library was found

_sgemm = types.ExternalFunction("tfjit_sgemm", _signature(_i, types.float32))
_dgemm = types.ExternalFunction("tfjit_dgemm", _signature(_i, types.float64))
_sgemm_threaded = types.ExternalFunction("tfjit_sgemm_threaded", _signature(_l, types.float32))
_dgemm_threaded = types.ExternalFunction("tfjit_dgemm_threaded", _signature(_l, types.float64))
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
def matmul(a, b, c, beta, threaded=False):
    """c = a @ b + beta * c for float32/float64 2-D arrays, each with a unit stride along one
    axis (c along its rows); on NumPy's multi-threaded OpenBLAS where `threaded`, else on
    scipy's single-threaded one; returns nothing."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[i, j] = c[i, j] * beta if beta != 0 else 0
    elif m > 0 and n > 0:
        ta, lda = _operand(a)
        tb, ldb = _operand(b)
        ldc = max(c.strides[0] // c.itemsize, n)
        _gemm(c.itemsize == 4, threaded, ta, tb, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb, float(beta),
              c.ctypes.data, ldc)


@njit(nogil=True)
def _gemm(single, threaded, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """The CBLAS call, all arguments scalars (one compile serves every caller)."""
    if threaded and single:
        _sgemm_threaded(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    elif threaded:
        _dgemm_threaded(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    elif single:
        _sgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


@njit(nogil=True)
def zero_product(a, b):
    """Whether a @ b is all +0 without computing it: `a` all zeros (checked up to its first
    other element, so at once for most operands) and `b` free of inf and NaN (0 * inf is NaN).
    An RNN's first step multiplies its zero initial state by the recurrent weight: one
    scan of the weight instead of a product (an LSTM cell: 69 us against 251, measured)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if a[i, j] != 0:
                return False
    if b.shape[1] <= 1 or b.strides[1] == b.itemsize:
        for i in range(b.shape[0]):
            if not _finite(b[i, :]):
                return False
    else:  # a transposed view: along its columns
        for j in range(b.shape[1]):
            if not _finite(b[:, j]):
                return False
    return True


@njit(nogil=True, fastmath={"reassoc"})
def _finite(x):
    """Whether a 1-D array holds no inf or NaN: a sum of x * 0 (NaN for those), which
    vectorises where a test per element with an early out did not (30 us against 160 for
    256x1024, measured)."""
    zero = x.dtype.type(0)  # not the literal 0: numba would promote float32 products to float64
    total = zero
    for i in range(x.shape[0]):
        total += x[i] * zero
    return total == zero
