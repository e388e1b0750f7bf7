"""The BLAS behind numba's `np.dot`, run single-threaded.

numba's `np.dot` calls scipy's bundled OpenBLAS. Left multi-threaded, OpenBLAS splits every
GEMM of a few hundred rows across its threads; on the 2-core machines here, with other
processes running, one such 512x288x32 GEMM took 24 ms against 0.1 ms single-threaded
(measured), because each call waits for a descheduled helper thread. Kernels calling
`np.dot` on cache-sized blocks therefore run it single-threaded and parallelise over blocks
themselves. This touches scipy's OpenBLAS only (NumPy's, used by the reference backend, is a
separate library).
"""
from __future__ import annotations

import ctypes
import glob
import os

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
