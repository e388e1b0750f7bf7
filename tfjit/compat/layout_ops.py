"""TF1 layout API: transpose, expand_dims, squeeze, concat, split, stack, unstack, slice,
strided_slice, gather, one_hot, pad, tile, broadcast_to.

Importing this module installs `Tensor.__getitem__` (Python indexing as TF1's `_slice_helper`).
Integer arguments (shapes, bounds, paddings) may hold tensors; `int_operand` finds what of
them is known while building, following constants and `tf.shape` as TF's
`constant_value_as_shape` does, so `tf.reshape(x, tf.shape(y))` keeps y's static dims.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GraphError, OpTypeError
from ..errors import where as at
from ..ir.types import DType, as_dtype, float32
from ..ops.layout import strided_index
from ..ops.shapes import normalize_axis
from ..trace.source import user_location
from ..trace.tensor import Tensor, convert_to_tensor
from .math_ops import constant_value, emit, emit1

__all__ = ["transpose", "expand_dims", "squeeze", "concat", "split", "stack", "unstack", "slice",
           "strided_slice", "gather", "one_hot", "pad", "tile", "broadcast_to"]


# -- helpers ----------------------------------------------------------------------------------
def _error(op: str, message: str, tensors: Sequence[Tensor]) -> GraphError:
    """A build-time error naming the op, the user's line and the input shapes."""
    shapes = ", ".join(str(t.type) for t in tensors)
    return GraphError(f"{at(op, user_location())}: {message} (inputs: {shapes or 'none'})")


def _axis(op: str, axis: int, rank: int | None, tensors: Sequence[Tensor]) -> int:
    """`axis` made non-negative for a tensor of `rank` (kept as given when the rank is unknown)."""
    try:
        return normalize_axis(axis, rank, tensors[0].type)
    except OpTypeError as e:
        raise _error(op, str(e), tensors) from None


def _python_int(value: Any, what: str) -> int:
    """An int argument given as a Python int or a constant scalar tensor."""
    known = constant_value(value)
    if known is None or np.asarray(known).size != 1 or np.asarray(known).dtype.kind not in "iu":
        raise ValueError(f"{what} must be an integer known while the graph is built, got {value!r}")
    return int(np.asarray(known).reshape(()))


def _is_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) or hasattr(x, "_as_graph_tensor")


def _holds_tensor(x: Any) -> bool:
    if isinstance(x, (list, tuple)):
        return any(_holds_tensor(v) for v in x)
    return _is_tensor(x)


def _first_dtype(x: Any) -> DType | None:
    """The dtype of the first tensor in a nested list: Python values in the list take it, as in TF."""
    if isinstance(x, (list, tuple)):
        return next((d for d in map(_first_dtype, x) if d is not None), None)
    return convert_to_tensor(x).dtype if _is_tensor(x) else None


def _convert_all(values: Any) -> list[Tensor]:
    """Tensors for a list of tensors and Python values of one dtype."""
    if _is_tensor(values):
        values = [values]
    dtype = _first_dtype(list(values))
    return [convert_to_tensor(v) if _is_tensor(v) else convert_to_tensor(v, dtype=dtype) for v in values]


def _pack(value: Any, dtype: DType | None) -> Tensor:
    """A (nested) list holding tensors, stacked into one tensor."""
    if not isinstance(value, (list, tuple)):
        return convert_to_tensor(value) if _is_tensor(value) else convert_to_tensor(value, dtype=dtype)
    return stack([_pack(v, dtype) for v in value], name="packed")


# -- what is known of an integer tensor while building ------------------------------------------
def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _entries_or_unknown(t: Tensor) -> np.ndarray | None:
    """`static_entries`, or all None when only the shape of `t` is known."""
    entries = static_entries(t)
    if entries is None and t.type.is_fully_defined:
        return np.full(t.type.shape, None, dtype=object)
    return entries


def _inputs_known(t: Tensor) -> list[np.ndarray] | None:
    parts = [_entries_or_unknown(x) for x in t.op.inputs]
    return None if any(p is None for p in parts) else parts


def _from_constant(t: Tensor) -> np.ndarray | None:
    return np.array(t.op.get_attr("value").array.tolist(), dtype=object)


def _from_shape(t: Tensor) -> np.ndarray | None:
    dims = t.op.inputs[0].type.shape
    return None if dims is None else _objects(dims)


