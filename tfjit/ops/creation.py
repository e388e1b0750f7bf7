"""Constants, fills and ranges."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, OpTypeError
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
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise OpTypeError(f"fill's dims must be non-negative, got {list(shape)}")
    if len(in_types) == 2:
        dims = in_types[1]
        if not dims.dtype.is_integer or dims.rank not in (1, None):
            raise OpTypeError(f"fill's dims must be an integer vector, got {dims}")
    elif not all(isinstance(d, int) for d in shape):
        raise OpTypeError(f"fill with unknown dims {shape} needs a dims tensor")
    return (TensorType(value.dtype, tuple(shape)),)


def _fill(value: np.ndarray, dims: np.ndarray | None = None, shape: tuple[Dim, ...] = ()) -> np.ndarray:
    target = tuple(int(d) for d in dims) if dims is not None else shape
    if any(d < 0 for d in target):
        raise InvalidArgumentError(message=f"fill's dims must be non-negative, got {list(target)}")
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
    if in_types[0].dtype.is_bool:
        raise OpTypeError("range needs numbers, got bool")
    return (TensorType(in_types[0].dtype, (size,)),)


def range_size(start: np.generic, limit: np.generic, delta: np.generic) -> int:
    """TF's length of a range (computed in the range's dtype), with TF's argument checks."""
    if delta == 0:
        raise InvalidArgumentError(message=f"Requires delta != 0: {delta}")
    if delta > 0 and start > limit:
        raise InvalidArgumentError(message=f"Requires start <= limit when delta > 0: {start}/{limit}")
    if delta < 0 and start < limit:
        raise InvalidArgumentError(message=f"Requires start >= limit when delta < 0: {start}/{limit}")
    if np.asarray(start).dtype.kind in "iu":
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        return (span + step - 1) // step
    with np.errstate(all="ignore"):
        return int(np.ceil(np.abs((limit - start) / delta)))


def _range(start: np.ndarray, limit: np.ndarray, delta: np.ndarray, size: Any = None) -> np.ndarray:
    """`start + i * delta` in the range's dtype, as TF's kernel computes it."""
    n = range_size(start[()], limit[()], delta[()])
    if start.dtype.kind in "iu":
        return (int(start) + np.arange(n, dtype=np.int64) * int(delta)).astype(start.dtype)
    with np.errstate(all="ignore"):
        return np.arange(n).astype(start.dtype) * delta + start


register("range", _range_rule, _range, Fusion.CREATION, differentiable=False)
