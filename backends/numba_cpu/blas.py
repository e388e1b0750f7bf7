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
import glob
import os

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
