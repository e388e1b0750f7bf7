"""Hashable attribute values that are not plain Python scalars."""
from __future__ import annotations

import hashlib

import numpy as np

from .types import DType, TensorType, as_dtype


class ArrayAttr:
    """An immutable NumPy array held as a node attribute (a constant's value).

    Hash and equality are by dtype, shape and bytes, so structurally equal constants are
    equal keys for CSE and the kernel cache.
    """

    __slots__ = ("array", "_digest")

    def __init__(self, array: np.ndarray):
        arr = np.array(array, copy=True)
        arr.setflags(write=False)
        self.array = arr
        h = hashlib.sha256()
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
        self._digest = h.hexdigest()

    @property
    def dtype(self) -> DType:
        return as_dtype(self.array.dtype)

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, tuple(self.array.shape))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayAttr) and self._digest == other._digest

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return f"ArrayAttr({self.type})"
