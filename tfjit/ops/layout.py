"""Layout ops: they move or copy elements without arithmetic."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import OpTypeError
from ..ir.types import Dim, TensorType
from .registry import Fusion, register


def _same_rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    return (in_types[0],)


register("identity", _same_rule, lambda x: x, Fusion.LAYOUT)
register("stop_gradient", _same_rule, lambda x: x, Fusion.LAYOUT)


def _reshape_rule(in_types: tuple[TensorType, ...], shape: tuple[Dim, ...]) -> tuple[TensorType, ...]:
    """`reshape[shape](x)`: static target with at most one -1 (inferred)."""
    t = in_types[0]
    if list(shape).count(-1) > 1:
        raise OpTypeError(f"reshape target {list(shape)} has more than one -1")
    known = [d for d in shape if d != -1]
    if t.is_fully_defined and all(isinstance(d, int) for d in known):
        total, rest = t.num_elements, int(np.prod(known, dtype=np.int64))
        if -1 in shape:
            if rest == 0 or total % rest:
                raise OpTypeError(f"cannot reshape {t} ({total} elements) to {list(shape)}")
            shape = tuple(total // rest if d == -1 else d for d in shape)
        elif rest != total:
            raise OpTypeError(f"cannot reshape {t} ({total} elements) to {list(shape)} ({rest} elements)")
    return (TensorType(t.dtype, tuple(None if d == -1 else d for d in shape)),)


def _reshape(x: np.ndarray, shape: tuple[Dim, ...]) -> np.ndarray:
    return np.reshape(x, shape)


register("reshape", _reshape_rule, _reshape, Fusion.LAYOUT)
