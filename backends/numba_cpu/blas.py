"""Matrix products: scipy's BLAS on the calling thread, or NumPy's threaded BLAS.

numba's `np.dot` calls scipy's bundled OpenBLAS. Left multi-threaded, OpenBLAS splits every
GEMM across its threads and waits for all of them; on the 2-core machines here, with other
processes running, a descheduled helper thread makes each call wait a scheduler slice, and
the helper threads spin after each product on the core the next kernel wants: one 512x288x32
GEMM took 24 ms against 0.1 ms single-threaded, and an unrolled LSTM step's 64x256x1024
product through NumPy's threaded BLAS took a median 6.8 ms against 0.42 ms on one thread
(measured under load; `tfjit bench` lstm_forward: 370 ms threaded, 73 ms with one BLAS
thread, JAX 101 ms in the same run). So scipy's OpenBLAS runs single-threaded, conv kernels
parallelise over blocks themselves, and `matmul_into` runs 2-D float products as follows:

- below SMALL_GEMM_FLOPS, one single-threaded BLAS call on the calling thread;
- above it, NumPy's threaded BLAS while it runs steadily, the fastest on an idle machine
  (lstm_forward 31 ms against 51 ms on one thread); once its runs stall, every large
  product runs single-threaded, the fastest while other processes hold a core (51 ms
  against 73-94 ms, and 130 ms against 1030 ms threaded under heavier load; two threads
  sharing blocks of a product measured no faster than one there, and noisier). A threaded
  run is tried again now and then, and the threads serve again once it wins (`_Timings`).

Operands are read where they lie (a transposed view is a BLAS transpose flag) through
ctypes' CBLAS calls, which release the GIL. Products this does not cover (batched, integer
or half, empty, operands BLAS cannot stride through) go to NumPy's matmul. This touches
scipy's OpenBLAS only (NumPy's, used by the reference backend and by user code, is a
separate library).
"""
from __future__ import annotations

import ctypes
import glob
import os
import time
from typing import Any

import numpy as np

SMALL_GEMM_FLOPS = 8e6   # below this a product is one single-threaded call
PROBE_SECONDS = 0.5      # when NumPy's threads are first tried again after a stall
MAX_PROBE_SECONDS = 8.0
RECENT = 5               # run times kept per shape and way (their medians compare)
FIRST = 2                # runs of a way before its median counts
STALL = 2.0              # threaded runs this much slower than their fastest: the cores are busy
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_MAX_INT = 2 ** 31 - 1   # CBLAS takes C ints

_done = False
_gemm: dict[np.dtype, Any] = {}


def single_threaded() -> None:
    """Set scipy's OpenBLAS to one thread and find its CBLAS GEMMs (once; where scipy's
    OpenBLAS is not found, products stay on NumPy)."""
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
            lib = ctypes.CDLL(path)  # CDLL, not PyDLL: calls release the GIL
        except OSError:
            continue
        setter = _symbol(lib, "scipy_openblas_set_num_threads", "openblas_set_num_threads")
        if setter is None:
            continue
        setter(ctypes.c_int(1))
        for dtype, name, scalar in ((np.float32, "sgemm", ctypes.c_float), (np.float64, "dgemm", ctypes.c_double)):
            gemm = _symbol(lib, f"scipy_cblas_{name}", f"cblas_{name}")
            if gemm is not None:
                i, p = ctypes.c_int, ctypes.c_void_p
                gemm.argtypes = [i, i, i, i, i, i, scalar, p, i, p, i, scalar, p, i]
                gemm.restype = None
                _gemm[np.dtype(dtype)] = gemm
        return


