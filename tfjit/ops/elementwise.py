"""Elementwise unary and binary ops (binary ones broadcast like NumPy and TF).

References follow TF's CPU kernels: float16 is computed in float32 and rounded once (as
Eigen's half arithmetic does), overflow gives inf/NaN silently, and integer division by
zero raises `InvalidArgumentError` as TF's CPU kernels do.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import InvalidArgumentError
from ..ir.types import DType, TensorType, bool_
from .registry import Fusion, register
from .shapes import (broadcast_shapes, require, require_bool, require_float, require_numeric,
                     same_dtype)


def _widen(a: np.ndarray) -> np.ndarray:
    """float16 inputs are computed in float32: NumPy's float16 chains round every step."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _quiet(fn: Callable[..., np.ndarray], widen: bool = True) -> Callable[..., np.ndarray]:
    """Reference of an op whose inputs and result share one dtype (the type rule checks it).

    It runs without NumPy warnings (TF returns inf/NaN silently), widens float16 unless the
    op is a chain TF rounds step by step (`widen=False`), and casts the result back to the
    inputs' dtype (NumPy promotes, and returns Python scalars).
    """

    def run(*args: np.ndarray, **attrs: Any) -> np.ndarray:
        dtype = args[0].dtype
        with np.errstate(all="ignore"):
            out = np.asarray(fn(*(_widen(a) if widen else a for a in args), **attrs))
            return out.astype(dtype, copy=False)

    run.__name__ = getattr(fn, "__name__", "reference")
    return run


# -- unary ---------------------------------------------------------------------------------
def _same(check: Callable[[TensorType], None]) -> Callable[..., tuple[TensorType, ...]]:
    def rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
        (t,) = in_types
        check(t)
        return (t,)

    return rule


def _to_bool(check: Callable[[TensorType], None]) -> Callable[..., tuple[TensorType, ...]]:
    def rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
        (t,) = in_types
        check(t)
        return (t.with_dtype(bool_),)

    return rule


def _zero(x: np.ndarray) -> np.ndarray:
    return np.zeros((), x.dtype)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(_zero(x), x)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, np.expm1(x), x)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _selu(x: np.ndarray) -> np.ndarray:
    return _SELU_SCALE * np.where(x < 0, _SELU_ALPHA * np.expm1(x), x)


def _gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    """TF's formulas: erfc keeps the exact form accurate for large negative inputs."""
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
    from scipy.special import erfc  # on first use: see _sigmoid

    return 0.5 * x * erfc(-x * 0.7071067811865476)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """scipy's expit. scipy.special is imported on first use: importing it with tfjit cost
    0.1-0.2 s of `import tfjit` (measured), for the few graphs that use it."""
    from scipy.special import expit

    return expit(x)


def _leaky_relu(x: np.ndarray, alpha: float = 0.2) -> np.ndarray:
    return np.where(x > 0, x, x * np.asarray(alpha, x.dtype))


def _sign(x: np.ndarray) -> np.ndarray:
    """TF1 documents zero, not NaN, for NaN inputs."""
    return np.where(np.isnan(x), _zero(x), np.sign(x)) if x.dtype.kind == "f" else np.sign(x)


def _round(x: np.ndarray) -> np.ndarray:
    """Half to even, as TF's Round; integers are returned unchanged."""
    return np.round(x) if x.dtype.kind == "f" else x


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _zero(x))


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, _zero(x)), np.asarray(6, x.dtype))


_float_unary: dict[str, Callable[..., np.ndarray]] = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "reciprocal": lambda x: 1 / x, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "sigmoid": _sigmoid, "elu": _elu, "selu": _selu, "softplus": _softplus,
    "softsign": lambda x: x / (1 + np.abs(x)), "floor": np.floor, "ceil": np.ceil,
}
_numeric_unary: dict[str, Callable[..., np.ndarray]] = {
    "neg": np.negative, "abs": np.abs, "sign": _sign, "square": np.square, "round": _round,
    "relu": _relu, "relu6": _relu6,
}
_NOT_DIFFERENTIABLE = {"floor", "ceil", "round", "sign"}

for _name, _fn in _float_unary.items():
    register(_name, _same(require_float), _quiet(_fn), Fusion.ELEMENTWISE,
             differentiable=_name not in _NOT_DIFFERENTIABLE)
for _name, _fn in _numeric_unary.items():
    register(_name, _same(require_numeric), _quiet(_fn), Fusion.ELEMENTWISE,
             differentiable=_name not in _NOT_DIFFERENTIABLE)


def _gelu_rule(in_types: tuple[TensorType, ...], approximate: bool = False) -> tuple[TensorType, ...]:
    return _same(require_float)(in_types)


def _leaky_rule(in_types: tuple[TensorType, ...], alpha: float = 0.2) -> tuple[TensorType, ...]:
    return _same(require_float)(in_types)