def _from_stack(t: Tensor) -> np.ndarray | None:
    parts = _inputs_known(t)
    return None if parts is None else np.stack(parts, axis=t.op.get_attr("axis"))


def _from_concat(t: Tensor) -> np.ndarray | None:
    parts = _inputs_known(t)
    return None if parts is None else np.concatenate(parts, axis=t.op.get_attr("axis"))


def _from_same(t: Tensor) -> np.ndarray | None:
    source = t.op.inputs[0]
    return static_entries(source) if source.dtype.is_integer else None


def _from_strided_slice(t: Tensor) -> np.ndarray | None:
    parts = _inputs_known(t) if len(t.op.inputs) == 1 else None
    if parts is None:
        return None
    attrs = t.op.node.attr_dict
    try:
        picked = parts[0][strided_index(**attrs)]
    except IndexError:
        return None
    return np.array(picked, dtype=object) if not isinstance(picked, np.ndarray) else picked


_PARTIAL: dict[str, Callable[[Tensor], np.ndarray | None]] = {
    "constant": _from_constant, "shape": _from_shape, "stack": _from_stack, "concat": _from_concat,
    "identity": _from_same, "cast": _from_same, "strided_slice": _from_strided_slice,
}


def static_entries(t: Tensor) -> np.ndarray | None:
    """What is known of an integer tensor's value while building: an object array of ints, with
    None (or a symbolic dim) where only the run time knows; None when that is not even its shape."""
    partial = _PARTIAL.get(t.op.node.op)
    return partial(t) if partial is not None and t.dtype.is_integer else None


def int_operand(value: Any, what: str) -> tuple[np.ndarray, Tensor | None]:
    """An integer argument that may hold tensors: its entries known while building (an object
    array; None where unknown) and, unless all are known, the tensor holding them at run time."""
    if hasattr(value, "as_list"):
        value = value.as_list()
    if not _holds_tensor(value):
        array = np.asarray(value)
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integers, got {value!r}")
        return np.array(array.astype(np.int64).tolist(), dtype=object), None
    t = _pack(value, _first_dtype(value))
    if not t.dtype.is_integer:
        raise TypeError(f"{what} must be an integer tensor, got {t}")
    entries = _entries_or_unknown(t)
    if entries is None:
        raise ValueError(f"the shape of {what} must be known while the graph is built, got {t}")
    known = all(isinstance(e, int) for e in entries.flat)
    return entries, (None if known else t)


def _vector(value: Any, what: str) -> tuple[tuple[Any, ...], Tensor | None]:
    entries, dynamic = int_operand(value, what)
    if entries.ndim != 1:
        raise ValueError(f"{what} must be a vector, got {value!r}")
    return tuple(entries.tolist()), dynamic


def _as_input(entries: tuple[Any, ...], dynamic: Tensor | None) -> Tensor:
    return dynamic if dynamic is not None else convert_to_tensor(np.asarray(entries, dtype=np.int32))


# -- transpose, expand_dims, squeeze --------------------------------------------------------------
def transpose(a: Any, perm: Any = None, name: str = "transpose", conjugate: bool = False) -> Tensor:
    """Permute the axes; `perm=None` reverses them (tfjit has no complex dtypes to conjugate)."""
    x = convert_to_tensor(a)
    rank = x.type.rank
    if perm is None:
        order = None if rank is None else tuple(range(rank))[::-1]
    else:
        entries, dynamic = int_operand(perm, "transpose's perm")
        if dynamic is not None:
            raise ValueError("transpose's perm must be known while the graph is built")
        order = tuple(entries.reshape(-1).tolist())
    return emit1("transpose", [x], {"perm": order}, name)


def expand_dims(input: Any, axis: Any = None, name: str | None = None, dim: Any = None) -> Tensor:
    """Insert a size-1 axis at `axis` (`dim` is TF1's deprecated name for it)."""
    if axis is not None and dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'")
    if axis is None and dim is None:
        raise ValueError("Must specify an axis argument to tf.expand_dims()")
    x = convert_to_tensor(input)
    a = _python_int(axis if axis is not None else dim, "expand_dims' axis")
    rank = x.type.rank
    a = _axis("expand_dims", a, None if rank is None else rank + 1, [x])
    return emit1("expand_dims", [x], {"axis": a}, name or "ExpandDims")


