"""Ops about a tensor's shape rather than its values, and index-producing ops."""
from __future__ import annotations

import numpy as np

from ..errors import OpTypeError
from ..ir.types import DType, TensorType, int32, int64
from .registry import Fusion, register
from .shapes import require_bool


def _index_type(out_type: DType) -> None:
    if out_type not in (int32, int64):
        raise OpTypeError(f"out_type must be int32 or int64, got {out_type.name}")


def _shape_rule(in_types: tuple[TensorType, ...], out_type: DType = int32) -> tuple[TensorType, ...]:
    (t,) = in_types
    _index_type(out_type)
    return (TensorType(out_type, (t.rank,)),)


def _size_rule(in_types: tuple[TensorType, ...], out_type: DType = int32) -> tuple[TensorType, ...]:
    _index_type(out_type)
    return (TensorType(out_type, ()),)


register("shape", _shape_rule, lambda x, out_type=int32: np.asarray(x.shape, out_type.np_dtype),
         Fusion.CREATION, differentiable=False)
register("size", _size_rule, lambda x, out_type=int32: np.asarray(x.size, out_type.np_dtype),
         Fusion.CREATION, differentiable=False)
register("rank", lambda in_types: (TensorType(int32, ()),), lambda x: np.asarray(x.ndim, np.int32),
         Fusion.CREATION, differentiable=False)


def _where_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_bool(t)
    return (TensorType(int64, (None, t.rank)),)


register("where_indices", _where_rule, lambda c: np.argwhere(c).astype(np.int64), Fusion.OPAQUE,
         differentiable=False)
