"""TF1 tensor creation: placeholders, constants, fills, ranges and shape queries."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.attrs import ArrayAttr
from ..ir.types import as_dtype, float32, int32, make_shape
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from .math_ops import constant_value, emit1


def placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> Tensor:
    """A value fed at run time; `None` dims (or `shape=None`) accept any size."""
    attrs = {"dtype": as_dtype(dtype), "shape": make_shape(shape)}
    return get_default_graph().emit("placeholder", [], attrs, name=name or "Placeholder").outputs[0]


def placeholder_with_default(input: Any, shape: Any, name: str | None = None) -> Tensor:
    default = convert_to_tensor(input)
    return emit1("placeholder_with_default", [default], {"shape": make_shape(shape)}, name or "PlaceholderWithDefault")


def constant(value: Any, dtype: Any = None, shape: Any = None, name: str = "Const",
             verify_shape: bool = False) -> Tensor:
    """A constant; a scalar `value` with a `shape` is broadcast to it, as in TF."""
    array = np.asarray(value)
    if dtype is not None:
        dt = as_dtype(dtype)
        if array.dtype.kind == "f" and dt.is_integer and not np.all(np.mod(array, 1) == 0):
            raise TypeError(f"Expected {dt.name}, got {value!r} of type '{type(value).__name__}' instead.")
        array = array.astype(dt.np_dtype)
    else:
        array = _as_tf_default(array, value)
    if shape is not None:
        dims = tuple(int(d) for d in make_shape(shape))
        if array.size == 1:
            array = np.broadcast_to(array.reshape(()), dims).copy()
        elif array.size == int(np.prod(dims)) and not verify_shape:
            array = array.reshape(dims)
        else:
            raise TypeError(f"constant of {array.size} elements cannot take shape {list(dims)}")
    return get_default_graph().emit("constant", [], {"value": ArrayAttr(array)}, name=name).outputs[0]


def _as_tf_default(array: np.ndarray, value: Any) -> np.ndarray:
    """Python floats become float32 and Python ints int32, as TF does; NumPy arrays keep theirs."""
    if isinstance(value, (np.ndarray, np.generic)):
        return array
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype == np.int64:
        return array.astype(np.int32)
    return array


def _shape_args(shape: Any) -> tuple[tuple[Any, ...], Tensor | None]:
    """A static shape, or (best static guess, dims tensor) when any dim is a tensor."""
    if isinstance(shape, Tensor):
        value = constant_value(shape)
        if value is not None:
            return tuple(int(d) for d in value.reshape(-1)), None
        n = shape.type.shape[0] if shape.type.shape else None
        if not isinstance(n, int):
            raise ValueError("the rank of a dynamic shape tensor must be known while building")
        return (None,) * n, shape
    if hasattr(shape, "as_list"):
        shape = shape.as_list()
    dims = list(shape) if isinstance(shape, (list, tuple)) else [shape]
    if any(isinstance(d, Tensor) for d in dims):
        static = tuple(d if isinstance(d, int) else _static_dim(d) for d in dims)
        from .layout_ops import stack

        return static, stack([convert_to_tensor(d, dtype=int32) for d in dims])
    return tuple(int(d) for d in dims), None


def _static_dim(d: Any) -> int | None:
    value = constant_value(d)
    return None if value is None else int(value)


def fill(dims: Any, value: Any, name: str | None = None) -> Tensor:
    v = convert_to_tensor(value)
    static, dynamic = _shape_args(dims)
    inputs = [v] if dynamic is None else [v, dynamic]
    return emit1("fill", inputs, {"shape": static}, name or "Fill")


def zeros(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    return fill(shape, np.zeros((), as_dtype(dtype).np_dtype), name or "zeros")


def ones(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    return fill(shape, np.ones((), as_dtype(dtype).np_dtype), name or "ones")


def zeros_like(tensor: Any, dtype: Any = None, name: str | None = None, optimize: bool = True) -> Tensor:
    t = convert_to_tensor(tensor)
    return emit1("zeros_like", [t], {"dtype": as_dtype(dtype) if dtype is not None else None}, name or "zeros_like")


def ones_like(tensor: Any, dtype: Any = None, name: str | None = None, optimize: bool = True) -> Tensor:
    t = convert_to_tensor(tensor)
    return emit1("ones_like", [t], {"dtype": as_dtype(dtype) if dtype is not None else None}, name or "ones_like")


def range(start: Any, limit: Any = None, delta: Any = 1, dtype: Any = None, name: str = "range") -> Tensor:  # noqa: A001
    """TF's `tf.range`; the length is static when start, limit and delta are known."""
    if limit is None:
        start, limit = 0, start
    values = [constant_value(x) for x in (start, limit, delta)]
    if dtype is None:
        kinds = [np.asarray(v).dtype.kind if v is not None else x.dtype.np_dtype.kind
                 for v, x in zip(values, (start, limit, delta))]
        dtype = float32 if "f" in kinds else int32
    dt = as_dtype(dtype)
    tensors = [convert_to_tensor(x, dtype=dt) if not isinstance(x, Tensor) else x for x in (start, limit, delta)]
    size = None
    if all(v is not None for v in values):
        size = len(np.arange(*(np.asarray(v).item() for v in values)))
    return emit1("range", tensors, {"size": size}, name)


def shape(input: Any, name: str | None = None, out_type: Any = int32) -> Tensor:
    return emit1("shape", [convert_to_tensor(input)], {"out_type": as_dtype(out_type)}, name or "Shape")


def size(input: Any, name: str | None = None, out_type: Any = int32) -> Tensor:
    return emit1("size", [convert_to_tensor(input)], {"out_type": as_dtype(out_type)}, name or "Size")


def rank(input: Any, name: str | None = None) -> Tensor:
    return emit1("rank", [convert_to_tensor(input)], {}, name or "Rank")


def identity(input: Any, name: str | None = None) -> Tensor:
    return emit1("identity", [convert_to_tensor(input)], {}, name or "Identity")


def stop_gradient(input: Any, name: str | None = None) -> Tensor:
    return emit1("stop_gradient", [convert_to_tensor(input)], {}, name or "StopGradient")


def reshape(tensor: Any, shape: Any, name: str | None = None) -> Tensor:
    """Reshape to a static target (one -1 allowed)."""
    t = convert_to_tensor(tensor)
    static, dynamic = _shape_args(shape)
    if dynamic is not None:
        raise ValueError("tfjit's reshape needs a target shape known while building (ints and -1); "
                         "a target computed from tf.shape() is not supported yet")
    return emit1("reshape", [t], {"shape": tuple(-1 if d is None else d for d in static)}, name or "Reshape")
