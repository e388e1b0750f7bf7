"""Constants, fills and ranges."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import OpTypeError
from ..ir.attrs import ArrayAttr
from ..ir.types import DType, Dim, TensorType
from .registry import Fusion, register


def _constant_rule(in_types: tuple[TensorType, ...], value: ArrayAttr) -> tuple[TensorType, ...]:
    return (value.type,)


def _constant(value: ArrayAttr) -> np.ndarray:
    return value.array


register("constant", _constant_rule, _constant, Fusion.CREATION, differentiable=False)


def _fill_rule(in_types: tuple[TensorType, ...], shape: tuple[Dim, ...]) -> tuple[TensorType, ...]:
    """`fill[shape](value)` with a static shape, or `fill[shape](value, dims)` with dims at run time."""
    value = in_types[0]
    if value.shape not in ((), None):
        raise OpTypeError(f"fill's value must be a scalar, got {value}")
    if len(in_types) == 2:
        dims = in_types[1]
        if dims.dtype.is_floating or dims.rank != 1:
            raise OpTypeError(f"fill's dims must be an integer vector, got {dims}")
    elif not all(isinstance(d, int) for d in shape):
        raise OpTypeError(f"fill with unknown dims {shape} needs a dims tensor")
    return (TensorType(value.dtype, tuple(shape)),)


def _fill(value: np.ndarray, dims: np.ndarray | None = None, shape: tuple[Dim, ...] = ()) -> np.ndarray:
    target = tuple(int(d) for d in dims) if dims is not None else shape
    return np.full(target, value, dtype=value.dtype)


register("fill", _fill_rule, _fill, Fusion.CREATION, differentiable=False)


def _like_rule(in_types: tuple[TensorType, ...], dtype: DType | None = None) -> tuple[TensorType, ...]:
    (t,) = in_types
    return (t.with_dtype(dtype or t.dtype),)


register("zeros_like", _like_rule,
         lambda x, dtype=None: np.zeros(x.shape, (dtype.np_dtype if dtype else x.dtype)),
         Fusion.ELEMENTWISE, differentiable=False)
register("ones_like", _like_rule,
         lambda x, dtype=None: np.ones(x.shape, (dtype.np_dtype if dtype else x.dtype)),
         Fusion.ELEMENTWISE, differentiable=False)


def _range_rule(in_types: tuple[TensorType, ...], size: int | None = None) -> tuple[TensorType, ...]:
    """`range[size](start, limit, delta)`; `size` is the static length when the builder knows it."""
    for t in in_types:
        if t.shape not in ((), None):
            raise OpTypeError(f"range's start, limit and delta must be scalars, got {t}")
    dtypes = {t.dtype for t in in_types}
    if len(dtypes) != 1:
        raise OpTypeError(f"range's start, limit and delta must share a dtype, got {[str(t) for t in in_types]}")
    return (TensorType(in_types[0].dtype, (size,)),)


def _range(start: np.ndarray, limit: np.ndarray, delta: np.ndarray, size: Any = None) -> np.ndarray:
    if delta == 0:
        raise ValueError("range's delta must not be zero")
    return np.arange(start, limit, delta, dtype=start.dtype)


register("range", _range_rule, _range, Fusion.CREATION, differentiable=False)
