"""Scalar helpers the generated kernels call; numba inlines them into the element loops.

Semantics follow NumPy/TF element by element (NaN propagation in maximum/minimum, TF's sign(NaN)
= 0, floor division and modulo of floats as TF computes them). Transcendentals of float32 go
through `mathlib` when it provides a vectorisable version, else through NumPy/libm.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.core import types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

from . import mathlib

_f32 = np.float32
_f64 = np.float64
_i32 = np.int32
_i64 = np.int64
_i8 = np.int8
_u8 = np.uint8
_bool = np.bool_

inline = njit(inline="always", error_model="numpy")


@inline
def _maximum(x, y):  # type: ignore[no-untyped-def]
    return x if (x > y or x != x) else y


@inline
def _minimum(x, y):  # type: ignore[no-untyped-def]
    return x if (x < y or x != x) else y


def row_extreme(better, name):  # type: ignore[no-untyped-def]
    """A row's max or min (NaN if it holds one) with eight independent accumulators, which
    vectorise (one accumulator cannot: each step waits for the last, DESIGN.md). `better`
    is a plain vector max/min; a separate OR-reduction over the row finds NaN (measured: 15%
    faster than tracking NaN inside the accumulating loop).

    An ordinary cached function, not inlined at numba-IR level: inlining its sixteen `better`
    calls into every row kernel cost 0.15-0.25 s of each such kernel's compile (measured), and a call
    per row costs nothing next to the row's loop. `name` names it for numba's cache, which
    tells functions apart by name and line."""

    def extreme(v):  # type: ignore[no-untyped-def]
        n = v.shape[0]
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = v[0]
        i = 0
        while i + 8 <= n:
            m0, m1, m2, m3 = better(m0, v[i]), better(m1, v[i + 1]), better(m2, v[i + 2]), better(m3, v[i + 3])
            m4, m5, m6, m7 = better(m4, v[i + 4]), better(m5, v[i + 5]), better(m6, v[i + 6]), better(m7, v[i + 7])
            i += 8
        for j in range(i, n):
            m0 = better(m0, v[j])
        nan = 0
        for j in range(n):
            nan = nan | np.int32(v[j] != v[j])
        if nan:
            for j in range(n):
                if v[j] != v[j]:
                    return v[j]
        return better(better(better(m0, m1), better(m2, m3)), better(better(m4, m5), better(m6, m7)))

    extreme.__name__ = extreme.__qualname__ = name
    return njit(cache=True, error_model="numpy")(extreme)


@njit(forceinline=True, cache=True)
def _greater_of(x, y):  # type: ignore[no-untyped-def]
    return x if x > y else y  # a vector max; NaN is handled by the caller


@njit(forceinline=True, cache=True)
def _lesser_of(x, y):  # type: ignore[no-untyped-def]
    return x if x < y else y


_row_max_any = row_extreme(_greater_of, "_row_max_any")
_row_min_any = row_extreme(_lesser_of, "_row_min_any")


@inline
def _order_key(bits):  # type: ignore[no-untyped-def]
    """A float32's bits as an int32 ordered like the float (-0 just below +0); its own inverse."""
    return _i32(bits ^ _i32(_i32(bits >> 31) & _i32(0x7FFFFFFF)))


def row_extreme_f32(largest, name):  # type: ignore[no-untyped-def]
    """A float32 row's max (`largest`) or min as an integer max/min of order keys, which LLVM
    vectorises to 16 lanes (the float accumulators of `row_extreme` stayed scalar vmaxss:
    softmax's max pass over [4096, 1024] took 0.29 ms instead of 0.90 ms, measured). NaN is found
    by an integer max of the magnitudes' bits (above inf's bits only for NaN) and returned as the
    first NaN in the row; of +0 and -0 the max is +0 and the min -0. Cached like `row_extreme`."""
    def extreme(v):  # type: ignore[no-untyped-def]
        bits = v.view(np.int32)
        key = _i32(-2147483648) if largest else _i32(2147483647)
        magnitude = _i32(0)
        for j in range(v.shape[0]):
            k = _order_key(bits[j])
            key = k if (k > key if largest else k < key) else key
            a = _i32(bits[j] & _i32(0x7FFFFFFF))
            magnitude = a if a > magnitude else magnitude
        if magnitude > _i32(0x7F800000):
            for j in range(v.shape[0]):
                if v[j] != v[j]:
                    return v[j]
        return _order_key(key).view(np.float32)
    extreme.__name__ = extreme.__qualname__ = name
    return njit(cache=True, error_model="numpy")(extreme)


_row_max_f32 = row_extreme_f32(True, "_row_max_f32")
_row_min_f32 = row_extreme_f32(False, "_row_min_f32")


def _row_max(v):  # type: ignore[no-untyped-def]
    """The max of a 1-D row (NaN if it holds one): order keys for float32, else accumulators."""
    return np.max(v)


