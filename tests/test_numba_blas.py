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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("way", blas.WAYS)
def test_a_planned_product_sets_or_adds_for_every_transpose_and_size(monkeypatch, way, dtype):
    """`Product`, made once for a shape: `out = a @ b` or `out += a @ b`, by the chosen way for
    C-contiguous operands, else through `matmul_into` / `add_product_into` (transposed or
    strided operands, a small product); NaN and inf in an operand as in NumPy."""
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: way)
    for m, k, n in [SHAPES[0], SHAPES[1]]:
        for transpose in [(False, False), (True, False), (False, True)]:
            product = blas.Product(m, k, n, dtype, transpose)
            a, b = _operands(m, k, n, dtype, *transpose)
            if m > 5:
                a[1, 2], b[3, 4] = np.nan, np.inf
            a, b = (a.T if transpose[0] else a), (b.T if transpose[1] else b)  # as the matmul's inputs arrive
            x, y = (a.T if transpose[0] else a), (b.T if transpose[1] else b)
            out = np.full((m, n), np.nan, dtype)
            assert product(a, b, out) is out
            _check(x, y, out)
            c = RNG.standard_normal((m, n)).astype(dtype)
            want = c.astype(np.float64) + x.astype(np.float64) @ y.astype(np.float64)
            assert product(a, b, c, accumulate=True) is c
            tol = 1e-4 if dtype == np.float32 else 1e-11
            np.testing.assert_allclose(c, want, rtol=tol, atol=tol * np.sqrt(k), equal_nan=True)
    strided = RNG.standard_normal((64, 512)).astype(dtype)[:, ::2]  # not C-contiguous: the general path
    b = RNG.standard_normal((256, 1024)).astype(dtype)
    out = np.zeros((64, 1024), dtype)
    blas.Product(64, 256, 1024, dtype)(strided, b, out, accumulate=True)
    _check(strided, b, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_planned_product_of_a_zero_operand_skips_blas_unless_the_other_has_inf_or_nan(monkeypatch, dtype):
    """A zero `a` (an RNN's first state) times a finite `b`: +0s without a BLAS call, added
    onto the addend as BLAS adds them (-0 + +0 = +0); with an inf or NaN in `b` BLAS runs
    (0 * inf is NaN); a nonzero element anywhere in `a` is not missed."""
    m, k, n = SHAPES[1]
    product = blas.Product(m, k, n, dtype)
    b = RNG.standard_normal((k, n)).astype(dtype)
    c = RNG.standard_normal((m, n)).astype(dtype)
    c[0, :3] = -0.0
    monkeypatch.setattr(blas._Chooser, "pick", lambda self: pytest.fail("BLAS ran"))
    out = product(np.zeros((m, k), dtype), b, c.copy(), accumulate=True)
    np.testing.assert_array_equal(out, c)
    assert not np.signbit(out[0, :3]).any()
    np.testing.assert_array_equal(product(np.zeros((m, k), dtype), b, np.full((m, n), np.nan, dtype)), 0)
    monkeypatch.undo()
    b[3, 4] = np.inf
    a = np.zeros((m, k), dtype)
    with np.errstate(invalid="ignore"):
        want = c + a @ b
    np.testing.assert_array_equal(product(a, b, c.copy(), accumulate=True), want)
    assert np.isnan(want[:, 4]).all()
    b[3, 4] = 1.0
    a[-1, -1] = 2.0
    _check(a, b, product(a, b, np.empty((m, n), dtype)))
