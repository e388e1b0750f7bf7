"""Reductions along axes (`axes=None` reduces everything), with `keepdims`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import OpTypeError
from ..ir.types import DType, TensorType, int32, int64
from .registry import Fusion, register
from .shapes import normalize_axis, reduced_shape, require_bool, require_float, require_numeric

Axes = tuple[int, ...] | None


def _rule(check: Callable[[TensorType], None]) -> Callable[..., tuple[TensorType, ...]]:
    def rule(in_types: tuple[TensorType, ...], axes: Axes = None, keepdims: bool = False) -> tuple[TensorType, ...]:
        (t,) = in_types
        check(t)
        return (TensorType(t.dtype, reduced_shape(t, axes, keepdims)),)

    return rule


def _reference(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Quiet (TF reduces inf/NaN silently), float16 summed in float32, result in x's dtype."""

    def run(x: np.ndarray, axes: Axes = None, keepdims: bool = False) -> np.ndarray:
        wide = x.astype(np.float32) if x.dtype == np.float16 else x
        with np.errstate(all="ignore"):
            out = fn(wide, axis=axes, keepdims=keepdims)
            return np.asarray(out).astype(x.dtype, copy=False)

    run.__name__ = getattr(fn, "__name__", "reference")
    return run


def _mean(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    """Sum over count: an empty float mean is NaN (np.mean would also warn)."""
    n = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
    if x.dtype.kind in "iu":  # TF's integer mean is the sum divided by the count, truncated
        total = np.sum(x, axis=axis, keepdims=keepdims, dtype=np.int64)
        return np.sign(total) * (np.abs(total) // max(n, 1))
    return np.sum(x, axis=axis, keepdims=keepdims) / x.dtype.type(n)


def _lowest(dtype: np.dtype) -> Any:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _highest(dtype: np.dtype) -> Any:
    return np.inf if dtype.kind == "f" else np.iinfo(dtype).max


def _max(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    """An empty max is the lowest value, as in TF; NaN propagates (TF >= 2.4)."""
    return np.max(x, axis=axis, keepdims=keepdims, initial=_lowest(x.dtype))


def _min(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    return np.min(x, axis=axis, keepdims=keepdims, initial=_highest(x.dtype))


def _logsumexp(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    """TF's formula: shift by the finite max so large values do not overflow; -inf rows stay -inf."""
    m = _max(x, axis, keepdims=True)
    m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return out
    return out.reshape(()) if axis is None else np.squeeze(out, axis=axis)


register("sum", _rule(require_numeric), _reference(np.sum), Fusion.REDUCTION)
register("mean", _rule(require_numeric), _reference(_mean), Fusion.REDUCTION)
register("max", _rule(require_numeric), _reference(_max), Fusion.REDUCTION)
register("min", _rule(require_numeric), _reference(_min), Fusion.REDUCTION)
register("prod", _rule(require_numeric), _reference(np.prod), Fusion.REDUCTION)
register("logsumexp", _rule(require_float), _reference(_logsumexp), Fusion.REDUCTION)
register("all", _rule(require_bool), _reference(np.all), Fusion.REDUCTION, differentiable=False)
register("any", _rule(require_bool), _reference(np.any), Fusion.REDUCTION, differentiable=False)


def _arg_rule(in_types: tuple[TensorType, ...], axis: int, output_type: DType = int64) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_numeric(t)
    if output_type not in (int32, int64):
        raise OpTypeError(f"output_type must be int32 or int64, got {output_type.name}")
    if t.shape is None:
        return (TensorType(output_type, None),)
    axis = normalize_axis(axis, len(t.shape), t)
    return (TensorType(output_type, tuple(d for i, d in enumerate(t.shape) if i != axis)),)


def _argref(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def run(x: np.ndarray, axis: int, output_type: DType = int64) -> np.ndarray:
        return fn(x, axis=axis).astype(output_type.np_dtype)

    return run


register("argmax", _arg_rule, _argref(np.argmax), Fusion.REDUCTION, differentiable=False)
register("argmin", _arg_rule, _argref(np.argmin), Fusion.REDUCTION, differentiable=False)

REDUCTIONS = ("sum", "mean", "max", "min", "prod", "logsumexp", "all", "any", "argmax", "argmin")
