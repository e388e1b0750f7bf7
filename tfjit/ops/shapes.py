"""Shared pieces of type rules: broadcasting, axis normalisation, dtype checks."""
from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import OpTypeError
from ..ir.types import DType, Dim, TensorType, merge_dims


def broadcast_dims(a: Dim, b: Dim, sa: object, sb: object) -> Dim:
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            raise OpTypeError(f"shapes {sa} and {sb} are not broadcast-compatible")
        return a
    if a == b:
        return a
    return merge_dims(a, b) if (isinstance(a, int) or isinstance(b, int)) else None


def broadcast_shapes(*shapes: tuple[Dim, ...] | None) -> tuple[Dim, ...] | None:
    """NumPy broadcasting with unknown dims; None (unknown rank) is contagious."""
    if any(s is None for s in shapes):
        return None
    out: tuple[Dim, ...] = ()
    for s in shapes:
        n = max(len(out), len(s))
        a = (1,) * (n - len(out)) + tuple(out)
        b = (1,) * (n - len(s)) + tuple(s)
        out = tuple(broadcast_dims(x, y, _fmt(out), _fmt(s)) for x, y in zip(a, b))
    return out


def _fmt(shape: Sequence[Dim]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def same_dtype(types: Iterable[TensorType], what: str = "inputs") -> DType:
    types = list(types)
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        listed = ", ".join(str(t) for t in types)
        raise OpTypeError(f"{what} must have the same dtype, got {listed}; use tf.cast to convert")
    return types[0].dtype


def require(t: TensorType, ok: bool, what: str) -> None:
    if not ok:
        raise OpTypeError(f"expected {what}, got {t}")


def require_float(t: TensorType) -> None:
    require(t, t.dtype.is_floating, "a floating-point tensor")


def require_numeric(t: TensorType) -> None:
    require(t, not t.dtype.is_bool, "a numeric tensor")


def require_bool(t: TensorType) -> None:
    require(t, t.dtype.is_bool, "a bool tensor")


def normalize_axis(axis: int, rank: int | None, shape: object = None) -> int:
    """A non-negative axis; raises naming the rank when out of range."""
    if rank is None:
        return axis
    if not -rank <= axis < rank:
        raise OpTypeError(f"axis {axis} is out of range for a tensor of rank {rank} (shape {shape})")
    return axis % rank


def normalize_axes(axes: int | Sequence[int] | None, rank: int | None, shape: object = None) -> tuple[int, ...] | None:
    """Reduction axes as a sorted tuple of non-negative ints; None means every axis."""
    if axes is None:
        return None
    if isinstance(axes, int):
        axes = (axes,)
    out = sorted({normalize_axis(int(a), rank, shape) for a in axes})
    return tuple(out)


def reduced_shape(t: TensorType, axes: tuple[int, ...] | None, keepdims: bool) -> tuple[Dim, ...] | None:
    if t.shape is None:
        return None if (axes is not None or keepdims) else ()
    rank = len(t.shape)
    axes_set = set(range(rank)) if axes is None else set(normalize_axes(axes, rank, t))
    if keepdims:
        return tuple(1 if i in axes_set else d for i, d in enumerate(t.shape))
    return tuple(d for i, d in enumerate(t.shape) if i not in axes_set)