def squeeze(input: Any, axis: Any = None, name: str | None = None, squeeze_dims: Any = None) -> Tensor:
    """Drop size-1 axes: those in `axis`, or all of them (`squeeze_dims` is TF1's old name)."""
    if axis is not None and squeeze_dims is not None:
        raise ValueError("Cannot specify both 'axis' and 'squeeze_dims'")
    axis = axis if axis is not None else squeeze_dims
    x = convert_to_tensor(input)
    axes = None
    if axis is not None:
        listed = [axis] if np.isscalar(axis) or isinstance(axis, Tensor) else list(axis)
        axes = tuple(sorted({_axis("squeeze", _python_int(a, "squeeze's axis"), x.type.rank, [x])
                             for a in listed})) or None
    return emit1("squeeze", [x], {"axis": axes}, name or "Squeeze")


# -- concat, stack, split, unstack ------------------------------------------------------------
def _common_rank(tensors: Sequence[Tensor]) -> int | None:
    return next((t.type.rank for t in tensors if t.type.rank is not None), None)


def concat(values: Any, axis: Any, name: str = "concat") -> Tensor:
    """Join tensors along an existing axis."""
    tensors = _convert_all(values)
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    a = _python_int(axis, "concat's axis")
    rank = _common_rank(tensors)
    if rank != 0:  # scalars get the type rule's "use tf.stack" error
        a = _axis("concat", a, rank, tensors)
    return emit1("concat", tensors, {"axis": a}, name)


def stack(values: Any, axis: int = 0, name: str = "stack") -> Tensor:
    """Join tensors along a new axis; a list of Python values only is a constant, as in TF."""
    if axis == 0 and not _holds_tensor(values):
        return convert_to_tensor(values, name=name)
    tensors = _convert_all(values)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    rank = _common_rank(tensors)
    a = _axis("stack", _python_int(axis, "stack's axis"), None if rank is None else rank + 1, tensors)
    return emit1("stack", tensors, {"axis": a}, name)


def split(value: Any, num_or_size_splits: Any, axis: Any = 0, num: int | None = None,
          name: str = "split") -> list[Tensor]:
    """Split into `num_or_size_splits` equal pieces, or pieces of the given sizes (one may be -1)."""
    x = convert_to_tensor(value)
    a = _axis("split", _python_int(axis, "split's axis"), x.type.rank, [x])
    entries, dynamic = int_operand(num_or_size_splits, "split's num_or_size_splits")
    if dynamic is not None or entries.ndim > 1:
        raise ValueError("split's num_or_size_splits must be an int or a vector of sizes known while "
                         f"the graph is built, got {num_or_size_splits!r}")
    count, sizes = (int(entries.item()), None) if entries.ndim == 0 else (len(entries), tuple(entries.tolist()))
    if sizes is not None and num is not None and num != count:
        raise ValueError(f"split got num={num} but {count} sizes {list(sizes)}")
    return emit("split", [x], {"axis": a, "num": count, "sizes": sizes}, name).outputs


def unstack(value: Any, num: int | None = None, axis: int = 0, name: str = "unstack") -> list[Tensor]:
    """The slices along `axis` as a list; `num` defaults to that axis' static size."""
    x = convert_to_tensor(value)
    shape = x.type.shape
    a = _axis("unstack", axis, None if shape is None else len(shape), [x])
    if num is None:
        num = shape[a] if shape is not None else None
        if not isinstance(num, int):
            raise ValueError(f"Cannot infer num from shape {x.shape}")
    return emit("unstack", [x], {"axis": a, "num": int(num)}, name).outputs


# -- slicing ------------------------------------------------------------------------------------
def slice(input_: Any, begin: Any, size: Any, name: str | None = None) -> Tensor:  # noqa: A001
    """`size[i]` elements from `begin[i]` on each axis; a size of -1 runs to the end."""
    x = convert_to_tensor(input_)
    b, b_dyn = _vector(begin, "slice's begin")
    s, s_dyn = _vector(size, "slice's size")
    inputs = [x] if b_dyn is None and s_dyn is None else [x, _as_input(b, b_dyn), _as_input(s, s_dyn)]
    return emit1("slice", inputs, {"begin": b, "size": s}, name or "Slice")


