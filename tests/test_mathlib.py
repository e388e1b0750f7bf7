"""The float32 math library: error bounds over the whole float32 range, special values, and
that loops calling it vectorise. Every function runs inside an njit loop, as generated kernels
call it, compiled with every fastmath flag short of full fastmath (a superset of the kernels'
flags): the library's results must not depend on its callers' flags."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest
from numba import njit, types
from scipy import special

from tfjit.backends.numba_cpu import mathlib as ml

KERNEL_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}

# name -> (float64 reference, documented bound in ulps); see the table in mathlib's docstring.
UNARY = {
    "exp": (np.exp, 1),
    "expm1": (np.expm1, 1),
    "log": (np.log, 1),
    "log1p": (np.log1p, 1),
    "tanh": (np.tanh, 2),
    "sigmoid": (special.expit, 2),
    "erf": (special.erf, 1),
}
POW_BOUND = 1

INF, NAN = np.inf, np.nan
TINY = 1e-45  # smallest denormal
# (function, input, exact expected float32 result: NaN, +-inf, +-0 and +-1 keep their sign)
SPECIAL_CASES = [
    ("exp", -INF, 0.0), ("exp", INF, INF), ("exp", NAN, NAN), ("exp", 0.0, 1.0), ("exp", -0.0, 1.0),
    ("exp", 88.72283935546875, INF), ("exp", 89.0, INF), ("exp", -104.0, 0.0), ("exp", -1e30, 0.0),
    ("exp", TINY, 1.0),
    ("expm1", -INF, -1.0), ("expm1", INF, INF), ("expm1", NAN, NAN), ("expm1", -0.0, -0.0),
    ("expm1", 0.0, 0.0), ("expm1", 89.0, INF), ("expm1", -20.0, -1.0), ("expm1", -TINY, -TINY),
    ("log", 0.0, -INF), ("log", -0.0, -INF), ("log", -1.0, NAN), ("log", -TINY, NAN),
    ("log", INF, INF), ("log", -INF, NAN), ("log", NAN, NAN), ("log", 1.0, 0.0),
    ("log1p", -1.0, -INF), ("log1p", -2.0, NAN), ("log1p", INF, INF), ("log1p", -INF, NAN),
    ("log1p", NAN, NAN), ("log1p", -0.0, -0.0), ("log1p", 0.0, 0.0), ("log1p", TINY, TINY),
    ("tanh", INF, 1.0), ("tanh", -INF, -1.0), ("tanh", NAN, NAN), ("tanh", -0.0, -0.0),
    ("tanh", 0.0, 0.0), ("tanh", 10.0, 1.0), ("tanh", -10.0, -1.0), ("tanh", -TINY, -TINY),
    ("sigmoid", -INF, 0.0), ("sigmoid", INF, 1.0), ("sigmoid", NAN, NAN), ("sigmoid", 0.0, 0.5),
    ("sigmoid", -0.0, 0.5), ("sigmoid", -200.0, 0.0), ("sigmoid", 20.0, 1.0),
    ("erf", INF, 1.0), ("erf", -INF, -1.0), ("erf", NAN, NAN), ("erf", -0.0, -0.0),
    ("erf", 0.0, 0.0), ("erf", 5.0, 1.0), ("erf", -5.0, -1.0),
]
POW_SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5,
                         INF, -INF, NAN, TINY, -TINY, 3.4028235e38, -3.4028235e38, 1e-30,
                         16777217.0], np.float32)

_LOOPS: dict[str, Callable] = {}  # type: ignore[type-arg]


def _loop(name: str) -> Callable:  # type: ignore[type-arg]
    """An njit loop applying mathlib.<name> elementwise (compiled once per test session)."""
    if name not in _LOOPS:
        f = getattr(ml, name)
        if name == "pow":
            def loop(x, y, out):  # type: ignore[no-untyped-def]
                for i in range(x.size):
                    out[i] = f(x[i], y[i])
        else:
            def loop(x, out):  # type: ignore[no-untyped-def]
                for i in range(x.size):
                    out[i] = f(x[i])
        _LOOPS[name] = njit(fastmath=KERNEL_FLAGS, error_model="numpy")(loop)
    return _LOOPS[name]


def _apply(name: str, *args: np.ndarray) -> np.ndarray:
    out = np.empty(args[0].shape, args[0].dtype)
    _loop(name)(*args, out)
    return out


def _ordered(a: np.ndarray) -> np.ndarray:
    """float32 bit patterns as integers ordered like the floats (ulp distance = difference)."""
    bits = a.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Representable float32 values between got and ref; 0 for two NaNs, huge for one."""
    dist = np.abs(_ordered(got) - _ordered(ref))
    dist[np.isnan(got) & np.isnan(ref)] = 0
    dist[np.isnan(got) != np.isnan(ref)] = 1 << 40
    return dist


