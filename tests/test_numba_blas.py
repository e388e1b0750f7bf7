"""`blas.matmul_into`: products on scipy's single-threaded BLAS through CBLAS, or, for large
ones while that runs faster, NumPy's threaded BLAS. Results match NumPy for every operand
layout (transposed, strided, reversed, broadcast) and size class, by either way."""
from __future__ import annotations

import numpy as np
import pytest

from tfjit.backends.numba_cpu import blas

RNG = np.random.default_rng(3)
SHAPES = [(5, 7, 3), (64, 256, 1024), (700, 96, 64), (16, 20000, 16)]  # one small, three large


def _operands(m, k, n, dtype, transpose_a, transpose_b):
    a = RNG.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    b = RNG.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    return (a.T if transpose_a else a), (b.T if transpose_b else b)


def _check(a, b, out):
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-4 if out.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.sqrt(a.shape[1]), equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("way", blas.WAYS)
def test_products_match_numpy_for_every_transpose_and_size(monkeypatch, way, dtype, transpose_a, transpose_b,
                                                            m, k, n):
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    a, b = _operands(m, k, n, dtype, transpose_a, transpose_b)
    assert (2.0 * m * k * n < blas.SMALL_GEMM_FLOPS) == (m == 5)
    out = np.full((m, n), np.nan, dtype)
    assert blas.matmul_into(a, b, out) is out
    _check(a, b, out)


@pytest.mark.parametrize("way", blas.WAYS)
def test_strided_reversed_and_broadcast_operands_and_nan_inf(monkeypatch, way):
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    wide = RNG.standard_normal((128, 1024)).astype(np.float32)
    w = RNG.standard_normal((256, 200)).astype(np.float32)
    w[3, 4], w[5, 6] = np.nan, np.inf
    for a in (wide[:, 256:512], wide[:, ::4], wide[::-1, 256:512], np.broadcast_to(wide[0, :256], (128, 256))):
        out = np.empty((128, 200), np.float32)
        blas.matmul_into(a, w, out)
        _check(a, w, out)
    out = np.empty((200, 128), np.float32)
    blas.matmul_into(w.T, wide[:, 512:768].T, out)  # transposed views of column blocks
    _check(w.T, wide[:, 512:768].T, out)