def strided_slice(input_: Any, begin: Any, end: Any, strides: Any = None, begin_mask: int = 0,
                  end_mask: int = 0, ellipsis_mask: int = 0, new_axis_mask: int = 0,
                  shrink_axis_mask: int = 0, name: str | None = None) -> Tensor:
    """`input_[begin:end:strides]` per spec position, with TF's masks (see `Tensor.__getitem__`)."""
    x = convert_to_tensor(input_)
    b, b_dyn = _vector(begin, "strided_slice's begin")
    e, e_dyn = _vector(end, "strided_slice's end")
    s, s_dyn = _vector(strides if strides is not None else [1] * len(b), "strided_slice's strides")
    attrs = {"begin": b, "end": e, "strides": s, "begin_mask": int(begin_mask), "end_mask": int(end_mask),
             "ellipsis_mask": int(ellipsis_mask), "new_axis_mask": int(new_axis_mask),
             "shrink_axis_mask": int(shrink_axis_mask)}
    inputs = [x]
    if any(d is not None for d in (b_dyn, e_dyn, s_dyn)):
        inputs += [_as_input(b, b_dyn), _as_input(e, e_dyn), _as_input(s, s_dyn)]
    return emit1("strided_slice", inputs, attrs, name or "StridedSlice")


_INDEX_ERROR = ("Only integers, slices (`:`), ellipsis (`...`), tf.newaxis (`None`) and scalar "
                "tf.int32/tf.int64 tensors are valid indices")


class _IndexSpec:
    """The strided-slice spec of a Python index, one position per item (TF's `_slice_helper`)."""

    def __init__(self) -> None:
        self.begin: list[Any] = []
        self.end: list[Any] = []
        self.strides: list[Any] = []
        self.masks = {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0,
                      "shrink_axis_mask": 0}

    def add(self, item: Any) -> None:
        bit = 1 << len(self.begin)
        if isinstance(item, builtins.slice):
            self._range(item, bit)
        elif item is Ellipsis or item is None:
            self.masks["ellipsis_mask" if item is Ellipsis else "new_axis_mask"] |= bit
            self._append(0, 0, 1)
        else:
            index = _index_item(item)
            self.masks["shrink_axis_mask"] |= bit
            self._append(index, index + 1, 1)

    def _range(self, item: builtins.slice, bit: int) -> None:
        start, stop, step = (None if v is None else _index_item(v) for v in (item.start, item.stop, item.step))
        if start is None:
            self.masks["begin_mask"] |= bit
        if stop is None:
            self.masks["end_mask"] |= bit
        self._append(0 if start is None else start, 0 if stop is None else stop, 1 if step is None else step)

    def _append(self, b: Any, e: Any, s: Any) -> None:
        self.begin.append(b)
        self.end.append(e)
        self.strides.append(s)


def _index_item(item: Any) -> Any:
    """A Python int, or a scalar int32/int64 tensor; anything else is an error, as in TF."""
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"{_INDEX_ERROR}, got {item!r} (tfjit has no boolean-mask indexing)")
    if isinstance(item, (int, np.integer)):
        return int(item)
    if hasattr(item, "value") and not _is_tensor(item):  # a TF1 Dimension
        return int(item)
    if _is_tensor(item):
        t = convert_to_tensor(item)
        if t.dtype.is_integer and t.type.rank in (0, None):
            return t
    raise TypeError(f"{_INDEX_ERROR}, got {item!r}")


def _getitem(tensor: Tensor, key: Any) -> Tensor:
    """`tensor[key]` as TF1 slices: a list key acts like a tuple, as in TF1."""
    spec = _IndexSpec()
    for item in (key if isinstance(key, (tuple, list)) else (key,)):
        spec.add(item)
    return strided_slice(tensor, spec.begin, spec.end, spec.strides, name="strided_slice", **spec.masks)


Tensor.__getitem__ = _getitem


# -- gather, one_hot ------------------------------------------------------------------------------
def gather(params: Any, indices: Any, validate_indices: Any = None, name: str | None = None,
           axis: Any = None) -> Tensor:
    """`params` slices along `axis` picked by `indices` of any rank. Indices are always checked
    (`validate_indices` is ignored, as in TF): one out of range is a run-time InvalidArgumentError."""
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    a = _axis("gather", _python_int(axis if axis is not None else 0, "gather's axis"), p.type.rank, [p, i])
    return emit1("gather", [p, i], {"axis": a}, name or "GatherV2")