register("gelu", _gelu_rule, _quiet(_gelu), Fusion.ELEMENTWISE)
register("leaky_relu", _leaky_rule, _quiet(_leaky_relu, widen=False), Fusion.ELEMENTWISE)
register("logical_not", _same(require_bool), np.logical_not, Fusion.ELEMENTWISE, differentiable=False)
register("is_nan", _to_bool(require_float), np.isnan, Fusion.ELEMENTWISE, differentiable=False)
register("is_finite", _to_bool(require_float), np.isfinite, Fusion.ELEMENTWISE, differentiable=False)
register("is_inf", _to_bool(require_float), np.isinf, Fusion.ELEMENTWISE, differentiable=False)


def _cast_rule(in_types: tuple[TensorType, ...], dtype: DType) -> tuple[TensorType, ...]:
    (t,) = in_types
    return (t.with_dtype(dtype),)


def _cast(x: np.ndarray, dtype: DType) -> np.ndarray:
    """C casts: floats truncate toward zero, nonzero is True; NaN to int is undefined in TF too."""
    with np.errstate(all="ignore"):
        return x.astype(dtype.np_dtype)


register("cast", _cast_rule, _cast, Fusion.ELEMENTWISE)


# -- binary --------------------------------------------------------------------------------
def _binary(check: Callable[[TensorType], None], out: DType | None = None) -> Callable[..., tuple[TensorType, ...]]:
    def rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
        a, b = in_types
        dtype = same_dtype(in_types)
        check(a)
        return (TensorType(out or dtype, broadcast_shapes(a.shape, b.shape)),)

    return rule


def _any(t: TensorType) -> None:
    return None


def _no_zero_divisor(y: np.ndarray) -> None:
    if y.dtype.kind in "iu" and np.any(y == 0):
        raise InvalidArgumentError(message="Integer division by zero")


def _floordiv(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Floats: floor(x / y) with the quotient rounded to x's dtype, as TF computes it
    (NumPy's floor_divide differs, e.g. 1.0 // 0.1 == 9.0)."""
    if x.dtype.kind == "f":
        return np.floor(x / y)
    _no_zero_divisor(y)
    return np.floor_divide(x, y)


def _mod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """TF's FloorMod: the remainder takes the divisor's sign."""
    if x.dtype.kind == "f":
        trunc = np.fmod(x, y)
        return np.where((trunc != 0) & ((y < 0) != (trunc < 0)), trunc + y, trunc)
    _no_zero_divisor(y)
    return np.mod(x, y)


def _pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and np.any(y < 0):
        raise InvalidArgumentError(message="Integers to negative integer powers are not allowed")
    return np.power(x, y)


_arith: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "floordiv": _floordiv,
    "mod": _mod, "pow": _pow, "maximum": np.maximum, "minimum": np.minimum,
    "squared_difference": lambda x, y: np.square(x - y),
}
# TF rounds the quotient to the dtype before flooring; widening float16 would skip that rounding.
_ROUNDED_STEPWISE = {"floordiv", "mod"}
for _name, _fn in _arith.items():
    register(_name, _binary(require_numeric), _quiet(_fn, widen=_name not in _ROUNDED_STEPWISE),
             Fusion.BROADCAST, differentiable=_name not in ("floordiv", "mod"))
register("divide", _binary(require_float), _quiet(np.divide), Fusion.BROADCAST)


def _not_bool(t: TensorType) -> None:
    require(t, not t.dtype.is_bool, "numeric tensors (TF orders numbers only)")


_compare: dict[str, tuple[Callable[..., np.ndarray], Callable[[TensorType], None]]] = {
    "equal": (np.equal, _any), "not_equal": (np.not_equal, _any), "less": (np.less, _not_bool),
    "less_equal": (np.less_equal, _not_bool), "greater": (np.greater, _not_bool),
    "greater_equal": (np.greater_equal, _not_bool),
}
for _name, (_fn, _check) in _compare.items():
    register(_name, _binary(_check, out=bool_), _fn, Fusion.BROADCAST, differentiable=False)
register("logical_and", _binary(require_bool, out=bool_), np.logical_and, Fusion.BROADCAST,
         differentiable=False)
register("logical_or", _binary(require_bool, out=bool_), np.logical_or, Fusion.BROADCAST,
         differentiable=False)
register("logical_xor", _binary(require_bool, out=bool_), np.logical_xor, Fusion.BROADCAST,
         differentiable=False)


def _select_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    cond, x, y = in_types
    require_bool(cond)
    dtype = same_dtype((x, y), "select's x and y")
    return (TensorType(dtype, broadcast_shapes(cond.shape, x.shape, y.shape)),)


def _select(cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(cond, x, y).astype(x.dtype, copy=False)


register("select", _select_rule, _select, Fusion.BROADCAST)

ELEMENTWISE_UNARY = sorted([*_float_unary, *_numeric_unary, "gelu", "leaky_relu", "logical_not",
                            "is_nan", "is_finite", "is_inf", "cast"])
ELEMENTWISE_BINARY = sorted([*_arith, "divide", *_compare, "logical_and", "logical_or", "logical_xor"])