def _reference(fn: Callable, *args: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    with np.errstate(all="ignore"):
        return fn(*(a.astype(np.float64) for a in args)).astype(np.float32)


@pytest.fixture(scope="module")
def sweep() -> np.ndarray:
    """~1.05M float32 values from every binade: every 4093rd bit pattern (4093 is prime, so all
    mantissa bits vary) plus a dense uniform sample of the range where ML values live."""
    patterns = np.arange(0, 1 << 32, 4093, dtype=np.uint64).astype(np.uint32).view(np.float32)
    dense = np.random.default_rng(0).uniform(-12.0, 12.0, 1 << 16).astype(np.float32)
    return np.concatenate([patterns, dense])


def _assert_within(name: str, x: tuple[np.ndarray, ...], got: np.ndarray, ref: np.ndarray,
                   bound: int) -> None:
    dist = _ulps(got, ref)
    worst = int(np.argmax(dist))
    inputs = ", ".join(repr(a[worst]) for a in x)
    assert dist[worst] <= bound, (
        f"{name}({inputs}) = {got[worst]!r}, reference {ref[worst]!r}: "
        f"{dist[worst]} ulps > {bound}")


@pytest.mark.parametrize("name", sorted(UNARY))
def test_error_bound_over_float32_range(name: str, sweep: np.ndarray) -> None:
    reference, bound = UNARY[name]
    _assert_within(name, (sweep,), _apply(name, sweep), _reference(reference, sweep), bound)


@pytest.mark.parametrize("name, x, expected", SPECIAL_CASES)
def test_special_values_exact(name: str, x: float, expected: float) -> None:
    got = _apply(name, np.array([x], np.float32))[0]
    if np.isnan(expected):
        assert np.isnan(got), f"{name}({x}) = {got}, expected NaN"
    else:
        assert got == expected and np.signbit(got) == np.signbit(expected), (
            f"{name}({x}) = {got!r}, expected {expected!r}")


@pytest.mark.parametrize("name", sorted(UNARY))
def test_thresholds_and_denormals(name: str) -> None:
    """Neighbours of the overflow/underflow thresholds and denormal inputs, as NumPy float64."""
    edges = np.array([88.72283172607422, 88.72283935546875, -87.33654, -87.336548, -103.97207,
                      -103.972084, 1.1754942e-38, 1.17549435e-38, 2.0 ** -25, 9.02, 3.92, 4.0],
                     np.float32)
    steps = np.arange(-64, 65, dtype=np.int32)
    near = (edges.view(np.int32)[:, None] + steps).ravel().view(np.float32)
    denormals = np.arange(1, 1 << 23, 997, dtype=np.int32).view(np.float32)
    x = np.concatenate([near, -near, denormals, -denormals])
    _assert_within(name, (x,), _apply(name, x), _reference(UNARY[name][0], x), UNARY[name][1])


def _pow_samples() -> tuple[np.ndarray, np.ndarray]:
    """Random bit-pattern pairs; positive x of every magnitude with y spread so that x**y covers
    overflow, the normal range and denormals; negative x with integer y; all special pairs."""
    rng = np.random.default_rng(1)
    n = 1 << 17
    bits = rng.integers(0, 1 << 32, (2, n), dtype=np.uint64).astype(np.uint32).view(np.float32)
    xr = np.abs(bits[0])
    xr = xr[np.isfinite(xr) & (xr > 0) & (xr != 1)]
    yr = (rng.uniform(-110.0, 95.0, xr.size) / np.log(xr.astype(np.float64))).astype(np.float32)
    with np.errstate(over="ignore"):
        xn = (-rng.uniform(0.0, 3.0, n) ** rng.integers(-20, 20, n)).astype(np.float32)
    yn = rng.integers(-60, 60, n).astype(np.float32)
    xs, ys = (a.ravel() for a in np.meshgrid(POW_SPECIALS, POW_SPECIALS))
    return np.concatenate([bits[0], xr, xn, xs]), np.concatenate([bits[1], yr, yn, ys])


def test_pow_error_bound() -> None:
    x, y = _pow_samples()
    _assert_within("pow", (x, y), _apply("pow", x, y), _reference(np.power, x, y), POW_BOUND)


def test_pow_special_values_exact() -> None:
    """NaN, +-inf, +-0 and +-1 results (C99 pow rules, as NumPy's float32 power) bit for bit."""
    x, y = (a.ravel() for a in np.meshgrid(POW_SPECIALS, POW_SPECIALS))
    got = _apply("pow", x, y)
    with np.errstate(all="ignore"):
        expected = np.power(x, y)
    special_result = ~np.isfinite(expected) | (expected == 0) | (np.abs(expected) == 1)
    for xi, yi, g, e in zip(x[special_result], y[special_result], got[special_result],
                            expected[special_result]):
        same = (np.isnan(g) and np.isnan(e)) or (g == e and np.signbit(g) == np.signbit(e))
        assert same, f"pow({xi!r}, {yi!r}) = {g!r}, NumPy float32 gives {e!r}"


@pytest.mark.parametrize("name", sorted(UNARY) + ["pow"])
def test_loops_vectorise(name: str) -> None:
    """A loop calling the library has vector float arithmetic (a libm call per lane would not)."""
    x = np.ones(64, np.float32)
    _apply(name, *([x] * (2 if name == "pow" else 1)))
    loop = _loop(name)
    llvm = loop.inspect_llvm(next(s for s in loop.signatures if s[0].dtype == types.float32))
    assert re.search(r"<(4|8|16) x float>", llvm), f"the loop over mathlib.{name} did not vectorise"


@pytest.mark.parametrize("name", sorted(UNARY))
def test_float64_uses_numpy(name: str) -> None:
    """float64 arguments take libm (NumPy's functions), not the float32 approximations."""
    x = np.random.default_rng(2).uniform(-5.0, 5.0, 1000)
    if name in ("log", "log1p"):
        x = np.abs(x)
    got = _apply(name, x)
    np.testing.assert_allclose(got, UNARY[name][0](x), rtol=1e-15, atol=0)
    assert got.dtype == np.float64


def test_python_level_calls_follow_numpy() -> None:
    """Outside njit the public functions are NumPy's (for a reference backend or a debugger)."""
    x = np.linspace(0.25, 3.0, 12)
    for name, (reference, _) in UNARY.items():
        np.testing.assert_allclose(getattr(ml, name)(x), reference(x), rtol=1e-15)
        np.testing.assert_allclose(getattr(ml, name)(x.astype(np.float32)), reference(x), rtol=1e-6)
    np.testing.assert_allclose(ml.pow(x, x - 1.5), np.power(x, x - 1.5), rtol=1e-15)


def test_both_exp_scalings_give_the_same_bits() -> None:
    """exp scales by vscalefps on AVX-512 CPUs and by exponent bits elsewhere: every (y, k) exp
    can produce (y in [0.5, 2), k in [-150, 129], denormal and overflowing results included)
    must round the same way both ways."""
    @njit(error_model="numpy")
    def both(y, k, a, b):  # type: ignore[no-untyped-def]
        for i in range(y.size):
            a[i] = ml._scale_scalef(y[i], k[i])
            b[i] = ml._scale_bits(y[i], k[i])

    rng = np.random.default_rng(5)
    y = rng.uniform(0.5, 2.0, 1 << 16).astype(np.float32)
    y[:2] = 0.5, np.nextafter(np.float32(2.0), np.float32(0.0))
    k = np.tile(np.arange(-150, 130, dtype=np.int32), (1 << 16) // 280 + 1)[:1 << 16]
    a, b = np.empty_like(y), np.empty_like(y)
    both(y, k, a, b)
    assert np.array_equal(a.view(np.int32), b.view(np.int32))
    with np.errstate(over="ignore"):  # k = 129 overflows to inf, as exp does
        want = (y.astype(np.float64) * np.exp2(k.astype(np.float64))).astype(np.float32)
    assert np.array_equal(a.view(np.int32), want.view(np.int32))
