"""Elementwise unary and binary ops (binary ones broadcast like NumPy and TF)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import special

from ..ir.types import DType, TensorType, bool_
from .registry import Fusion, register
from .shapes import (broadcast_shapes, require_bool, require_float, require_numeric, same_dtype)


def _quiet(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """NumPy reference without overflow/invalid warnings: TF returns inf/NaN silently."""

    def run(*args: np.ndarray, **attrs: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = fn(*args, **attrs)
        dtype = _result_dtype(args)
        out = np.asarray(out)
        return out.astype(dtype, copy=False) if out.dtype != np.bool_ and dtype is not None else out

    run.__name__ = getattr(fn, "__name__", "reference")
    return run


def _result_dtype(args: tuple[np.ndarray, ...]) -> np.dtype | None:
    """Keep the inputs' dtype (NumPy would promote f16 math or return Python scalars)."""
    for a in args:
        a = np.asarray(a)
        if a.dtype != np.bool_:
            return a.dtype
    return None


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros((), x.dtype), x)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(x))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _selu(x: np.ndarray) -> np.ndarray:
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x))


def _gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    if approximate:
        c = np.sqrt(2.0 / np.pi)
        return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))


def _gelu_rule(in_types: tuple[TensorType, ...], approximate: bool = False) -> tuple[TensorType, ...]:
    return _same(require_float)(in_types)


def _leaky_rule(in_types: tuple[TensorType, ...], alpha: float = 0.2) -> tuple[TensorType, ...]:
    return _same(require_float)(in_types)


def _sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x)


_float_unary: dict[str, Callable[..., np.ndarray]] = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "reciprocal": lambda x: 1 / x, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "sigmoid": _sigmoid, "elu": _elu, "selu": _selu, "softplus": _softplus,
    "softsign": lambda x: x / (1 + np.abs(x)), "floor": np.floor, "ceil": np.ceil, "round": np.round,
}
_numeric_unary: dict[str, Callable[..., np.ndarray]] = {
    "neg": np.negative, "abs": np.abs, "sign": _sign, "square": np.square,
    "relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "relu6": lambda x: np.minimum(np.maximum(x, np.zeros((), x.dtype)), np.asarray(6, x.dtype)),
}
_NOT_DIFFERENTIABLE = {"floor", "ceil", "round", "sign"}

for _name, _fn in _float_unary.items():
    register(_name, _same(require_float), _quiet(_fn), Fusion.ELEMENTWISE,
             differentiable=_name not in _NOT_DIFFERENTIABLE)
for _name, _fn in _numeric_unary.items():
    register(_name, _same(require_numeric), _quiet(_fn), Fusion.ELEMENTWISE,
             differentiable=_name not in _NOT_DIFFERENTIABLE)

register("gelu", _gelu_rule, _quiet(_gelu), Fusion.ELEMENTWISE)
register("leaky_relu", _leaky_rule,
         _quiet(lambda x, alpha=0.2: np.where(x > 0, x, x * np.asarray(alpha, x.dtype))),
         Fusion.ELEMENTWISE)
register("logical_not", _same(require_bool), np.logical_not, Fusion.ELEMENTWISE, differentiable=False)
register("is_nan", _to_bool(require_float), np.isnan, Fusion.ELEMENTWISE, differentiable=False)
register("is_finite", _to_bool(require_float), np.isfinite, Fusion.ELEMENTWISE, differentiable=False)
register("is_inf", _to_bool(require_float), np.isinf, Fusion.ELEMENTWISE, differentiable=False)


def _cast_rule(in_types: tuple[TensorType, ...], dtype: DType) -> tuple[TensorType, ...]:
    (t,) = in_types
    return (t.with_dtype(dtype),)


def _cast(x: np.ndarray, dtype: DType) -> np.ndarray:
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


def _floordiv(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu":
        safe = np.where(y == 0, 1, y)
        return np.where(y == 0, 0, np.floor_divide(x, safe))
    return np.floor_divide(x, y)


def _mod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu":
        safe = np.where(y == 0, 1, y)
        return np.where(y == 0, 0, np.mod(x, safe))
    return np.mod(x, y)


def _pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and np.any(y < 0):
        raise ValueError("integers to negative integer powers are not allowed")
    return np.power(x, y)


_arith: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "floordiv": _floordiv,
    "mod": _mod, "pow": _pow, "maximum": np.maximum, "minimum": np.minimum,
    "squared_difference": lambda x, y: np.square(x - y),
}
for _name, _fn in _arith.items():
    register(_name, _binary(require_numeric), _quiet(_fn), Fusion.BROADCAST,
             differentiable=_name not in ("floordiv", "mod"))
register("divide", _binary(require_float), _quiet(np.divide), Fusion.BROADCAST)

_compare: dict[str, Callable[..., np.ndarray]] = {
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
}
for _name, _fn in _compare.items():
    register(_name, _binary(_any, out=bool_), _fn, Fusion.BROADCAST, differentiable=False)
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
