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
MLP's, an LSTM's) stay on NumPy's threads, where they run faster. They call the library's
CBLAS GEMM through ctypes rather than `scipy.linalg.blas`, whose import (all of scipy.linalg,
30-70 ms measured) was a tenth of a warm first call.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from typing import Any

import numpy as np

SMALL_GEMM_FLOPS = 8e6  # below this a product runs single-threaded (see the module docstring)

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values
_done = False
_gemm: dict[np.dtype, Any] = {}


def _openblas() -> ctypes.CDLL | None:
    """scipy's bundled OpenBLAS (32-bit integer interface), loaded without importing scipy."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = os.path.dirname(next(iter(spec.submodule_search_locations))) + os.sep + "scipy.libs"
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        if "64_" in os.path.basename(path):  # an ILP64 build: its integers are not C ints
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def single_threaded() -> None:
    """Set scipy's OpenBLAS to one thread and find its GEMMs (once; a no-op where it is not
    found, and then products go through NumPy)."""
    global _done
    if _done:
        return
    _done = True
    lib = _openblas()
    if lib is None:
        return
    for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
        setter = getattr(lib, name, None)
        if setter is not None:
            setter(ctypes.c_int(1))
            break
    for dtype, scalar, prefix in ((np.float32, ctypes.c_float, "s"), (np.float64, ctypes.c_double, "d")):
        for name in (f"scipy_cblas_{prefix}gemm", f"cblas_{prefix}gemm"):
            gemm = getattr(lib, name, None)
            if gemm is not None:
                i, p = ctypes.c_int, ctypes.c_void_p
                gemm.argtypes = [i, i, i, i, i, i, scalar, p, i, p, i, scalar, p, i]
                gemm.restype = None
                _gemm[np.dtype(dtype)] = gemm
                break


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out[...] = a @ b` (operands may be transposed views); small float 2-D products through
    scipy's single-threaded BLAS, the rest through NumPy's."""
    m, n = out.shape[-2:]
    flops = 2.0 * m * n * a.shape[-1] * (out.size // max(1, m * n))
    if out.ndim != 2 or flops >= SMALL_GEMM_FLOPS or out.dtype not in (np.float32, np.float64) \
            or not out.flags.c_contiguous or a.ndim != 2 or b.ndim != 2 or 0 in a.shape or 0 in b.shape \
            or a.dtype != out.dtype or b.dtype != out.dtype:
        return np.matmul(a, b, out=out)
    single_threaded()
    gemm = _gemm.get(out.dtype)
    if gemm is None:
        return np.matmul(a, b, out=out)
    x, tx, ldx = _row_major(a)
    y, ty, ldy = _row_major(b)
    gemm(_ROW_MAJOR, tx, ty, m, n, a.shape[1], 1.0, x.ctypes.data, ldx, y.ctypes.data, ldy,
         0.0, out.ctypes.data, max(1, n))
    return out


def _row_major(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """`x` as row-major CBLAS reads it without a copy: (x, no-trans, row length) when
    C-ordered, (x, trans, column length) when Fortran-ordered (a transposed view); a C copy
    otherwise."""
    if not x.flags.c_contiguous and x.flags.f_contiguous:
        return x, _TRANS, max(1, x.shape[0])
    x = np.ascontiguousarray(x)
    return x, _NO_TRANS, max(1, x.shape[1])
