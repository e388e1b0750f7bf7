"""Vectorisable float32 transcendentals for the generated numba kernels.

PyPI's llvmlite has no SVML, so `np.exp` & co. in an njit loop stay one libm call per element
and the loop does not vectorise. These functions are plain float32 arithmetic and integer bit
operations (Cephes-style range reduction and minimax polynomials), so LLVM turns a loop that
calls them into AVX-512/AVX2 code. Call `mathlib.exp(x)` etc. from njit code: float32
arguments take the code below, float64 and integer arguments take NumPy/libm (accuracy first),
and `pow` takes it when both arguments are float32. Outside njit the functions are NumPy's.

Accuracy: ulps from NumPy's float64 result rounded to float32 (so "1" means a neighbour of the
correctly rounded value), measured over all 2**32 float32 inputs; pow over 126M pairs drawn
as in tests/test_mathlib.py (random bit patterns, bases of every magnitude with exponents that
reach overflow and denormal results, negative bases with integer exponents):

    function  max error  inputs off by 1 (by 2)  method
    exp       1 ulp      0.40%                   2**k exp(r), Cody-Waite ln2, minimax polynomial
    expm1     1 ulp      0.29%                   2**k p + (2**k - 1), one final rounding
    log       1 ulp      0.32%                   Cephes logf, denormals scaled first
    log1p     1 ulp      0.39%                   log(u) + c / u, u = 1 + x, c = 1 + x - u exact
    tanh      2 ulps     3.88% (0.031%)          e / (e + 2), e = expm1(2|x|)
    sigmoid   2 ulps     2.91% (0.0056%)         1 / (1 + e) or e / (1 + e), e = exp(-|x|)
    erf       1 ulp      0.69%                   x + x P(x**2) below 1, 1 - exp(-x**2) Q(x)
    pow       1 ulp      0.0005%                 exp(y log|x|) in float64, C99 special cases

Special values are NumPy's: NaN in gives NaN; exp(-inf) = 0, exp(inf) = inf and exp overflows
to inf from 88.72283935546875 on; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf; denormal
inputs and results are exact where NumPy's are; tanh(+-inf) = +-1; sigmoid(-inf) = 0 (and
sigmoid(x) for x < -87 is the denormal e**x, not 0); erf(+-inf) = +-1; odd functions keep -0;
pow follows C99/NumPy (pow(x, 0) = 1 even for NaN, pow(-0, -3) = -inf, pow(-8, 1/3) = NaN...).
The kernel's own fastmath flags do not reach this code (see forceinline below).

Speed: `OMP_WAIT_POLICY=passive python -m tfjit.bench.mathlib_speed` (16M float32, serial njit
loop writing a preallocated output, medians of 15; 2-vCPU AMD Zen 4 with AVX-512, a shared
machine). `x * 2` is the memory-traffic floor, so the cheap functions are near memory-bound:

    function   mathlib  njit+libm     numpy  libm/mathlib  numpy/mathlib
    x * 2       4.01ms     4.20ms    4.00ms         1.05x          1.00x
    exp         5.02ms    38.92ms    7.72ms         7.76x          1.54x
    expm1       4.66ms   197.51ms    6.25ms        42.40x          1.34x
    log         7.86ms    43.39ms    6.32ms         5.52x          0.80x
    log1p       9.91ms   173.32ms    7.86ms        17.48x          0.79x
    tanh        5.42ms   244.84ms    6.13ms        45.15x          1.13x
    sigmoid     6.52ms    40.64ms   55.41ms         6.23x          8.50x
    erf        10.81ms   234.41ms  299.17ms        21.68x         27.67x
    pow        34.30ms    76.67ms   12.34ms         2.24x          0.36x
    gelu_tanh   8.09ms   257.15ms   70.02ms        31.77x          8.65x

NumPy 2.4's own exp/log/tanh/pow ufuncs are SIMD code too; sigmoid (scipy's expit), erf and
GELU are not. pow works in float64 (8 lanes, two divisions per 16 values): a kernel should
turn constant exponents into multiplications, sqrt or a reciprocal instead.

What vectorises (numba 0.68.1, llvmlite 0.50, found with `inspect_llvm`/`inspect_asm`):
- Bit casts: `np.float32(x).view(np.int32)` and `np.int32(i).view(np.float32)` on scalars
  become `bitcast`s and vectorise (the bare `x.view` of a float32 value is refused by numba).
- numba widens int32 arithmetic to int64: `i >> 23`, `i - 1` are int64 unless wrapped in
  `np.int32(...)`. LLVM then vectorises with 8 x i64 halves and conversions; wrapping every
  integer expression took log from 0.59 to 0.48 ns/element.
- Every float constant is `np.float32(...)` (numba promotes float32 * 0.5 to float64).
- `np.rint` -> vrndscaleps and `np.int32(float)` -> vcvttps2dq are cheap; the 1.5 * 2**23
  magic-number rounding measured no faster. Converting NaN/inf to int is poison in LLVM, so
  inputs are clamped first (comparisons send NaN to a bound) and NaN is restored by a final
  select.
- `a if c else b` becomes a compare and a masked blend, so every function is branch-free and
  pays for all of its paths; a division (vdivps) vectorises only with error_model="numpy".
- float64 inside a float32 loop vectorises as 8 x double (pow's core).
- Inlining decides everything. numba's `inline='always'` inlines at numba-IR level, where the
  callee's operations take the *caller's* fastmath flags: with the kernels' 'reassoc', LLVM
  reassociated the Cody-Waite reduction and the two-step scaling, and exp was 2-4 ulps off
  on 41% of [-80, 80] and wrong for denormal results. So the public functions' forms are
  ordinary njit functions with their own flags and `forceinline=True` (LLVM alwaysinline):
  LLVM inlines them into the kernel's loop and the inlined instructions keep these flags
  (their shared parts are IR-inlined into them, taking the same flags). Without forceinline the
  largest (erf) stayed a call and the loop ran scalar; the `overload` glue needs forceinline
  in its jit_options too. `cache=True` keeps their bitcode, so a cached helper still inlines
  into a new kernel.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_F = np.float32
_I = np.int32
_D = np.float64
_L = np.int64

# Only 'contract' (FMAs): 'reassoc' undoes the split-constant reductions and two-step scalings
# (measured: exp 4 ulps off), 'nsz' loses -0, and 'arcp'/'afn' measured no faster.
_FLAGS = {"contract"}
# forceinline: LLVM inlines the call into the kernel's loop (so the loop vectorises) and the
# inlined instructions keep these flags, whatever the kernel's.
_OPTIONS = {"fastmath": _FLAGS, "error_model": "numpy", "forceinline": True, "cache": True}
_jit = njit(**_OPTIONS)
# The parts the functions share are inlined into each at numba-IR level, where they take its
# flags (the same as theirs): compiling each part as a function of its own cost 0.1 s of the
# first call per part (exp was six compilations, measured), and their code is the same.
_part = njit(inline="always", error_model="numpy")

_INF = _F(np.inf)
_NAN = _F(np.nan)
_LOG2E = _F(1.44269504088896341)
_LN2_HI = _F(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; k * _LN2_HI is exact for |k| < 2**9
_LN2_LO = _F(-2.12194440e-4)
_SQRT_HALF = _F(0.707106781186547524)
_FLT_MIN = _F(1.17549435e-38)
_TWO_23 = _F(8388608.0)


@_jit  # a function of its own: IR-inlined, it made exp and expm1 18% slower (measured)
def _clamp(x, lo, hi):  # type: ignore[no-untyped-def]
    """x limited to [lo, hi]; NaN becomes hi, so later integer conversions stay defined."""
    x = x if x < hi else hi
    return x if x > lo else lo


@_part
def _pow2(k):  # type: ignore[no-untyped-def]
    """2**k as float32 for integer k in [-126, 127], built from its exponent bits."""
    return _I((k + 127) << 23).view(np.float32)


@intrinsic
def _ldexp(typingctx, y, k):  # type: ignore[no-untyped-def]
    """LLVM's ldexp: y * 2**k rounded once; one AVX-512 vscalefps (LLVM 22 lowers it so)."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f32, i32 = ir.FloatType(), ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.ldexp", [f32, i32], ir.FunctionType(f32, [f32, i32]))
        return builder.call(fn, args)
    return types.float32(types.float32, types.int32), codegen


