"""Vectorisable float32 transcendentals for numba kernels (docstring completed below)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

_F = np.float32
_I = np.int32
_D = np.float64
_L = np.int64

# Not the kernels' flag set: 'reassoc' lets LLVM rewrite (y * 2**a) * 2**b as y * (2**a * 2**b),
# which overflows, and undo the extra precision of split constants; 'nsz' loses -0.
_FLAGS = {"contract", "arcp", "afn"}
_OPTIONS = {"fastmath": _FLAGS, "error_model": "numpy", "nogil": True, "forceinline": True}
_jit = njit(**_OPTIONS)

_INF = _F(np.inf)
_NAN = _F(np.nan)
_LOG2E = _F(1.44269504088896341)
_LN2_HI = _F(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; k * _LN2_HI is exact for |k| < 2**9
_LN2_LO = _F(-2.12194440e-4)
_EXP_OVERFLOW = _F(88.72283935546875)  # smallest float32 whose exp overflows
_SQRT_HALF = _F(0.707106781186547524)
_FLT_MIN = _F(1.17549435e-38)
_TWO_23 = _F(8388608.0)


@_jit
def _clamp(x, lo, hi):  # type: ignore[no-untyped-def]
    """x limited to [lo, hi]; NaN becomes hi, so later integer conversions stay defined."""
    x = x if x < hi else hi
    return x if x > lo else lo


@_jit
def _pow2(k):  # type: ignore[no-untyped-def]
    """2**k as float32 for integer k in [-126, 127], built from its exponent bits."""
    return _I((k + 127) << 23).view(np.float32)


@_jit
def _scale(y, k):  # type: ignore[no-untyped-def]
    """y * 2**k for k in [-252, 254] in two exact steps, so denormal results round once."""
    half = _I(k >> 1)
    return (y * _pow2(half)) * _pow2(_I(k - half))


@_jit
def _exp_reduce(x):  # type: ignore[no-untyped-def]
    """(k, r) with x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite: two-part ln2 keeps r exact)."""
    k = np.rint(x * _LOG2E)
    r = x - k * _LN2_HI
    return k, r - k * _LN2_LO


@_jit
def _expm1_poly(r):  # type: ignore[no-untyped-def]
    """exp(r) - 1 for |r| <= ln2 / 2 (Cephes expf minimax polynomial)."""
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    return p * r * r + r


@_jit
def _exp_core(x):  # type: ignore[no-untyped-def]
    """exp(x) for x in [-87.3, 88.3], where 2**k is a normal float32 (no special cases)."""
    k, r = _exp_reduce(x)
    return (_expm1_poly(r) + _F(1.0)) * _pow2(_I(k))


@_jit
def _exp_f32(x):  # type: ignore[no-untyped-def]
    k, r = _exp_reduce(_clamp(x, _F(-104.0), _F(89.0)))
    y = _scale(_expm1_poly(r) + _F(1.0), _I(k))
    y = _INF if x >= _EXP_OVERFLOW else y
    return x if x != x else y


@_jit
def _expm1_f32(x):  # type: ignore[no-untyped-def]
    k, r = _exp_reduce(_clamp(x, _F(-30.0), _F(89.0)))
    h = _pow2(_I(k) - 1)  # expm1(x) = 2 (h p + (h - 1/2)) with h = 2**(k-1), p = expm1(r)
    y = (h * _expm1_poly(r) + (h - _F(0.5))) * _F(2.0)
    y = x if np.abs(x) < _F(2.0 ** -25) else y  # exact for tiny x, keeps -0 and denormals
    y = _INF if x >= _EXP_OVERFLOW else y
    return x if x != x else y


@_jit
def _log_plus(x, c):  # type: ignore[no-untyped-def]
    """log(x) + c for positive finite x and small c (Cephes logf): x = m 2**e, log1p(m - 1)."""
    tiny = x < _FLT_MIN
    xs = x * _TWO_23 if tiny else x  # denormals become normal; their exponent is fixed below
    bits = np.float32(xs).view(np.int32)
    e = _I(((bits >> 23) & 0xFF) - (_I(149) if tiny else _I(126)))
    m = _I((bits & 0x7FFFFF) | 0x3F000000).view(np.float32)  # m in [1/2, 1)
    low = m < _SQRT_HALF
    f = (m + m if low else m) - _F(1.0)  # exact, in [-0.29, 0.41]
    ef = _F(_I(e - (_I(1) if low else _I(0))))
    z = f * f
    p = _F(7.0376836292e-2)
    p = p * f + _F(-1.1514610310e-1)
    p = p * f + _F(1.1676998740e-1)
    p = p * f + _F(-1.2420140846e-1)
    p = p * f + _F(1.4249322787e-1)
    p = p * f + _F(-1.6668057665e-1)
    p = p * f + _F(2.0000714765e-1)
    p = p * f + _F(-2.4999993993e-1)
    p = p * f + _F(3.3333331174e-1)
    y = p * z * f + (ef * _LN2_LO + c) - _F(0.5) * z
    return (f + y) + ef * _LN2_HI


@_jit
def _log_f32(x):  # type: ignore[no-untyped-def]
    y = _log_plus(x, _F(0.0))
    y = x if x == _INF else y
    y = -_INF if x == _F(0.0) else y
    return _NAN if (x < _F(0.0) or x != x) else y


@_jit
def _log1p_f32(x):  # type: ignore[no-untyped-def]
    u = _F(1.0) + x
    # log(1 + x) = log(u) + c / u with c = 1 + x - u, computed exactly (as fdlibm's log1p)
    c = (_F(1.0) - (u - x) if u >= _F(2.0) else x - (u - _F(1.0))) / u
    y = _log_plus(u, c)
    y = x if u == _F(1.0) else y  # keeps -0 and denormals exact
    y = u if u == _INF else y
    y = -_INF if u == _F(0.0) else y
    return _NAN if (u < _F(0.0) or x != x) else y


@_jit
def _copysign(y, x):  # type: ignore[no-untyped-def]
    """|y| with the sign bit of x, for y >= 0 (bit operations: exact for -0 too)."""
    sign = np.float32(x).view(np.int32) & _I(-2147483648)
    return _I(np.float32(y).view(np.int32) | sign).view(np.float32)


@_jit
def _tanh_f32(x):  # type: ignore[no-untyped-def]
    a = np.abs(x)
    a = a if a < _F(9.1) else _F(9.1)  # tanh rounds to 1 beyond 9.02; NaN goes here, fixed below
    k, r = _exp_reduce(a + a)
    h = _pow2(_I(k) - 1)  # expm1(2a) as in _expm1_f32, k in [0, 26]: no special cases
    e = (h * _expm1_poly(r) + (h - _F(0.5))) * _F(2.0)
    y = _copysign(e / (e + _F(2.0)), x)  # accurate at 0 and near 1 alike
    return x if x != x else y


@_jit
def _sigmoid_f32(x):  # type: ignore[no-untyped-def]
    e = _exp_f32(-np.abs(x))  # never overflows; e / (1 + e) keeps denormal results for x < -87
    return (_F(1.0) if x >= _F(0.0) else e) / (_F(1.0) + e)


@_jit
def _erf_small(x):  # type: ignore[no-untyped-def]
    """erf(x) for |x| < 1: x + x P(x**2), P a minimax fit of erf(x) / x - 1 (one rounding at 0)."""
    z = x * x
    p = _F(7.920368079794571e-05)
    p = p * z + _F(-0.0008030761382542551)
    p = p * z + _F(0.005190733820199966)
    p = p * z + _F(-0.02685512602329254)
    p = p * z + _F(0.11283618211746216)
    p = p * z + _F(-0.3761262893676758)
    p = p * z + _F(0.12837916612625122)
    return x + x * p


@_jit
def _erfc_large(a):  # type: ignore[no-untyped-def]
    """erfc(a) for a in [1, 4]: exp(-a**2) times a minimax fit of erfc(a) exp(a**2) around 2.5."""
    u = a - _F(2.5)
    p = _F(-3.972140234509425e-07)
    p = p * u + _F(1.6645138884996413e-06)
    p = p * u + _F(-3.926686076738406e-06)
    p = p * u + _F(1.4394312529475428e-05)
    p = p * u + _F(-5.912399501539767e-05)
    p = p * u + _F(0.0002128929045284167)
    p = p * u + _F(-0.0007335402769967914)
    p = p * u + _F(0.0024660450872033834)
    p = p * u + _F(-0.008001540787518024)
    p = p * u + _F(0.02493818663060665)
    p = p * u + _F(-0.0743473544716835)
    p = p * u + _F(0.21080635488033295)
    return _exp_core(-(a * a)) * p


@_jit
def _erf_f32(x):  # type: ignore[no-untyped-def]
    a = _clamp(np.abs(x), _F(1.0), _F(4.0))  # erf rounds to 1 beyond 4
    large = _F(1.0) - _erfc_large(a)
    large = -large if x < _F(0.0) else large
    y = _erf_small(x) if np.abs(x) < _F(1.0) else large
    return x if x != x else y


@_jit
def _log_f64(a):  # type: ignore[no-untyped-def]
    """ln(a) for positive finite a to ~1e-12 relative: a = m 2**e, log m = 2 atanh(f / (2 + f))."""
    bits = np.float64(a).view(np.int64)
    e = _L((bits >> 52) - 1023)
    m = _L((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    high = m > 1.4142135623730951
    f = (m * 0.5 if high else m) - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    p = s2 * (1.0 / 13.0) + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return 2.0 * s * p + _D(e + (_L(1) if high else _L(0))) * 0.6931471805599453


@_jit
def _exp_f64(t):  # type: ignore[no-untyped-def]
    """exp(t) for t in [-120, 100] to ~1e-12 relative (Taylor series after reduction by ln2)."""
    k = np.rint(t * 1.4426950408889634)
    r = t - k * 0.6931471805599453
    p = r * (1.0 / 362880.0) + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _L((_L(k) + 1023) << 52).view(np.float64)


@_jit
def _odd_integer(y):  # type: ignore[no-untyped-def]
    """Whether float32 y is an odd integer (every float32 with |y| >= 2**24 is even)."""
    small = np.abs(y) < _F(16777216.0)
    yi = _I(y if small else _F(0.0))
    return small and _F(yi) == y and (yi & 1) == 1


@_jit
def _pow_f32(x, y):  # type: ignore[no-untyped-def]
    a = np.abs(x)
    lg = _log_f64(_D(a))  # in float64: |y log a| reaches 104, and needs 2**-24 absolute error
    lg = -np.inf if a == _F(0.0) else lg
    lg = np.inf if a == _INF else lg
    t = _D(y) * lg
    t = t if t < 100.0 else 100.0  # NaN goes here too, and is fixed below
    t = t if t > -120.0 else -120.0
    mag = _F(_exp_f64(t))
    neg = _I((np.float32(x).view(np.int32) >> 31) & _I(_odd_integer(y)))
    r = _I(np.float32(mag).view(np.int32) ^ (neg << 31)).view(np.float32)
    r = _NAN if (x < _F(0.0) and x > -_INF and np.floor(y) != y) else r
    r = _NAN if (x != x or y != y) else r
    one = y == _F(0.0) or x == _F(1.0) or (a == _F(1.0) and np.abs(y) == _INF)
    return _F(1.0) if one else r


# The public functions: NumPy outside njit; inside njit, float32 arguments take the
# vectorisable code above and other types take NumPy/libm.

def exp(x):  # type: ignore[no-untyped-def]
    """e**x."""
    return np.exp(x)


def expm1(x):  # type: ignore[no-untyped-def]
    """e**x - 1, accurate near 0."""
    return np.expm1(x)


def log(x):  # type: ignore[no-untyped-def]
    """Natural logarithm."""
    return np.log(x)


def log1p(x):  # type: ignore[no-untyped-def]
    """log(1 + x), accurate near 0."""
    return np.log1p(x)


def tanh(x):  # type: ignore[no-untyped-def]
    """Hyperbolic tangent."""
    return np.tanh(x)


def sigmoid(x):  # type: ignore[no-untyped-def]
    """1 / (1 + e**-x) without overflow."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def erf(x):  # type: ignore[no-untyped-def]
    """The error function."""
    return np.vectorize(math.erf, otypes=[np.result_type(x, np.float32)])(x)


