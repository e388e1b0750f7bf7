"""Contractions: matmul (with transposes and broadcast batch dims) and tensordot."""
from __future__ import annotations

import numpy as np

from ..errors import OpTypeError
from ..ir.types import Dim, TensorType, dims_compatible
from .registry import Fusion, register
from .shapes import broadcast_shapes, require_numeric, same_dtype


def _matmul_rule(in_types: tuple[TensorType, ...], transpose_a: bool = False,
                 transpose_b: bool = False) -> tuple[TensorType, ...]:
    a, b = in_types
    dtype = same_dtype(in_types, "matmul's operands")
    require_numeric(a)
    if a.shape is None or b.shape is None:
        return (TensorType(dtype, None),)
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise OpTypeError(f"matmul needs operands of rank >= 2, got a: {a} and b: {b}")
    m, ka = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
    kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
    if not dims_compatible(ka, kb):
        raise OpTypeError(
            f"inner dimensions differ: a is {a}{' (transposed)' if transpose_a else ''}, "
            f"b is {b}{' (transposed)' if transpose_b else ''}; {ka} != {kb}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (TensorType(dtype, tuple(batch) + (m, n)),)


def _matmul(a: np.ndarray, b: np.ndarray, transpose_a: bool = False, transpose_b: bool = False) -> np.ndarray:
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    with np.errstate(all="ignore"):  # inf * 0 is NaN silently, as in TF
        return np.matmul(_widen(a), _widen(b)).astype(a.dtype, copy=False)


def _widen(a: np.ndarray) -> np.ndarray:
    """float16 products accumulate in float32, as TF's half matmul does."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


register("matmul", _matmul_rule, _matmul, Fusion.CONTRACTION)


def _tensordot_rule(in_types: tuple[TensorType, ...], axes_a: tuple[int, ...],
                    axes_b: tuple[int, ...]) -> tuple[TensorType, ...]:
    a, b = in_types
    dtype = same_dtype(in_types, "tensordot's operands")
    require_numeric(a)
    if a.shape is None or b.shape is None:
        return (TensorType(dtype, None),)
    if len(axes_a) != len(axes_b) or len(set(axes_a)) != len(axes_a) or len(set(axes_b)) != len(axes_b):
        raise OpTypeError(f"tensordot needs as many distinct axes for a as for b, got {axes_a} and {axes_b}")
    for i, j in zip(axes_a, axes_b):
        if not (0 <= i < len(a.shape) and 0 <= j < len(b.shape)):
            raise OpTypeError(f"tensordot axes {axes_a}, {axes_b} are out of range for {a} and {b}")
        if not dims_compatible(a.shape[i], b.shape[j]):
            raise OpTypeError(f"tensordot contracts dim {i} of {a} with dim {j} of {b}: "
                              f"{a.shape[i]} != {b.shape[j]}")
    keep_a: tuple[Dim, ...] = tuple(d for i, d in enumerate(a.shape) if i not in axes_a)
    keep_b: tuple[Dim, ...] = tuple(d for j, d in enumerate(b.shape) if j not in axes_b)
    return (TensorType(dtype, keep_a + keep_b),)


def _tensordot(a: np.ndarray, b: np.ndarray, axes_a: tuple[int, ...], axes_b: tuple[int, ...]) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = np.tensordot(_widen(a), _widen(b), axes=(list(axes_a), list(axes_b)))
        return out.astype(a.dtype, copy=False)


register("tensordot", _tensordot_rule, _tensordot, Fusion.CONTRACTION)