@_part
def _scale_scalef(y, k):  # type: ignore[no-untyped-def]
    """y * 2**k rounding once, by vscalefps."""
    return _ldexp(y, k)


@_part
def _scale_bits(y, k):  # type: ignore[no-untyped-def]
    """y * 2**k for y in [0.5, 2) and k in [-150, 129], rounding once (denormal results too):
    y * 2**(k // 2) is exact, made by adding k // 2 to y's exponent bits, and one multiplication
    by 2**(k - k // 2) rounds. For CPUs without AVX-512, where LLVM's ldexp is a libm call."""
    half = _I(k >> 1)
    return _I(_F(y).view(np.int32) + _I(half << 23)).view(np.float32) * _pow2(_I(k - half))


# The same bits for every float32 input of exp either way (measured); vscalefps made exp 17%
# faster in an L1-resident loop (one instruction for seven).
_scale = _scale_scalef if llvm.get_host_cpu_features().get("avx512f", False) else _scale_bits


@_part
def _exp_reduce(x):  # type: ignore[no-untyped-def]
    """(k, r) with x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite: two-part ln2 keeps r exact)."""
    k = np.rint(x * _LOG2E)
    r = x - k * _LN2_HI
    return k, r - k * _LN2_LO


@_part
def _expm1_poly(r):  # type: ignore[no-untyped-def]
    """exp(r) - 1 for |r| <= ln2 / 2 (Cephes expf minimax polynomial)."""
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    return p * r * r + r