def _symbol(lib: ctypes.CDLL, *names: str) -> Any:
    for name in names:
        found = getattr(lib, name, None)
        if found is not None:
            return found
    return None


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out[...] = a @ b` (operands may be transposed views): 2-D float products through
    scipy's single-threaded BLAS or, when large and faster lately, NumPy's threaded BLAS
    (see the module docstring); the rest through NumPy."""
    single_threaded()
    gemm = _gemm.get(out.dtype)
    if gemm is None or not _fits(a, b, out):
        return np.matmul(a, b, out=out)
    a, b = _readable(a), _readable(b)
    m, n = out.shape
    flops = 2.0 * m * n * a.shape[1]
    if flops < SMALL_GEMM_FLOPS:
        _call(gemm, a, b, out)
        return out
    key = (m, n, a.shape[1], out.dtype.char)
    timings = _TIMINGS.get(key)
    if timings is None:
        timings = _TIMINGS[key] = _Timings()
    start = time.perf_counter()
    way = timings.choose(start)
    if way == THREADED:
        np.matmul(a, b, out=out)
    else:
        _call(gemm, a, b, out)
    timings.record(way, time.perf_counter() - start)
    return out


SINGLE, THREADED = 0, 1


class _Timings:
    """Recent run times of one product shape by each way (SINGLE, THREADED).

    One way serves every shape at a time (`_MODE`): NumPy's threads, once woken, spin on the
    cores the single-threaded calls and the other kernels need, so mixing the ways per shape
    measured slower than either. NumPy's threads serve first; when the runs of some shape
    stall (the median of its recent ones over STALL times its fastest) every shape turns to
    the single-threaded way. Then now and then, after a wait that starts at PROBE_SECONDS
    and doubles (up to MAX_PROBE_SECONDS) each time it loses, one product runs threaded
    again, and when it beats its shape's single-threaded median, NumPy's threads serve again.
    A way's first run for a shape does not count (it wakes threads, faults in memory)."""

    def __init__(self) -> None:
        self.times: tuple[list[float], list[float]] = ([], [])
        self.runs = [0, 0]
        self.fastest = float("inf")  # of the threaded runs

    def choose(self, now: float) -> int:
        if _MODE.way == THREADED:
            threaded = self.times[THREADED]
            if len(threaded) >= FIRST and _median(threaded) > STALL * self.fastest:
                _MODE.switch(SINGLE, now)
        elif len(self.times[SINGLE]) >= FIRST and now - _MODE.since >= _MODE.wait:
            _MODE.since = now
            return THREADED  # a probe
        return _MODE.way

    def record(self, way: int, seconds: float) -> None:
        self.runs[way] += 1
        if self.runs[way] == 1:
            return
        if way == THREADED and _MODE.way == SINGLE:  # a probe's result
            if seconds < _median(self.times[SINGLE]):
                _MODE.switch(THREADED, 0.0)
            else:
                _MODE.wait = min(2 * _MODE.wait, MAX_PROBE_SECONDS)
                return
        times = self.times[way]
        times.append(seconds)
        del times[:-RECENT]
        if way == THREADED:
            self.fastest = min(self.fastest, seconds)


class _Mode:
    """The way serving every large product now, and the probing clock."""

    def __init__(self) -> None:
        self.way = THREADED
        self.since = 0.0
        self.wait = PROBE_SECONDS

    def switch(self, way: int, now: float) -> None:
        self.way, self.since, self.wait = way, now, PROBE_SECONDS
        if way == THREADED:  # stalls seen before the cores came free must not count
            for timings in list(_TIMINGS.values()):
                timings.times[THREADED].clear()


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


_TIMINGS: dict[tuple[int, int, int, str], _Timings] = {}
_MODE = _Mode()


def _fits(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether this module's BLAS calls cover `out[...] = a @ b` (shapes are checked here:
    BLAS itself would read out of bounds)."""
    return (out.ndim == a.ndim == b.ndim == 2 and a.dtype == b.dtype == out.dtype
            and a.shape[1] == b.shape[0] and out.shape == (a.shape[0], b.shape[1])
            and 0 not in a.shape and 0 not in b.shape and out.flags.writeable
            and (_layout(out) or (None,))[0] == _NO_TRANS)


def _layout(x: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) reading the 2-D `x` in place as a row-major CBLAS
    operand, or None where BLAS cannot stride through it."""
    rows, cols = x.shape
    s0, s1 = x.strides
    item = x.itemsize
    if not x.flags.aligned or s0 % item or s1 % item or max(abs(s0), abs(s1)) // item >= _MAX_INT:
        return None
    if s1 == item and (rows == 1 or s0 >= cols * item):
        return _NO_TRANS, s0 // item if rows > 1 else max(1, cols)
    if s0 == item and (cols == 1 or s1 >= rows * item):
        return _TRANS, s1 // item if cols > 1 else max(1, rows)
    return None


def _readable(x: np.ndarray) -> np.ndarray:
    return x if _layout(x) is not None else np.ascontiguousarray(x)


def _call(gemm: Any, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    (ta, lda), (tb, ldb), (_, ldc) = _layout(a), _layout(b), _layout(out)  # type: ignore[misc]
    m, k = a.shape
    gemm(_ROW_MAJOR, ta, tb, m, b.shape[1], k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
         out.ctypes.data, ldc)
