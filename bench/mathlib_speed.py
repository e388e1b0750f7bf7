"""Speed of the float32 math library: njit loops over 16M float32 values, three ways.

    OMP_WAIT_POLICY=passive python -m tfjit.bench.mathlib_speed [--n 16777216] [--repeat 15]

For each function: a serial njit loop calling `mathlib` (vectorised), the same loop calling
NumPy/libm (`np.exp`..., one libm call per element) and NumPy's ufunc; all write into a
preallocated output, so only the arithmetic and the memory traffic are timed. The first row
(`x * 2`) is the memory-traffic floor; the last is GELU (tanh form), the fused kernel the
library exists for. Medians of `--repeat` runs.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import numpy as np
from numba import njit
from scipy import special

from tfjit.backends.numba_cpu import mathlib as ml
from tfjit.backends.numba_cpu.compile import FASTMATH as _FLAGS  # the generated kernels' flags

_F = np.float32


def _unary_loop(f: Callable) -> Callable:  # type: ignore[type-arg]
    @njit(fastmath=_FLAGS, error_model="numpy")
    def loop(x, out):  # type: ignore[no-untyped-def]
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


def _binary_loop(f: Callable) -> Callable:  # type: ignore[type-arg]
    @njit(fastmath=_FLAGS, error_model="numpy")
    def loop(x, y, out):  # type: ignore[no-untyped-def]
        for i in range(x.size):
            out[i] = f(x[i], y[i])
    return loop


@njit(fastmath=_FLAGS, error_model="numpy")
def _double(x):  # type: ignore[no-untyped-def]
    """The memory-traffic floor: a loop that reads and writes the same bytes."""
    return x * _F(2.0)


@njit(fastmath=_FLAGS, error_model="numpy")
def _libm_sigmoid(x):  # type: ignore[no-untyped-def]
    return _F(1.0) / (_F(1.0) + np.exp(-x))


@njit(fastmath=_FLAGS, error_model="numpy")
def _libm_erf(x):  # type: ignore[no-untyped-def]
    return _F(math.erf(x))


def _gelu_with(tanh: Callable) -> Callable:  # type: ignore[type-arg]
    @njit(fastmath=_FLAGS, error_model="numpy")
    def gelu(x):  # type: ignore[no-untyped-def]
        inner = _F(0.7978845608028654) * (x + _F(0.044715) * x * x * x)
        return _F(0.5) * x * (_F(1.0) + tanh(inner))
    return gelu


def _numpy_gelu(x: np.ndarray, out: np.ndarray) -> None:
    """GELU as a NumPy user writes it (temporaries included)."""
    inner = _F(0.7978845608028654) * (x + _F(0.044715) * x * x * x)
    np.multiply(_F(0.5) * x, 1 + np.tanh(inner), out=out)


def _cases(rng: np.random.Generator, n: int) -> list[tuple]:  # type: ignore[type-arg]
    """(name, inputs, mathlib fn, libm fn, numpy call writing `out`)."""
    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n).astype(np.float32)

    pw_y = u(-5, 5)
    return [
        ("x * 2", [u(-10, 10)], _double, _double, lambda x, o: np.multiply(x, _F(2.0), out=o)),
        ("exp", [u(-10, 10)], ml.exp, njit(lambda x: np.exp(x)), lambda x, o: np.exp(x, out=o)),
        ("expm1", [u(-5, 5)], ml.expm1, njit(lambda x: np.expm1(x)),
         lambda x, o: np.expm1(x, out=o)),
        ("log", [u(1e-3, 100)], ml.log, njit(lambda x: np.log(x)), lambda x, o: np.log(x, out=o)),
        ("log1p", [u(-0.9, 10)], ml.log1p, njit(lambda x: np.log1p(x)),
         lambda x, o: np.log1p(x, out=o)),
        ("tanh", [u(-5, 5)], ml.tanh, njit(lambda x: np.tanh(x)), lambda x, o: np.tanh(x, out=o)),
        ("sigmoid", [u(-10, 10)], ml.sigmoid, _libm_sigmoid, lambda x, o: special.expit(x, out=o)),
        ("erf", [u(-3, 3)], ml.erf, _libm_erf, lambda x, o: special.erf(x, out=o)),
        ("pow", [u(1e-3, 10), pw_y], ml.pow, njit(lambda x, y: np.power(x, y)),
         lambda x, y, o: np.power(x, y, out=o)),
        ("gelu_tanh", [u(-5, 5)], _gelu_with(ml.tanh), _gelu_with(njit(lambda x: np.tanh(x))),
         _numpy_gelu),
    ]


def _median_ms(fn: Callable[[], None], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 24)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'function':10s} {'mathlib':>9s} {'njit+libm':>10s} {'numpy':>9s}"
          "  libm/mathlib  numpy/mathlib")
    for name, inputs, fast, libm, numpy_call in _cases(rng, args.n):
        out = np.empty(args.n, np.float32)
        make = _binary_loop if len(inputs) == 2 else _unary_loop
        fast_loop, libm_loop = make(fast), make(libm)
        t_fast = _median_ms(lambda: fast_loop(*inputs, out), args.repeat)
        t_libm = _median_ms(lambda: libm_loop(*inputs, out), max(3, args.repeat // 3))
        with np.errstate(all="ignore"):
            t_np = _median_ms(lambda: numpy_call(*inputs, out), args.repeat)
        print(f"{name:10s} {t_fast:8.2f}ms {t_libm:8.2f}ms {t_np:7.2f}ms"
              f"  {t_libm / t_fast:11.2f}x  {t_np / t_fast:12.2f}x")


if __name__ == "__main__":
    main()
