"""TF1 tensor creation: placeholders, constants, fills, ranges and shape queries."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError, InvalidArgumentError
from ..errors import where as at
from ..ir.attrs import ArrayAttr
from ..ir.types import DType, as_dtype, float32, float64, int32, int64, make_shape
from ..ops.creation import range_size
from ..trace.graph import get_default_graph
from ..trace.source import user_location
from ..trace.tensor import Tensor, convert_to_tensor
from .layout_ops import int_operand
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
    """A constant, as TF1's `tf.constant`.

    With a `shape`, a value of the same size is reshaped and a shorter one is padded with its
    last element (a scalar fills the shape); `verify_shape=True` demands the exact shape.
    """
    array = _typed_array(value, as_dtype(dtype) if dtype is not None else None)
    if shape is not None:
        array = _shaped(array, tuple(int(d) for d in make_shape(shape)), verify_shape)
    return get_default_graph().emit("constant", [], {"value": ArrayAttr(array)}, name=name).outputs[0]


def _typed_array(value: Any, dtype: DType | None) -> np.ndarray:
    """`value` as an array of `dtype`, or of TF's default dtype for it when `dtype` is None."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tfjit has no tensors of {array.dtype}; cannot convert {value!r}")
    if dtype is None:
        return _as_tf_default(array, value)
    if not isinstance(value, (np.ndarray, np.generic)) and not _python_fits(array.dtype, dtype):
        raise TypeError(f"Expected {dtype.name}, got {value!r} of type '{type(value).__name__}' instead.")
    return array.astype(dtype.np_dtype)


def _python_fits(kind_of: np.dtype, dtype: DType) -> bool:
    """TF accepts Python bools and ints for numbers, floats only for floats, bools only for bool."""
    if dtype.is_bool:
        return kind_of.kind == "b"
    return kind_of.kind in "biu" or dtype.is_floating


def _shaped(array: np.ndarray, dims: tuple[int, ...], verify_shape: bool) -> np.ndarray:
    size = int(np.prod(dims, dtype=np.int64))
    if verify_shape and array.shape != dims:
        raise TypeError(f"Expected Tensor's shape: {dims}, got {array.shape}.")
    if size == 0:
        return np.empty(dims, array.dtype)
    if array.size > size:
        raise TypeError(f"Too many elements provided. Needed at most {size}, but received {array.size}")
    if array.size == 0 and size > 0:
        raise TypeError(f"constant has no elements to fill shape {list(dims)}")
    flat = array.reshape(-1)
    if flat.size < size:  # TF1 repeats the last element
        flat = np.concatenate([flat, np.repeat(flat[-1:], size - flat.size)])
    return flat.reshape(dims)


def _as_tf_default(array: np.ndarray, value: Any) -> np.ndarray:
    """Python floats become float32 and Python ints int32 (int64 when too large), as TF does;
    NumPy arrays keep their dtype."""
    if isinstance(value, (np.ndarray, np.generic)):
        return array
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype == np.int64 and _fits_int32(array):
        return array.astype(np.int32)
    return array


def _fits_int32(array: np.ndarray) -> bool:
    info = np.iinfo(np.int32)
    return array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max)


def _shape_args(shape: Any) -> tuple[tuple[Any, ...], Tensor | None]:
    """A shape argument (list, TensorShape, array or int tensor, dims may be tensors): its dims
    known while building (None where unknown) and, unless all are known, the tensor holding it."""
    entries, dynamic = int_operand(shape, "shape")
    if entries.ndim == 0 and dynamic is None:  # tf.zeros(5) means shape [5]
        entries = entries.reshape(1)
    if entries.ndim != 1:
        raise ValueError(f"a shape must be a vector of dims, got {shape!r}")
    return tuple(entries.tolist()), dynamic


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


_RANGE_DTYPES = (int32, int64, float32, float64)  # TF's order for inferring range's dtype


def range(start: Any, limit: Any = None, delta: Any = 1, dtype: Any = None, name: str = "range") -> Tensor:  # noqa: A001
    """TF's `tf.range`: 1 to 3 arguments; without `dtype` the widest argument's dtype wins
    (int32 < int64 < float32 < float64). The length is static when all three are known."""
    if limit is None:
        start, limit = 0, start
    args = tuple(convert_to_tensor(a) if hasattr(a, "_as_graph_tensor") else a for a in (start, limit, delta))
    if dtype is None:
        dt = max((_default_dtype(a) for a in args), key=_range_rank)
        tensors = [_cast_to(convert_to_tensor(a, dtype=dt) if not isinstance(a, Tensor) else a, dt) for a in args]
    else:
        dt = as_dtype(dtype)
        tensors = [convert_to_tensor(a, dtype=dt) for a in args]
    return emit1("range", tensors, {"size": _static_range_size(tensors)}, name)


def _default_dtype(value: Any) -> DType:
    if isinstance(value, Tensor):
        return value.dtype
    return as_dtype(_typed_array(value, None).dtype)


def _range_rank(dtype: DType) -> int:
    if dtype not in _RANGE_DTYPES:
        raise TypeError(f"range's arguments must be int32, int64, float32 or float64, got {dtype.name}")
    return _RANGE_DTYPES.index(dtype)


def _cast_to(t: Tensor, dtype: DType) -> Tensor:
    return t if t.dtype == dtype else emit1("cast", [t], {"dtype": dtype}, "Cast")


def _static_range_size(tensors: list[Tensor]) -> int | None:
    values = [constant_value(t) for t in tensors]
    if any(v is None for v in values):
        return None
    try:
        return range_size(*(v[()] for v in values))
    except InvalidArgumentError as e:
        raise GraphError(f"{at('range', user_location())}: {e.message}") from None


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
    """Reshape to `shape` (one -1 is inferred); dims may be tensors, as in
    `tf.reshape(x, [tf.shape(x)[0], -1])` or `tf.reshape(x, tf.shape(y))`.

    The node keeps what is known of the target while building as its `shape` attribute
    (None where unknown) and, unless all of it is known, takes the target as a second input.
    """
    from .layout_ops import int_operand

    t = convert_to_tensor(tensor)
    entries, dynamic = int_operand(shape, "reshape's shape")
    if entries.ndim != 1:
        raise ValueError(f"reshape's shape must be a vector, got {shape!r}")
    inputs = [t] if dynamic is None else [t, dynamic]
    return emit1("reshape", inputs, {"shape": tuple(entries.tolist())}, name or "Reshape")
