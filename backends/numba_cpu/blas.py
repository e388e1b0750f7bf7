"""The BLAS behind the backend's products: scipy's OpenBLAS one thread per call, or NumPy's threaded.

numba's `np.dot` calls scipy's bundled OpenBLAS. Left multi-threaded, OpenBLAS splits every
GEMM of a few hundred rows across its threads; on the 2-core machines here, with other
processes running, one such 512x288x32 GEMM took 24 ms against 0.1 ms single-threaded
(measured), because each call waits for a descheduled helper thread. Kernels calling
`np.dot` on cache-sized blocks therefore run it single-threaded and parallelise over blocks
themselves. This touches scipy's OpenBLAS only (NumPy's, used by the reference backend, is a
separate library).

The products the backend runs itself (`matmul_into`, `add_product_into`) call CBLAS `?gemm`
through ctypes (which releases the GIL). A tiny product is NumPy's `np.dot`: its OpenBLAS
runs such sizes on one thread, and the call costs 0.5 us of Python against 7.4 us through
ctypes (a 2x2 product, measured). A small product is one call on scipy's library. A large
one runs one of two ways, whichever its measured times favour (`_Chooser`): NumPy's
multi-threaded OpenBLAS, one call; or blocks of rows or columns that the calling thread and
a helper thread per further core take in turn from a shared counter, each a single-threaded
call on scipy's library (`_BlockPool`). NumPy's OpenBLAS splits the work in fixed halves and
waits for both: on an idle machine it is the fastest (the MLP step's 784x256x512 product in
1.0 ms against 2.0 ms on one thread), but with other processes on the machine that product
took 17-45 ms through it (median) and 2.4 ms on one thread, because each call waits for a
descheduled worker. The blocks cost a little more on an idle machine (each re-packs an
operand) but never wait for work that a descheduled thread has not started.

NumPy's OpenBLAS threads spin for a long while after each call (~2^28 cycles, its
THREAD_TIMEOUT), taking half a core from any other thread there: an RNN layer run by
numba's threads (recurrence.py) took 373 us a step right after a threaded product against
203 us. A step holding such a layer runs its products in blocks (`blocks_only`).

alpha and beta are exposed, so a gradient-descent update `W -= lr * x^T g` is one GEMM with
alpha = -lr and beta = 1 writing into `W` (`add_product_into`): no product buffer and no
second pass over the weights.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import importlib.util
import itertools
import math
import os
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

SMALL_GEMM_FLOPS = 8e6  # below this a product is one single-threaded call
# Below both of these a product is `np.dot`: OpenBLAS's own limits for running a product on
# one thread (interface/gemm.c: m*n*k <= 65536 * 4; gemv.c, which NumPy calls when a result
# dim is 1: m*n < 2304 * 4), so no tiny product waits for a descheduled BLAS thread.
TINY_MULADDS = 65536 * 4
TINY_ELEMENTS = 2304 * 4
# A large product's blocks: about this big (0.25 ms on one core), at most MAX_ROUNDS per thread,
# and a multiple of the thread count (so that on an idle machine every thread does as much).
# Each block re-packs one operand: cut in 2/4/8/16 blocks run in turn, the MLP's 784x256x512
# product took 2.1/2.2/2.3/2.5 ms against 2.0 ms whole (measured); with other processes
# running, 2, 4 or 8 blocks per step measured alike.
BLOCK_FLOPS = 25e6
MAX_ROUNDS = 2
_ALIGN = 16             # block edges on multiples of 16 rows or columns (whole vectors)

_done = False


_MODE = threading.local()


@contextlib.contextmanager
def blocks_only() -> Iterator[None]:
    """Large products in this thread run in blocks, never on NumPy's threaded OpenBLAS (whose
    threads would then spin through what follows; see the module docstring)."""
    before = getattr(_MODE, "blocks", False)
    _MODE.blocks = True
    try:
        yield
    finally:
        _MODE.blocks = before


def _threads_allowed() -> bool:
    return not getattr(_MODE, "blocks", False)


def single_threaded() -> None:
    """Set scipy's OpenBLAS to one thread (once; a no-op where it is not found)."""
    global _done
    if _done:
        return
    _done = True
    lib = _scipy_openblas()
    for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
        setter = getattr(lib, name, None) if lib is not None else None
        if setter is not None:
            setter(ctypes.c_int(1))
            return


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out[...] = a @ b` (operands may be transposed views)."""
    if _tiny(a, b, out):
        np.dot(a, b, out=out)  # for 2-D operands the same product as np.matmul
    elif not _gemm(a, b, out, 1.0, 0.0):
        np.matmul(a, b, out=out)
    return out


def add_product_into(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float) -> None:
    """`c += alpha * (a @ b)` for a C-contiguous float32/float64 matrix `c` (the operands may
    be transposed views), as one GEMM with beta = 1; for a tiny product, or where scipy's
    CBLAS is not found, the product goes to a scratch buffer and NumPy scales and adds it (the
    reference's rounding of `c - lr * product`)."""
    if not _tiny(a, b, c) and _gemm(a, b, c, alpha, 1.0):
        return
    from .buffers import POOL

    product = np.matmul(a, b, out=POOL.empty(c.shape, c.dtype))
    np.multiply(product, c.dtype.type(alpha), out=product)
    np.add(c, product, out=c)


def _tiny(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether `out = a @ b` is a tiny 2-D product for `np.dot` (see TINY_MULADDS)."""
    return a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] <= TINY_MULADDS \
        and a.size < TINY_ELEMENTS and b.size < TINY_ELEMENTS and out.flags.c_contiguous \
        and a.dtype == out.dtype and b.dtype == out.dtype


class Product:
    """`out[...] = a @ b`, or `out += a @ b`, for one 2-D float32/float64 product shape called
    again and again (an RNN cell's state times its weights, 64 times in the LSTM step): what
    `matmul_into` works out per call (the size class, the BLAS libraries, the shape's
    chooser) worked out once. `transpose`: each operand arrives untransposed (the matmul's
    attrs) and is used transposed. A large product of C-contiguous arrays runs the chosen way
    directly; anything else goes through `matmul_into` or `add_product_into`. Inf * 0 is NaN
    silently, as in TF."""

    def __init__(self, m: int, k: int, n: int, dtype: np.dtype, transpose: tuple[bool, bool] = (False, False)):
        char = np.dtype(dtype).char
        self.m, self.k, self.n = m, k, n
        self.transpose = transpose
        large = char in "fd" and 2.0 * m * n * k >= SMALL_GEMM_FLOPS and max(m * k, k * n, m * n) < 2 ** 31 \
            and _POOL.helpers > 0 and cblas_gemm(char) is not None and _numpy_gemm(char) is not None
        self._threaded = _numpy_gemm(char) if large else None
        self._chooser = _chooser_of((m, n, k, _NO_TRANS, _NO_TRANS, char)) if large else None

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
        """The product into `out`, or added to it (`accumulate`: BLAS's beta = 1). A zero `a`
        (an RNN's first state) times a finite `b` is a product of +0s, BLAS's sum of zero
        terms, without BLAS: the LSTM step's first cells take ~50 us instead of ~250 (the
        checks: the first element, then `any`; max and min, which NaN and inf show in).
        Other products pay ~0.1 us for the first element."""
        chooser = self._chooser
        with np.errstate(all="ignore"):
            if a.item(0) == 0 and not a.any() and math.isfinite(b.max()) and math.isfinite(b.min()):
                if accumulate:
                    np.add(out, out.dtype.type(0), out=out)  # -0 + +0 is +0, as BLAS adds it
                else:
                    out.fill(0)
                return out
            if self.transpose[0]:
                a = a.T
            if self.transpose[1]:
                b = b.T
            if chooser is None or not (a.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous) \
                    or not _threads_allowed():
                if accumulate:
                    add_product_into(out, a, b, 1.0)
                else:
                    matmul_into(a, b, out)
                return out
            way = chooser.pick()
            if way != "threaded":
                _gemm(a, b, out, 1.0, 1.0 if accumulate else 0.0, way)
                return out
            start = time.perf_counter()
            if accumulate:  # NumPy's threaded CBLAS, as the threaded way is
                self._threaded(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, self.m, self.n, self.k, 1.0, a.ctypes.data, self.k,
                               b.ctypes.data, self.n, 1.0, out.ctypes.data, self.n)
            else:
                np.matmul(a, b, out=out)
        chooser.record(way, time.perf_counter() - start)
        return out


def _gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float, beta: float, way: str | None = None) -> bool:
    """`c = alpha a @ b + beta c` through CBLAS for 2-D float products with a C-contiguous
    `c`; False (nothing done) for anything else. `way`: the one the shape's chooser picked
    already, else it picks."""
    if c.ndim != 2 or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] \
            or c.shape != (a.shape[0], b.shape[1]) or c.dtype not in (np.float32, np.float64) or a.dtype != c.dtype \
            or b.dtype != c.dtype or not c.flags.c_contiguous or 0 in a.shape or 0 in b.shape or c.size == 0 \
            or max(a.size, b.size, c.size) >= 2 ** 31:  # CBLAS takes 32-bit sizes here
        return False
    gemm = cblas_gemm(c.dtype.char)
    if gemm is None:
        return False
    single_threaded()
    m, n = c.shape
    k = a.shape[1]
    (ta, lda, a), (tb, ldb, b) = _row_major(a), _row_major(b)
    flops = 2.0 * m * n * k
    threaded = _numpy_gemm(c.dtype.char) if flops >= SMALL_GEMM_FLOPS and _POOL.helpers else None
    chooser = _chooser_of((m, n, k, ta, tb, c.dtype.char)) if threaded and _threads_allowed() else None
    if chooser is None:
        way = "blocks"
    elif way is None:
        way = chooser.pick()
    if way == "blocks" and flops >= SMALL_GEMM_FLOPS:
        _POOL.start()  # not timed: starting the threads would count against the blocks' first run
    start = time.perf_counter()
    if way == "threaded" and alpha == 1.0 and beta == 0.0:
        np.matmul(a, b, out=c)  # the same threaded call, less Python around it (np.dot copies strided operands)
    else:
        item = c.itemsize
        pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
        ldc = c.strides[0] // item if m > 1 else n

        def block(i0: int, i1: int, j0: int, j1: int) -> None:
            """Rows i0:i1 and columns j0:j1 of c."""
            a0 = pa + (i0 * lda if ta == _NO_TRANS else i0) * item
            b0 = pb + (j0 if tb == _NO_TRANS else j0 * ldb) * item
            gemm(_ROW_MAJOR, ta, tb, i1 - i0, j1 - j0, k, alpha, a0, lda, b0, ldb, beta,
                 pc + (i0 * ldc + j0) * item, ldc)

        if way == "threaded":
            threaded(_ROW_MAJOR, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc)
        elif flops < SMALL_GEMM_FLOPS or _POOL.helpers == 0:
            block(0, m, 0, n)
        else:
            _POOL.run(_blocks(block, m, n, k, flops))
    if chooser:
        chooser.record(way, time.perf_counter() - start)
    return True


def _blocks(block: Callable[[int, int, int, int], None], m: int, n: int, k: int,
            flops: float) -> list[Callable[[], None]]:
    """The calls computing a large product in blocks of rows or columns."""
    by_rows = m * k > k * n  # each block re-reads the other operand whole: re-read the smaller one
    threads = _POOL.helpers + 1
    edges = _edges(m if by_rows else n, threads * int(min(MAX_ROUNDS, max(1, round(flops / threads / BLOCK_FLOPS)))))
    spans = list(zip(edges, edges[1:]))
    if by_rows:
        return [functools.partial(block, i0, i1, 0, n) for i0, i1 in spans]
    return [functools.partial(block, 0, m, j0, j1) for j0, j1 in spans]


class _Chooser:
    """Picks the faster way to run one product shape, by measurement: NumPy's threaded
    OpenBLAS (fastest on an idle machine) or the block pool (far faster when other processes
    hold the cores).

    Each way is judged by its cost: the mean of its last WINDOW timed calls less the slowest
    1 in TRIM of them. A threaded call waits now and then for a descheduled OpenBLAS thread
    (3-4 ms where 0.2 ms is usual, the regression step's products, measured). Once in ten
    calls or so, with other processes about, that is noise: judged by such a call the product
    ran in blocks, 2x slower on an idle machine, for many calls after; the trim drops up to
    two in ten. Under heavy load every second or third call stalls: the stalls left after the
    trim (one to three in eight) put the threads' cost at 0.55-1.25 ms, above the blocks' 0.4,
    where a median (0.2) kept them. A way's first call is not timed: NumPy's OpenBLAS starts
    its threads in it (2-4 ms). While the threads run at their usual cost (within STALL of
    their fastest run) the blocks are not tried: on an idle machine each try cost a product
    1.5-2x its time (measured). Otherwise the other way is tried again now and then,
    PROBE_CALLS calls in a row judged on their own (untrimmed), half as often after each loss
    and twice as often after each win, so that a machine becoming busy or idle again is
    noticed. (Not back to every PROBE_GAP calls after a win: under heavy load a third of the
    threads' tries missed the stalls by luck, and trying them every few calls after cost more
    in stalls than the blocks' whole time: 0.64 against 0.88 ms a call, simulated.)
    Unlocked: a race only blurs an estimate."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {way: [] for way in WAYS}  # the last WINDOW timed calls
        self.cost = {way: 0.0 for way in WAYS}  # judged on the times (see above); 0 before any
        self.warm: set[str] = set()  # ways whose first (untimed) call has run
        self.fastest = float("inf")  # the threaded way's fastest call
        self.calls = 0
        self.gap = PROBE_GAP
        self.next_probe = PROBE_GAP
        self.probing: str | None = None  # the way being tried again

    def pick(self) -> str:
        if self.probing:
            return self.probing
        if not self.warm:  # the shape's first call (see FIRST_WAY)
            return FIRST_WAY
        self.calls += 1
        threaded, blocks = self.cost["threaded"], self.cost["blocks"]
        # Before the blocks are first tried, the threads are judged on a full window only (a
        # second call, too, may pay for their start).
        if threaded <= STALL * self.fastest or not (self.times["blocks"] or len(self.times["threaded"]) >= WINDOW):
            return "threaded"
        best = "threaded" if threaded <= blocks else "blocks"  # untried blocks (cost 0) first
        if self.times[best] and self.calls < self.next_probe:
            return best
        other = _OTHER[best] if self.times[best] else best
        self.probing = other
        self.times[other] = []  # judged on this try alone: its older times are stale
        return other

    def record(self, way: str, seconds: float) -> None:
        if way not in self.warm:
            self.warm.add(way)
            return
        times = self.times[way]
        times.append(seconds)
        if len(times) > WINDOW:
            del times[0]
        if seconds < self.fastest and way == "threaded":
            self.fastest = seconds
        kept = sorted(times)[:len(times) - len(times) // TRIM]
        self.cost[way] = sum(kept) / len(kept)
        if self.probing == way and len(times) >= PROBE_CALLS:
            self.probing = None
            other = _OTHER[way]
            won = not self.times[other] or self.cost[way] <= self.cost[other]
            self.gap = max(PROBE_GAP, self.gap // 2) if won else min(MAX_PROBE_GAP, 2 * self.gap)
            self.next_probe = self.calls + self.gap


WAYS = ("threaded", "blocks")
_OTHER = {"threaded": "blocks", "blocks": "threaded"}
# A product shape's first call (untimed) runs in blocks, so that a process's first call never
# waits for a descheduled OpenBLAS thread (NumPy's threaded first call of the MLP step's two
# large products took 11-110 ms with another process running, against 1-3 ms for the blocks;
# measured). On an idle machine that costs the first call ~2 ms.
FIRST_WAY = "blocks"
PROBE_GAP, MAX_PROBE_GAP = 8, 1024  # calls between tries of the slower way: doubled after each loss, halved after a win
WINDOW = 10                         # a way's last timed calls, which judge it
TRIM = 5                            # the slowest one in TRIM of them is left out of a way's cost
PROBE_CALLS = 3                     # timed calls in a row that try a way again
STALL = 1.5                         # threads slower than this times their fastest run: try the blocks
_CHOOSERS: dict[tuple[Any, ...], _Chooser] = {}


def _chooser_of(key: tuple[Any, ...]) -> _Chooser:
    """The chooser of one product shape (m, n, k, CBLAS transpose flags, dtype char)."""
    return _CHOOSERS.get(key) or _CHOOSERS.setdefault(key, _Chooser())


def _edges(size: int, blocks: int) -> list[int]:
    """Block boundaries over `size`, inner ones on multiples of _ALIGN (fewer blocks where
    `size` is too small for `blocks`)."""
    inner = {min(size, round(size * i / blocks / _ALIGN) * _ALIGN) for i in range(1, blocks)}
    return sorted({0, size} | {e for e in inner if 0 < e < size})


class _BlockPool:
    """Runs a list of independent calls on the calling thread and `helpers` helper threads,
    each taking the next call from a shared counter. One list at a time: a second caller
    meanwhile runs its own list alone."""

    def __init__(self, helpers: int):
        self.helpers = helpers
        self._busy = threading.Lock()
        self._wake = threading.Semaphore(0)
        self._job: _Job | None = None
        self._started = False

    def run(self, tasks: list[Callable[[], None]]) -> None:
        job = _Job(tasks)
        if not self._busy.acquire(blocking=False):
            job.drain()
            return
        try:
            self.start()
            self._job = job
            for _ in range(self.helpers):
                self._wake.release()
            job.drain()
            job.finished.wait()
        finally:
            self._job = None
            self._busy.release()

    def start(self) -> None:
        """Start the helper threads (once; on first use, so importing the backend starts none)."""
        if not self._started:
            self._started = True
            for i in range(self.helpers):
                threading.Thread(target=self._serve, name=f"tfjit-blas-{i}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._wake.acquire()
            job = self._job
            if job is not None:
                job.drain()


class _Job:
    def __init__(self, tasks: list[Callable[[], None]]):
        self.tasks = tasks
        self.left = len(tasks)
        self.finished = threading.Event()
        self._claim = itertools.count()  # next() on it is atomic under the GIL
        self._lock = threading.Lock()

    def drain(self) -> None:
        """Run calls until none is left unclaimed."""
        while (i := next(self._claim)) < len(self.tasks):
            self.tasks[i]()
            with self._lock:
                self.left -= 1
                if self.left == 0:
                    self.finished.set()


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
def _scipy_openblas() -> Any:
    """scipy's bundled OpenBLAS (the library numba's `np.dot` calls, 32-bit integers), or
    None; found without importing scipy."""
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


@functools.cache
def _numpy_gemm(char: str) -> Any:
    """NumPy's OpenBLAS `cblas_?gemm` for a dtype's character code (multi-threaded; 64-bit
    integers, as NumPy's wheels build it), or None."""
    letter = {"f": "s", "d": "d"}[char]
    for path in sorted(glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_"):
            gemm = getattr(lib, name, None)
            if gemm is not None:
                return _typed(gemm, letter, ctypes.c_int64)
    return None


@functools.cache
def cblas_gemm(char: str) -> Any:
    """scipy's OpenBLAS `cblas_?gemm` for a dtype's character code (32-bit integers, as
    scipy's wheels build it), or None."""
    lib = _scipy_openblas()
    letter = {"f": "s", "d": "d"}[char]
    gemm = None
    for name in (f"scipy_cblas_{letter}gemm", f"cblas_{letter}gemm"):
        gemm = getattr(lib, name, None) if lib is not None else None
        if gemm is not None:
            break
    return None if gemm is None else _typed(gemm, letter, ctypes.c_int)


def _typed(gemm: Any, letter: str, integer: Any) -> Any:
    """A CBLAS `?gemm` with its argument types set (`integer`: the library's int size)."""
    real = ctypes.c_float if letter == "s" else ctypes.c_double
    enum, ptr = ctypes.c_int, ctypes.c_void_p
    gemm.argtypes = [enum, enum, enum, integer, integer, integer, real, ptr, integer, ptr, integer, real, ptr,
                     integer]
    gemm.restype = None
    return gemm


_POOL = _BlockPool(max(0, min(7, len(os.sched_getaffinity(0)) - 1)) if hasattr(os, "sched_getaffinity")
                   else max(0, min(7, (os.cpu_count() or 1) - 1)))