def _row_min(v):  # type: ignore[no-untyped-def]
    """The min of a 1-D row (NaN if it holds one): order keys for float32, else accumulators."""
    return np.min(v)


def _row_dispatch(public, f32, other) -> None:  # type: ignore[no-untyped-def]
    @overload(public, jit_options={"error_model": "numpy"})
    def _typed(v):  # type: ignore[no-untyped-def]
        if v.dtype == types.float32 and v.layout == "C":
            return lambda v: f32(v)
        return lambda v: other(v)


_row_dispatch(_row_max, _row_max_f32, _row_max_any)
_row_dispatch(_row_min, _row_min_f32, _row_min_any)


@inline
def _squared_difference(x, y):  # type: ignore[no-untyped-def]
    d = x - y
    return d * d


@inline
def _pow(x, y):  # type: ignore[no-untyped-def]
    return x ** y


@inline
def _floordiv_float(x, y):  # type: ignore[no-untyped-def]
    return np.floor(x / y)


@inline
def _mod_float(x, y):  # type: ignore[no-untyped-def]
    trunc = np.fmod(x, y)
    if trunc != 0 and ((y < 0) != (trunc < 0)):
        return trunc + y
    return trunc


@inline
def _softplus(x):  # type: ignore[no-untyped-def]
    # log(1 + exp(x)) without overflow, as np.logaddexp(0, x)
    if x > 0:
        return x + np.log1p(np.exp(-x))
    return np.log1p(np.exp(x))


@inline
def _leaky_relu(x, alpha):  # type: ignore[no-untyped-def]
    return x if x > 0 else x * alpha


@inline
def _f64_exp(x):  # type: ignore[no-untyped-def]
    return math.exp(x)


@inline
def _f64_log(x):  # type: ignore[no-untyped-def]
    return np.log(x)


@inline
def _f64_log1p(x):  # type: ignore[no-untyped-def]
    return np.log1p(x)


@inline
def _f64_expm1(x):  # type: ignore[no-untyped-def]
    return math.expm1(x)


@inline
def _f64_tanh(x):  # type: ignore[no-untyped-def]
    return math.tanh(x)


@inline
def _f64_sigmoid(x):  # type: ignore[no-untyped-def]
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# float32 transcendentals: mathlib's vectorisable versions (their own fastmath flags survive,
# since LLVM, not numba, inlines them). Called directly rather than through mathlib's `exp` &
# co. overloads, whose glue function was one more compile per function (40 ms cold, measured);
# kernels call these for float32 values only.
@inline
def _f32_exp(x):  # type: ignore[no-untyped-def]
    return mathlib._exp_f32(_f32(x))


@inline
def _f32_log(x):  # type: ignore[no-untyped-def]
    return mathlib._log_f32(_f32(x))


@inline
def _f32_log1p(x):  # type: ignore[no-untyped-def]
    return mathlib._log1p_f32(_f32(x))


@inline
def _f32_expm1(x):  # type: ignore[no-untyped-def]
    return mathlib._expm1_f32(_f32(x))


@inline
def _f32_tanh(x):  # type: ignore[no-untyped-def]
    return mathlib._tanh_f32(_f32(x))


@inline
def _f32_sigmoid(x):  # type: ignore[no-untyped-def]
    return mathlib._sigmoid_f32(_f32(x))


# float32 sigmoid through libm's exp (the other transcendentals call libm straight from the
# kernel, scalar.py): for values computed once per row and for rows narrower than a vector,
# where mathlib's forms would not vectorise and would only cost their compile.
@inline
def _f32_sigmoid_libm(x):  # type: ignore[no-untyped-def]
    e = math.exp(-abs(_f32(x)))  # never overflows
    return (_f32(1) if x >= 0 else e) / (_f32(1) + e)


@inline
def _gelu_tanh_f64(x):  # type: ignore[no-untyped-def]
    return 0.5 * x * (1.0 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@inline
def _gelu_tanh_f32(x):  # type: ignore[no-untyped-def]
    inner = _f32(0.7978845608028654) * (x + _f32(0.044715) * x * x * x)
    return _f32(0.5) * x * (_f32(1.0) + _f32_tanh(inner))


@inline
def _gelu_erf_f64(x):  # type: ignore[no-untyped-def]
    return 0.5 * x * math.erfc(-x * 0.7071067811865476)


@inline
def _gelu_erf_f32(x):  # type: ignore[no-untyped-def]
    return _f32(_gelu_erf_f64(_f64(x)))


@intrinsic
def _contiguous_row(typingctx, row):  # type: ignore[no-untyped-def]
    """A 1-D array the caller knows to be contiguous (a row of a view with strided rows),
    typed as such, without numba's run-time check and copy path (np.ascontiguousarray's
    took 4 us of the LSTM's 40 us gate kernel, measured): its loops then vectorise."""
    if not isinstance(row, types.Array) or row.ndim != 1:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return row.copy(layout="C")(row), codegen


NAMES = {name: value for name, value in globals().items() if name.startswith("_") and not name.startswith("__")}