@_part
def _exp_poly(r):  # type: ignore[no-untyped-def]
    """exp(r) - 1 for |r| <= ln2 / 2, to within 3.1e-9 of exp(r): a minimax fit of
    (exp(r) - 1 - r) / r**2 weighted by r**2 / exp(r) (Lawson's iteration over Chebyshev nodes),
    one degree below `_expm1_poly`. For exp only: expm1 needs a small relative error in exp(r) - 1
    itself. exp stays 1 ulp with 0.404% of float32 inputs off by 1 (0.401% with `_expm1_poly`),
    and ran 5% faster (measured)."""
    p = _F(0.0013814613)
    p = p * r + _F(0.00836871)
    p = p * r + _F(0.04166839)
    p = p * r + _F(0.16666521)
    p = p * r + _F(0.49999994)
    return p * r * r + r


@_part
def _exp_core(x):  # type: ignore[no-untyped-def]
    """exp(x) for x in [-87.3, 88.3], where 2**k is a normal float32 (no special cases)."""
    k, r = _exp_reduce(x)
    return (_expm1_poly(r) + _F(1.0)) * _pow2(_I(k))


@_jit
def _exp_f32(x):  # type: ignore[no-untyped-def]
    """2**k exp(r); inputs clamped to [-104, 89] so that k stays an exact small integer."""
    k, r = _exp_reduce(_clamp(x, _F(-104.0), _F(89.0)))
    y = _scale(_exp_poly(r) + _F(1.0), _I(k))  # overflows to inf from 88.72283935546875 on
    return x if x != x else y