def test_uncovered_products_go_to_numpy():
    a = RNG.standard_normal((3, 40, 50)).astype(np.float32)
    b = RNG.standard_normal((3, 50, 60)).astype(np.float32)
    out = np.empty((3, 40, 60), np.float32)
    _check(a, b, blas.matmul_into(a, b, out))  # batched
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(blas.matmul_into(ints, ints.T, np.empty((3, 3), np.int32)), ints @ ints.T)
    with pytest.raises(ValueError):  # shapes BLAS would read past: NumPy's error, never a BLAS call
        blas.matmul_into(np.ones((4, 5), np.float32), np.ones((6, 7), np.float32), np.empty((4, 7), np.float32))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf * 0, as the callers silence it
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_products_by_numpy_match_for_every_layout_and_edge_size(dtype):
    """Products up to OpenBLAS's one-thread limits go to `np.dot`: every operand layout, the
    size limits on both sides, vector-shaped results, NaN/inf, and an output that is not
    C-contiguous (which takes the CBLAS or NumPy path instead)."""
    wide = RNG.standard_normal((64, 64)).astype(dtype)
    wide[1, 2], wide[3, 4] = np.nan, np.inf
    edge = int(round(blas.TINY_MULADDS ** (1 / 3)))
    shapes = [(1, 1, 1), (3, 1, 5), (1, 64, 1), (9, 4, 1), (1, 4, 9), (edge, edge, edge), (edge, edge, edge + 1),
              (blas.TINY_ELEMENTS // 2 - 1, 2, 1), (blas.TINY_ELEMENTS // 2, 2, 1)]
    for m, k, n in shapes:
        for transpose_a, transpose_b in [(False, False), (True, True)]:
            a, b = _operands(m, k, n, dtype, transpose_a, transpose_b)
            out = np.full((m, n), np.nan, dtype)
            assert blas.matmul_into(a, b, out) is out
            _check(a, b, out)
    for a in (wide[:8, 16:40], wide[:8, ::3][:, :8], wide[7::-1, :24]):
        b = wide[:a.shape[1], ::-1][:, :5]
        _check(a, b, blas.matmul_into(a, b, np.empty((a.shape[0], 5), dtype)))
    out = np.full((16, 10), np.nan, dtype)
    a, b = wide[:8, :6], wide[6:12, :5]
    blas.matmul_into(a, b, out[::2, ::2])
    _check(a, b, out[::2, ::2])
    assert np.isnan(out[1::2]).all() and np.isnan(out[:, 1::2]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_by_tiny_and_larger_products_add_the_scaled_product(dtype):
    """`add_product_into` on both sides of the tiny limit: NumPy's product, scaled and added
    (the reference's rounding), or one GEMM with beta = 1."""
    edge = int(round(blas.TINY_MULADDS ** (1 / 3)))
    for m, k, n in [(3, 4, 5), (edge, edge, edge), (edge, edge, edge + 1)]:
        a, b = _operands(m, k, n, dtype, True, False)
        c = RNG.standard_normal((m, n)).astype(dtype)
        want = c.astype(np.float64) - 0.25 * (a.astype(np.float64) @ b.astype(np.float64))
        blas.add_product_into(c, a, b, -0.25)
        tol = 1e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(c, want, rtol=tol, atol=tol * np.sqrt(k))


# -- choosing the way: the decision logic on synthetic timings -----------------------------------
class _Machine:
    """A chooser fed synthetic times: `speed[way]` per call, or a scripted time for one call."""

    def __init__(self, threaded: float, blocks: float):
        self.chooser = blas._Chooser()
        self.speed = {"threaded": threaded, "blocks": blocks}
        self.once: dict[str, float] = {}  # the next call of a way takes this long instead

    def run(self, calls: int) -> list[str]:
        picks = []
        for _ in range(calls):
            way = self.chooser.pick()
            picks.append(way)
            self.chooser.record(way, self.once.pop(way, self.speed[way]))
        return picks


def _tries(picks: list[str], way: str) -> list[int]:
    return [i for i, w in enumerate(picks) if w == way]


def test_an_idle_machine_keeps_the_threads_and_never_tries_the_blocks_again():
    machine = _Machine(threaded=1.0, blocks=3.0)
    assert machine.run(300) == ["threaded", "blocks"] + ["threaded"] * 298


def test_a_stalled_threaded_call_costs_a_switch_of_at_most_probe_gap_calls():
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.run(50)
    for _ in range(5):  # one stalled call now and then among usual ones
        machine.once["threaded"] = 40.0
        picks = machine.run(3 * blas.PROBE_GAP)
        assert picks.count("blocks") <= blas.PROBE_GAP and picks[-blas.PROBE_GAP:] == ["threaded"] * blas.PROBE_GAP


def test_threads_stalling_every_third_call_lose_to_the_blocks():
    """Their median stays that of a usual call (a median-based choice keeps them: 14 per call
    here); their mean, the cost per call, does not. Tries of the threads still win now and
    then (two calls in three are usual), so the cost lies between the two ways'."""
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.run(50)
    seconds = 0.0
    for call in range(3000):
        way = machine.chooser.pick()
        stalled = way == "threaded" and call % 3 == 0
        took = 40.0 if stalled else machine.speed[way]
        machine.chooser.record(way, took)
        seconds += took
    always_threaded = 3000 * (40.0 + 2 * 1.0) / 3
    assert seconds < 0.6 * always_threaded


def test_a_slow_first_threaded_call_is_outvoted_by_the_next():
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.once["threaded"] = 30.0  # the threads' first call starts them
    picks = machine.run(100)
    assert picks[:2] == ["threaded", "blocks"]
    assert picks[2:2 + blas.PROBE_GAP - 1] == ["blocks"] * (blas.PROBE_GAP - 1)  # the blocks looked faster
    assert picks[-50:] == ["threaded"] * 50  # one try of the threads won them back, for good


def test_a_busy_machine_moves_to_the_blocks_and_retries_the_threads_at_a_bounded_steady_interval():
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.run(50)
    machine.speed["threaded"] = 10.0  # the machine got busy: every threaded call stalls
    assert machine.run(40)[-10:] == ["blocks"] * 10
    tries = _tries(machine.run(1000), "threaded")
    gaps = np.diff(tries)
    # each try loses 7 against 3: the next one after the blocks ran 7 / 0.05 (47 calls);
    # the interval stays that, it does not grow with each loss
    want = int(np.ceil((10.0 - 3.0) / (blas.PROBE_SHARE * 3.0)))
    assert list(gaps) == [want] * len(gaps) and len(gaps) >= 15
    # one try that stalls far longer: the next waits at most MAX_PROBE_GAP, then the interval is back
    machine.run(int(np.argmax(np.diff([0, *_tries(machine.run(want + 1), "threaded")]))))
    machine.once["threaded"] = 1000.0
    tries = _tries(machine.run(3 * blas.MAX_PROBE_GAP), "threaded")
    assert np.diff(tries).max() <= blas.MAX_PROBE_GAP and np.diff(tries)[-3:].tolist() == [want] * 3


def test_a_machine_idle_again_returns_to_the_threads_within_a_few_tries():
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.run(50)
    machine.speed["threaded"] = 10.0
    machine.run(2000)  # long on the blocks: their window and the threads' hold only busy times
    machine.speed["threaded"] = 1.0
    picks = machine.run(3 * blas.MAX_PROBE_GAP)
    assert picks[-100:] == ["threaded"] * 100
    assert picks.index("threaded") < blas.MAX_PROBE_GAP


def test_threads_slower_than_usual_but_still_faster_keep_being_used():
    machine = _Machine(threaded=1.0, blocks=3.0)
    machine.run(50)
    machine.speed["threaded"] = 2.0  # slower than STALL times their best: the blocks are tried, and lose
    picks = machine.run(500)
    assert picks.count("threaded") >= 500 - 500 // blas.PROBE_GAP - 1
    assert 1 <= picks.count("blocks")


# -- the GEMM called from inside kernels ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_calling_either_blas_match_numpy(dtype):
    from numba import njit

    from tfjit.backends.numba_cpu import gemm

    @njit
    def product(a, b, c, beta, threaded):
        gemm.matmul(a, b, c, beta, threaded)

    for threaded in (False, True):
        for m, k, n in [(64, 256, 1024), (1, 5, 3), (7, 0, 4)]:
            a, b = _operands(m, k, n, dtype, True, False)  # a transposed view
            c = RNG.standard_normal((m, n)).astype(dtype)
            want = a.astype(np.float64) @ b + 0.5 * c
            product(a, b, c, 0.5, threaded)
            _check_values(c, want)


def _check_values(got, want):
    tol = 1e-4 if got.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 16)


@pytest.mark.parametrize("char", ["f", "d"])
def test_the_threaded_symbols_stand_in_forwards_to_scipys_blas(char):
    """Where NumPy's OpenBLAS is not found, the threaded symbol points at a callback with its
    signature calling scipy's library: it computes the same product."""
    import ctypes

    from tfjit.backends.numba_cpu import gemm

    dtype = np.dtype(char)
    call = gemm._forwarding(char)
    a, b = RNG.standard_normal((4, 6)).astype(dtype), RNG.standard_normal((5, 6)).astype(dtype)
    c = np.ones((4, 5), dtype)
    call(101, 111, 112, 4, 5, 6, 2.0, a.ctypes.data, 6, b.ctypes.data, 6, 1.0, c.ctypes.data, 5)  # 2 a b^T + c
    _check_values(c, 2.0 * a.astype(np.float64) @ b.T + 1.0)
    assert isinstance(call, ctypes._CFuncPtr)
