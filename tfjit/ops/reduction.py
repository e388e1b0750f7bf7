"""Reductions along axes (`axes=None` reduces everything), with `keepdims`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..ir.types import DType, TensorType, int64
from .registry import Fusion, register
from .shapes import normalize_axis, reduced_shape, require_bool, require_numeric

Axes = tuple[int, ...] | None


def _rule(check: Callable[[TensorType], None]) -> Callable[..., tuple[TensorType, ...]]:
    def rule(in_types: tuple[TensorType, ...], axes: Axes = None, keepdims: bool = False) -> tuple[TensorType, ...]:
        (t,) = in_types
        check(t)
        return (TensorType(t.dtype, reduced_shape(t, axes, keepdims)),)

    return rule


def _reference(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def run(x: np.ndarray, axes: Axes = None, keepdims: bool = False) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = fn(x, axis=axes, keepdims=keepdims)
        return np.asarray(out).astype(x.dtype, copy=False)

    return run


def _mean(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    if x.dtype.kind in "iu":  # TF's integer mean truncates like its integer division
        n = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
        total = np.sum(x, axis=axis, keepdims=keepdims, dtype=np.int64)
        return np.trunc(total / max(n, 1)).astype(x.dtype)
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=np.float64 if x.dtype == np.float16 else None)


def _max(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    if x.size == 0:  # TF returns the lowest value for an empty max
        init = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        return np.max(x, axis=axis, keepdims=keepdims, initial=init)
    return np.max(x, axis=axis, keepdims=keepdims)


def _min(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    if x.size == 0:
        init = np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).max
        return np.min(x, axis=axis, keepdims=keepdims, initial=init)
    return np.min(x, axis=axis, keepdims=keepdims)


def _logsumexp(x: np.ndarray, axis: Axes, keepdims: bool) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim, x.dtype)
    m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
    s = np.sum(np.exp(x - m), axis=axis, keepdims=True)
    out = np.log(s) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


register("sum", _rule(require_numeric), _reference(np.sum), Fusion.REDUCTION)
register("mean", _rule(require_numeric), _reference(_mean), Fusion.REDUCTION)
register("max", _rule(require_numeric), _reference(_max), Fusion.REDUCTION)
register("min", _rule(require_numeric), _reference(_min), Fusion.REDUCTION)
register("prod", _rule(require_numeric), _reference(np.prod), Fusion.REDUCTION)
register("logsumexp", _rule(require_numeric), _reference(_logsumexp), Fusion.REDUCTION)
register("all", _rule(require_bool), _reference(np.all), Fusion.REDUCTION, differentiable=False)
register("any", _rule(require_bool), _reference(np.any), Fusion.REDUCTION, differentiable=False)


def _arg_rule(in_types: tuple[TensorType, ...], axis: int, output_type: DType = int64) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_numeric(t)
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
