"""Tensor types of the IR: a dtype and a shape whose dims may be unknown or symbolic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

import numpy as np


@dataclass(frozen=True)
class DType:
    """A tensor element type; `short` is the IR spelling (`f32`), `name` the TF one."""

    name: str
    short: str
    np_dtype: np.dtype

    def __repr__(self) -> str:
        return f"tf.{self.name}"

    @property
    def as_numpy_dtype(self) -> type:
        return self.np_dtype.type

    @property
    def is_floating(self) -> bool:
        return self.np_dtype.kind == "f"

    @property
    def is_integer(self) -> bool:
        return self.np_dtype.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.np_dtype.kind == "b"

    @property
    def base_dtype(self) -> "DType":
        return self


float16 = DType("float16", "f16", np.dtype(np.float16))
float32 = DType("float32", "f32", np.dtype(np.float32))
float64 = DType("float64", "f64", np.dtype(np.float64))
int8 = DType("int8", "i8", np.dtype(np.int8))
uint8 = DType("uint8", "u8", np.dtype(np.uint8))
int32 = DType("int32", "i32", np.dtype(np.int32))
int64 = DType("int64", "i64", np.dtype(np.int64))
bool_ = DType("bool", "bool", np.dtype(np.bool_))

ALL_DTYPES = (float16, float32, float64, int8, uint8, int32, int64, bool_)
_BY_SHORT = {d.short: d for d in ALL_DTYPES}
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NUMPY = {d.np_dtype: d for d in ALL_DTYPES}
_ALIASES = {"float": float32, "double": float64, "half": float16, "int": int32, "long": int64}


def as_dtype(x: object) -> DType:
    """Accept a DType, a TF/IR name ('float32', 'f32', 'float'), a NumPy dtype or a Python type."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        found = _BY_NAME.get(x) or _BY_SHORT.get(x) or _ALIASES.get(x)
        if found is None:
            raise TypeError(f"unknown dtype {x!r}; expected one of {sorted(_BY_NAME)}")
        return found
    if x is float:
        return float32
    if x is int:
        return int32
    if x is bool:
        return bool_
    try:
        npd = np.dtype(x)
    except TypeError as e:
        raise TypeError(f"cannot interpret {x!r} as a dtype") from e
    if npd not in _BY_NUMPY:
        raise TypeError(f"dtype {npd} is not supported by tfjit; use one of {sorted(_BY_NAME)}")
    return _BY_NUMPY[npd]


# A dim is a known size, None (unknown) or a symbol name shared by dims known to be equal.
Dim = Union[int, None, str]


@dataclass(frozen=True)
class TensorType:
    """dtype plus shape; `shape is None` means the rank itself is unknown."""

    dtype: DType
    shape: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_fully_defined(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def num_elements(self) -> int | None:
        if not self.is_fully_defined:
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.short}{format_shape(self.shape)}"


def format_dim(d: Dim) -> str:
    if d is None:
        return "?"
    return str(d)


def format_shape(shape: tuple[Dim, ...] | None) -> str:
    if shape is None:
        return "[*]"
    return "[" + ",".join(format_dim(d) for d in shape) + "]"


def make_shape(dims: Iterable[object] | None) -> tuple[Dim, ...] | None:
    """Normalise a user's shape (list with None/-1, TensorShape, tuple) to IR dims."""
    if dims is None:
        return None
    if hasattr(dims, "as_list"):
        listed = dims.as_list()
        if listed is None:
            return None
        dims = listed
    out: list[Dim] = []
    for d in dims:
        if d is None or (isinstance(d, (int, np.integer)) and int(d) == -1):
            out.append(None)
        elif isinstance(d, str):
            out.append(d)
        elif hasattr(d, "value"):  # TF1 Dimension
            out.append(d.value)
        else:
            out.append(int(d))
    return tuple(out)


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Whether a concrete or symbolic dim may equal another."""
    return a is None or b is None or isinstance(a, str) or isinstance(b, str) or a == b


def shape_compatible(expected: tuple[Dim, ...] | None, actual: tuple[int, ...]) -> bool:
    if expected is None:
        return True
    return len(expected) == len(actual) and all(dims_compatible(e, a) for e, a in zip(expected, actual))


def merge_dims(a: Dim, b: Dim) -> Dim:
    """The more informative of two dims known to be equal."""
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return a if a is not None else b