@_jit
def _expm1_f32(x):  # type: ignore[no-untyped-def]
    """2**k (1 + p) - 1 arranged so that only the final sum rounds (no cancellation)."""
    k, r = _exp_reduce(_clamp(x, _F(-30.0), _F(89.0)))
    h = _pow2(_I(k) - 1)  # expm1(x) = 2 (h p + (h - 1/2)) with h = 2**(k-1), p = expm1(r)
    y = (h * _expm1_poly(r) + (h - _F(0.5))) * _F(2.0)
    y = x if np.abs(x) < _F(2.0 ** -25) else y  # exact for tiny x, keeps -0 and denormals
    return x if x != x else y


@_part
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
    """Cephes logf with denormal inputs scaled into the normal range first."""
    y = _log_plus(x, _F(0.0))
    y = x if x == _INF else y
    y = -_INF if x == _F(0.0) else y
    return _NAN if (x < _F(0.0) or x != x) else y


@_jit
def _log1p_f32(x):  # type: ignore[no-untyped-def]
    """log(u) + c / u with u = 1 + x rounded and c = 1 + x - u computed exactly (fdlibm's way)."""
    u = _F(1.0) + x
    c = (_F(1.0) - (u - x) if u >= _F(2.0) else x - (u - _F(1.0))) / u
    y = _log_plus(u, c)
    y = x if u == _F(1.0) else y  # keeps -0 and denormals exact
    y = u if u == _INF else y
    y = -_INF if u == _F(0.0) else y
    return _NAN if (u < _F(0.0) or x != x) else y


@_part
def _copysign(y, x):  # type: ignore[no-untyped-def]
    """|y| with the sign bit of x, for y >= 0 (bit operations: exact for -0 too)."""
    sign = np.float32(x).view(np.int32) & _I(-2147483648)
    return _I(np.float32(y).view(np.int32) | sign).view(np.float32)


@_jit
def _tanh_f32(x):  # type: ignore[no-untyped-def]
    """sign(x) e / (e + 2) with e = expm1(2|x|): one path, accurate near 0 and near +-1 alike."""
    a = np.abs(x)
    a = a if a < _F(9.1) else _F(9.1)  # tanh rounds to 1 beyond 9.02; NaN goes here, fixed below
    k, r = _exp_reduce(a + a)
    h = _pow2(_I(k))  # e = expm1(2a) = h p + (h - 1); k <= 27, so h - 1 is exact or negligible
    e = h * _expm1_poly(r) + (h - _F(1.0))
    y = _copysign(e / (e + _F(2.0)), x)
    return x if x != x else y


@_jit
def _sigmoid_f32(x):  # type: ignore[no-untyped-def]
    """1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|)."""
    e = _exp_f32(-np.abs(x))  # never overflows; e / (1 + e) keeps denormal results for x < -87
    return (_F(1.0) if x >= _F(0.0) else e) / (_F(1.0) + e)


@_part
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


@_part
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
    """A polynomial below 1; 1 - erfc above, where erfc's relative error shrinks by erfc <= 0.16."""
    a = _clamp(np.abs(x), _F(1.0), _F(4.0))  # erf rounds to 1 beyond 4
    large = _F(1.0) - _erfc_large(a)
    large = -large if x < _F(0.0) else large
    y = _erf_small(x) if np.abs(x) < _F(1.0) else large
    return x if x != x else y


@_part
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


@_part
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


@_part
def _odd_integer(y):  # type: ignore[no-untyped-def]
    """Whether float32 y is an odd integer (every float32 with |y| >= 2**24 is even)."""
    small = np.abs(y) < _F(16777216.0)
    yi = _I(y if small else _F(0.0))
    return small and _F(yi) == y and (yi & 1) == 1


@_jit
def _pow_f32(x, y):  # type: ignore[no-untyped-def]
    """exp(y log|x|) in float64, rounded once to float32; then C99's signs and special cases."""
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
    from scipy import special  # scipy is a dependency anyway (numba's np.dot); loaded on use

    return special.erf(x)


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
