"""Device versions of the scalar helpers the shared element expressions call.

The element expressions (`numba_cpu.scalar`) name helpers from `numba_cpu.scalar_lib`
(`_maximum`, `_f32_exp`, ...) and NumPy ufuncs (`np.sqrt`). numba-cuda compiles neither
NumPy ufuncs (its ufunc table misses them with NumPy 2.x) nor CPU `njit` functions into
device code, so this module defines each helper as a `@cuda.jit(device=True)` function and
each `np.f` the expressions use as a primitive `_np_f` (codegen rewrites `np.f(` to it).

Primitives are `math.*` on the device, where they follow C (NaN in, NaN out; floor of a
float is a float). The simulator runs kernels as Python, where `math.floor(inf)` and
`math.log(0)` raise, so there the primitives are NumPy's ufuncs, which behave as the device.
"""
from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from ..numba_cpu import scalar_lib
from ..numba_cpu.scalar_lib import _bool, _f32, _f64, _i8, _i32, _i64, _u8  # noqa: F401  (dtype casts)

SIMULATED = bool(config.ENABLE_CUDASIM)

device = cuda.jit(device=True, inline=True)

if SIMULATED:
    _np_sqrt, _np_exp, _np_log, _np_log1p, _np_expm1 = np.sqrt, np.exp, np.log, np.log1p, np.expm1
    _np_tanh, _np_sin, _np_cos, _np_floor, _np_ceil = np.tanh, np.sin, np.cos, np.floor, np.ceil
    _np_fmod, _np_rint = np.fmod, np.rint
else:
    _np_sqrt, _np_exp, _np_log, _np_log1p, _np_expm1 = math.sqrt, math.exp, math.log, math.log1p, math.expm1
    _np_tanh, _np_sin, _np_cos, _np_floor, _np_ceil = math.tanh, math.sin, math.cos, math.floor, math.ceil
    _np_fmod = math.fmod

    @device
    def _np_rint(x):  # type: ignore[no-untyped-def]
        # round half to even, as np.rint (math has no rint); NaN and inf pass through
        r = _np_floor(x)
        d = x - r
        if d > 0.5 or (d == 0.5 and _np_fmod(r, 2.0) != 0):
            r += 1
        return r
_np_isfinite, _np_isinf = math.isfinite, math.isinf


# Plain arithmetic: the CPU helpers' own Python source, compiled for the device.
_maximum = device(scalar_lib._maximum.py_func)
_minimum = device(scalar_lib._minimum.py_func)
_squared_difference = device(scalar_lib._squared_difference.py_func)
_pow = device(scalar_lib._pow.py_func)
_leaky_relu = device(scalar_lib._leaky_relu.py_func)


@device
def _floordiv_float(x, y):  # type: ignore[no-untyped-def]
    return _np_floor(x / y)


@device
def _mod_float(x, y):  # type: ignore[no-untyped-def]
    trunc = _np_fmod(x, y)
    if trunc != 0 and ((y < 0) != (trunc < 0)):
        return trunc + y
    return trunc


@device
def _softplus(x):  # type: ignore[no-untyped-def]
    if x > 0:
        return x + _np_log1p(_np_exp(-x))
    return _np_log1p(_np_exp(x))


@device
def _f64_exp(x):  # type: ignore[no-untyped-def]
    return _np_exp(x)


@device
def _f64_log(x):  # type: ignore[no-untyped-def]
    return _np_log(x)


@device
def _f64_log1p(x):  # type: ignore[no-untyped-def]
    return _np_log1p(x)


@device
def _f64_expm1(x):  # type: ignore[no-untyped-def]
    return _np_expm1(x)


@device
def _f64_tanh(x):  # type: ignore[no-untyped-def]
    return _np_tanh(x)


@device
def _f64_sigmoid(x):  # type: ignore[no-untyped-def]
    if x >= 0:
        return 1.0 / (1.0 + _np_exp(-x))
    e = _np_exp(x)
    return e / (1.0 + e)


@device
def _f32_exp(x):  # type: ignore[no-untyped-def]
    return _f32(_np_exp(x))


@device
def _f32_log(x):  # type: ignore[no-untyped-def]
    return _f32(_np_log(x))


@device
def _f32_log1p(x):  # type: ignore[no-untyped-def]
    return _f32(_np_log1p(x))


@device
def _f32_expm1(x):  # type: ignore[no-untyped-def]
    return _f32(_np_expm1(x))


@device
def _f32_tanh(x):  # type: ignore[no-untyped-def]
    return _f32(_np_tanh(x))


@device
def _f32_sigmoid(x):  # type: ignore[no-untyped-def]
    return _f32(_f64_sigmoid(_f64(x)))


@device
def _gelu_tanh_f64(x):  # type: ignore[no-untyped-def]
    return 0.5 * x * (1.0 + _np_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@device
def _gelu_tanh_f32(x):  # type: ignore[no-untyped-def]
    inner = _f32(0.7978845608028654) * (x + _f32(0.044715) * x * x * x)
    return _f32(0.5) * x * (_f32(1.0) + _f32(_np_tanh(inner)))


@device
def _gelu_erf_f64(x):  # type: ignore[no-untyped-def]
    return 0.5 * x * math.erfc(-x * 0.7071067811865476)


@device
def _gelu_erf_f32(x):  # type: ignore[no-untyped-def]
    return _f32(_gelu_erf_f64(_f64(x)))


NAMES = {name: value for name, value in globals().items() if name.startswith("_") and not name.startswith("__")}