def one_hot(indices: Any, depth: Any, on_value: Any = None, off_value: Any = None, axis: Any = None,
            dtype: Any = None, name: str | None = None) -> Tensor:
    """One-hot rows; the dtype comes from `dtype`, else from on/off_value, else float32 (TF's rule)."""
    idx = convert_to_tensor(indices)
    on, off = _on_off(on_value, off_value, dtype)
    a = -1 if axis is None else _python_int(axis, "one_hot's axis")
    if a == -1 and idx.type.rank is not None:
        a = idx.type.rank  # -1 is the new last axis
    entries, dynamic = int_operand(depth, "one_hot's depth")
    if entries.ndim != 0:
        raise ValueError(f"one_hot's depth must be a scalar, got {depth!r}")
    inputs = [idx, on, off] if dynamic is None else [idx, on, off, dynamic]
    return emit1("one_hot", inputs, {"depth": entries.item(), "axis": a}, name or "one_hot")


def _on_off(on_value: Any, off_value: Any, dtype: Any) -> tuple[Tensor, Tensor]:
    """on/off values of one dtype; a Python value takes `dtype`, else the other value's dtype."""
    target = as_dtype(dtype) if dtype is not None else None
    on = None if on_value is None else convert_to_tensor(on_value, preferred_dtype=target)
    target = target or (on.dtype if on is not None else None)
    off = None if off_value is None else convert_to_tensor(off_value, preferred_dtype=target)
    target = target or (off.dtype if off is not None else float32)
    on = on if on is not None else convert_to_tensor(1, dtype=target)
    off = off if off is not None else convert_to_tensor(0, dtype=target)
    for what, t in (("on_value", on), ("off_value", off)):
        if t.dtype != target:
            raise TypeError(f"dtype {t.dtype.name} of {what} does not match dtype {target.name}")
    return on, off


# -- pad, tile, broadcast_to ------------------------------------------------------------------
def pad(tensor: Any, paddings: Any, mode: str = "CONSTANT", name: str | None = None,
        constant_values: Any = 0) -> Tensor:
    """Pad each axis by [before, after]; mode CONSTANT, REFLECT or SYMMETRIC (any case)."""
    x = convert_to_tensor(tensor)
    entries, dynamic = int_operand(paddings, "pad's paddings")
    if entries.ndim != 2:
        raise ValueError(f"pad's paddings must be a [rank, 2] matrix, got {paddings!r}")
    pairs = tuple(tuple(row) for row in entries.tolist())
    extra = [] if dynamic is None else [dynamic]
    mode = mode.upper()
    if mode == "CONSTANT":
        zero = not _is_tensor(constant_values) and np.all(np.asarray(constant_values) == 0)
        value = convert_to_tensor(constant_values, dtype=x.dtype) if not _is_tensor(constant_values) \
            else convert_to_tensor(constant_values)
        return emit1("pad", [x, value] + extra, {"paddings": pairs}, name or ("Pad" if zero else "PadV2"))
    if mode in ("REFLECT", "SYMMETRIC"):
        return emit1("mirror_pad", [x] + extra, {"paddings": pairs, "mode": mode}, name or "MirrorPad")
    raise ValueError(f"Unknown padding mode: {mode}")


def tile(input: Any, multiples: Any, name: str | None = None) -> Tensor:
    """Repeat the tensor `multiples[i]` times along axis i."""
    x = convert_to_tensor(input)
    m, dynamic = _vector(multiples, "tile's multiples")
    inputs = [x] if dynamic is None else [x, dynamic]
    return emit1("tile", inputs, {"multiples": m}, name or "Tile")


def broadcast_to(input: Any, shape: Any, name: str | None = None) -> Tensor:
    """Broadcast to `shape` with NumPy's rule (a list, a TensorShape or a tensor such as tf.shape(y))."""
    x = convert_to_tensor(input)
    dims, dynamic = _vector(shape, "broadcast_to's shape")
    inputs = [x] if dynamic is None else [x, dynamic]
    return emit1("broadcast_to", inputs, {"shape": dims}, name or "BroadcastTo")
