"""The BLAS behind numba's `np.dot`, run single-threaded.

numba's `np.dot` calls scipy's bundled OpenBLAS. Left multi-threaded, OpenBLAS splits every
GEMM of a few hundred rows across its threads; on the 2-core machines here, with other
processes running, one such 512x288x32 GEMM took 24 ms against 0.1 ms single-threaded
(measured), because each call waits for a descheduled helper thread. Kernels calling
`np.dot` on cache-sized blocks therefore run it single-threaded and parallelise over blocks
themselves. This touches scipy's OpenBLAS only (NumPy's, used by the reference backend, is a
separate library).

Small products go the same way (`matmul_into`): a GEMM of a few MFLOP through NumPy's
multi-threaded OpenBLAS wakes its worker threads, which then spin on the second core while the
next kernel (a parallel conv, say) wants it. In the CNN step three small dense-layer products
cost 30 ms this way (73 -> 43 ms with them single-threaded, measured); large products (an
MLP's, an LSTM's) stay on NumPy's threads, where they run faster.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np

SMALL_GEMM_FLOPS = 8e6  # below this a product runs single-threaded (see the module docstring)

_done = False


def single_threaded() -> None:
    """Set scipy's OpenBLAS to one thread (once; a no-op where it is not found)."""
    global _done
    if _done:
        return
    _done = True
    try:
        import scipy
    except ImportError:
        return
    for path in sorted(glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(1))
                return


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out[...] = a @ b` (operands may be transposed views); small float 2-D products through
    scipy's single-threaded BLAS, the rest through NumPy's."""
    m, n = out.shape[-2:]
    flops = 2.0 * m * n * a.shape[-1] * (out.size // max(1, m * n))
    if out.ndim != 2 or flops >= SMALL_GEMM_FLOPS or out.dtype not in (np.float32, np.float64) \
            or not out.flags.c_contiguous or 0 in a.shape or 0 in b.shape:
        return np.matmul(a, b, out=out)
    single_threaded()
    from scipy.linalg.blas import dgemm, sgemm

    gemm = sgemm if out.dtype == np.float32 else dgemm
    x, tx = _fortran(b.T)  # out.T (Fortran order, as BLAS writes) = b.T @ a.T
    y, ty = _fortran(a.T)
    written = gemm(1.0, x, y, trans_a=tx, trans_b=ty, c=out.T, overwrite_c=1, beta=0.0)
    if not np.shares_memory(written, out):
        np.copyto(out.T, written)
    return out


def _fortran(x: np.ndarray) -> tuple[np.ndarray, int]:
    """`x` as BLAS reads it without a copy: (x, 0) when Fortran-ordered, (x.T, 1) when
    C-ordered; a Fortran copy otherwise."""
    if x.flags.f_contiguous:
        return x, 0
    if x.flags.c_contiguous:
        return x.T, 1
    return np.asfortranarray(x), 0


def add_product_into(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float) -> None:
    """`c += alpha * (a @ b)` for a C-contiguous float32/float64 matrix `c` (the operands may
    be transposed views): one GEMM with beta = 1, single-threaded when small, on NumPy's
    threaded OpenBLAS otherwise; where that is not found, the product goes to a scratch
    buffer and is scaled and added by NumPy (the same rounding as the reference's
    `c - lr * product`)."""
    m, n = c.shape
    flops = 2.0 * m * n * a.shape[1]
    if flops < SMALL_GEMM_FLOPS:
        single_threaded()
        from scipy.linalg.blas import dgemm, sgemm

        x, tx = _fortran(b.T)  # c.T (Fortran order, as BLAS writes) += alpha b.T @ a.T
        y, ty = _fortran(a.T)
        written = (sgemm if c.dtype == np.float32 else dgemm)(
            alpha, x, y, trans_a=tx, trans_b=ty, c=c.T, overwrite_c=1, beta=1.0)
        if not np.shares_memory(written, c):
            np.copyto(c.T, written)
    elif (gemm := _cblas_gemm(c.dtype.name)) is not None:
        (ta, lda, a), (tb, ldb, b) = _row_major(a), _row_major(b)
        gemm(_ROW_MAJOR, ta, tb, m, n, a.shape[1], alpha, a.ctypes.data, lda, b.ctypes.data, ldb, 1.0,
             c.ctypes.data, c.strides[0] // c.itemsize)
    else:
        from .buffers import POOL

        product = matmul_into(a, b, POOL.empty(c.shape, c.dtype))
        np.multiply(product, c.dtype.type(alpha), out=product)
        np.add(c, product, out=c)


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _row_major(x: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(transpose flag, leading dimension, array) describing `x` to row-major CBLAS without a
    copy where its strides allow."""
    rows, cols = x.shape
    item = x.itemsize
    if x.strides[1] == item and x.strides[0] >= max(1, cols) * item and rows > 1:
        return _NO_TRANS, x.strides[0] // item, x
    if x.strides[0] == item and x.strides[1] >= max(1, rows) * item and cols > 1:
        return _TRANS, x.strides[1] // item, x
    x = np.ascontiguousarray(x)
    return _NO_TRANS, max(1, cols), x


@functools.cache
def _cblas_gemm(dtype: str) -> Any:
    """NumPy's OpenBLAS `cblas_?gemm` (64-bit integers, as NumPy's wheels build it), or None."""
    letter = {"float32": "s", "float64": "d"}[dtype]
    real = ctypes.c_float if letter == "s" else ctypes.c_double
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for path in sorted(glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_"):
            gemm = getattr(lib, name, None)
            if gemm is not None:
                gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real, ptr, i64,
                                 ptr, i64, real, ptr, i64]
                gemm.restype = None
                return gemm
    return None
