"""Copies between devices, inserted by placement where a value crosses a device boundary."""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType
from .registry import Fusion, register


def _rule(in_types: tuple[TensorType, ...], device: str) -> tuple[TensorType, ...]:
    return (in_types[0],)


def _copy(x: np.ndarray, device: str) -> np.ndarray:
    return np.array(x, copy=True)


register("device_copy", _rule, _copy, Fusion.LAYOUT)