def pow(x, y):  # type: ignore[no-untyped-def]
    """x**y with C99/NumPy special cases."""
    return np.power(x, y)


@_jit
def _sigmoid_libm(x):  # type: ignore[no-untyped-def]
    e = np.exp(-np.abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


def _unary(public, fast, libm) -> None:  # type: ignore[no-untyped-def]
    @overload(public, jit_options=_OPTIONS)
    def _typed(x):  # type: ignore[no-untyped-def]
        if x == types.float32:
            return lambda x: fast(x)
        return lambda x: libm(x)


_unary(exp, _exp_f32, njit(lambda x: np.exp(x)))
_unary(expm1, _expm1_f32, njit(lambda x: np.expm1(x)))
_unary(log, _log_f32, njit(lambda x: np.log(x)))
_unary(log1p, _log1p_f32, njit(lambda x: np.log1p(x)))
_unary(tanh, _tanh_f32, njit(lambda x: np.tanh(x)))
_unary(sigmoid, _sigmoid_f32, _sigmoid_libm)
_unary(erf, _erf_f32, njit(lambda x: math.erf(x)))


@overload(pow, jit_options=_OPTIONS)
def _typed_pow(x, y):  # type: ignore[no-untyped-def]
    if x == types.float32 and y == types.float32:
        return lambda x, y: _pow_f32(x, y)
    return lambda x, y: np.power(x, y)
