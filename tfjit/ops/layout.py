"""Layout ops: they move or copy elements without arithmetic.

Some arguments of these ops may be computed at run time (reshape's target, slice bounds,
paddings, multiples, one_hot's depth). Such an op keeps the argument's static best guess as
an attribute, with None for entries unknown while building, and takes the run-time value as
an optional trailing input: `reshape[shape=[none, -1]](%x, %dims)`. Without that input every
entry of the attribute is known.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import OpTypeError
from ..ir.types import Dim, TensorType, as_dtype, dims_compatible, int32, int64, merge_dims, uint8
from .registry import Fusion, register
from .shapes import normalize_axes, normalize_axis, same_dtype

Ints = tuple[Dim, ...]


# -- shared pieces ----------------------------------------------------------------------------
def _fresh(a: np.ndarray) -> np.ndarray:
    """A result owning its memory: a view could alias an array the user fed, or get back."""
    return np.array(a, copy=True)


def _copied(view: Callable[..., Any]) -> Callable[..., Any]:
    """The reference of an op whose `view` form may share its input's memory: the same
    result, each array copied (`OpDef.view` says who may use the view instead)."""
    def reference(*args: Any, **attrs: Any) -> Any:
        out = view(*args, **attrs)
        return tuple(_fresh(a) for a in out) if isinstance(out, tuple) else _fresh(out)

    reference.__name__ = reference.__qualname__ = view.__name__.replace("_view", "")
    return reference


def _known(d: Any) -> bool:
    return isinstance(d, int)


def _product(dims: Iterable[Any]) -> int:
    return int(np.prod([d for d in dims if _known(d)], dtype=np.int64))


def _require_index_vector(t: TensorType, what: str, length: int | None = None) -> None:
    """A run-time argument must be an integer vector with one entry per static entry."""
    if not t.dtype.is_integer or t.rank not in (1, None):
        raise OpTypeError(f"{what} must be an integer vector, got {t}")
    n = t.shape[0] if t.shape else None
    if length is not None and _known(n) and n != length:
        raise OpTypeError(f"{what} must have {length} entries, got {t}")


def _require_static(entries: Sequence[Any], what: str) -> None:
    if not all(_known(d) for d in entries):
        raise OpTypeError(f"{what} {list(entries)} has entries unknown while building, "
                          "so it needs its run-time value as an input")


def _runtime(dynamic: np.ndarray | None, static: tuple[Any, ...]) -> tuple[int, ...]:
    """The argument's value: the run-time input when there is one, else the attribute."""
    return static if dynamic is None else tuple(int(v) for v in dynamic.reshape(-1))


def _same_rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    return (in_types[0],)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


register("identity", _same_rule, _identity, Fusion.LAYOUT, view=_identity)
register("stop_gradient", _same_rule, _identity, Fusion.LAYOUT, differentiable=False, view=_identity)


# -- reshape ----------------------------------------------------------------------------------
def _reshape_rule(in_types: tuple[TensorType, ...], shape: Ints) -> tuple[TensorType, ...]:
    """`reshape[shape](x)` or `reshape[shape](x, dims)`; one -1 in `shape` is inferred."""
    t = in_types[0]
    if len(in_types) == 2:
        _require_index_vector(in_types[1], "reshape's shape", len(shape))
    else:
        _require_static(shape, "reshape's shape")
    if list(shape).count(-1) > 1:
        raise OpTypeError(f"reshape target {list(shape)} has more than one -1")
    if any(_known(d) and d < -1 for d in shape):
        raise OpTypeError(f"reshape target {list(shape)} has a negative size other than -1")
    return (TensorType(t.dtype, _reshaped(t, shape)),)


def _reshaped(t: TensorType, shape: Ints) -> tuple[Dim, ...]:
    """The target with -1 resolved where the element counts allow (TF's inference)."""
    out: list[Dim] = [None if d == -1 else d for d in shape]
    if t.shape is None:
        return tuple(out)
    unknown_in = [d for d in t.shape if not _known(d)]
    unknown_out = [i for i, d in enumerate(out) if not _known(d)]
    known_in, known_out = _product(t.shape), _product(out)
    mismatch = (not unknown_in and not unknown_out and known_in != known_out) or \
        (not unknown_in and known_out and known_in % known_out) or \
        (not unknown_out and known_in and known_out % known_in)
    if mismatch:
        raise OpTypeError(f"cannot reshape {t} ({_count(t.shape)} elements) to {list(shape)} "
                          f"({_count(out)} elements)")
    if len(unknown_out) == 1 and not unknown_in and known_out:
        out[unknown_out[0]] = known_in // known_out
    elif len(unknown_out) == 1 and len(unknown_in) == 1 and known_in == known_out:
        out[unknown_out[0]] = unknown_in[0]
    return tuple(out)


def _count(dims: Sequence[Dim]) -> str:
    known = _product(dims)
    return str(known) if all(_known(d) for d in dims) else f"{known} * ?"


def _reshape_view(x: np.ndarray, dims: np.ndarray | None = None, *, shape: Ints) -> np.ndarray:
    return np.reshape(x, _runtime(dims, shape))


register("reshape", _reshape_rule, _copied(_reshape_view), Fusion.LAYOUT, view=_reshape_view)


# -- transpose, expand_dims, squeeze ------------------------------------------------------------
def _transpose_rule(in_types: tuple[TensorType, ...], perm: tuple[int, ...] | None) -> tuple[TensorType, ...]:
    """`perm=None` reverses the axes (TF's default, also for an unknown rank)."""
    (t,) = in_types
    if perm is None:
        return (TensorType(t.dtype, None if t.shape is None else t.shape[::-1]),)
    rank = len(perm) if t.shape is None else len(t.shape)
    if sorted(perm) != list(range(rank)):
        raise OpTypeError(f"transpose's perm {list(perm)} is not a permutation of the {rank} axes of {t}")
    if t.shape is None:
        return (TensorType(t.dtype, (None,) * rank),)
    return (TensorType(t.dtype, tuple(t.shape[p] for p in perm)),)


register("transpose", _transpose_rule, lambda x, perm: _fresh(np.transpose(x, perm)), Fusion.LAYOUT)


def _expand_dims_rule(in_types: tuple[TensorType, ...], axis: int) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.shape is None:
        return (TensorType(t.dtype, None),)
    a = normalize_axis(axis, len(t.shape) + 1, t)
    return (TensorType(t.dtype, t.shape[:a] + (1,) + t.shape[a:]),)


def _expand_dims_view(x: np.ndarray, *, axis: int) -> np.ndarray:
    return np.expand_dims(x, axis)


register("expand_dims", _expand_dims_rule, _copied(_expand_dims_view), Fusion.LAYOUT, view=_expand_dims_view)


def _squeeze_rule(in_types: tuple[TensorType, ...], axis: tuple[int, ...] | None) -> tuple[TensorType, ...]:
    """`axis=None` drops every size-1 axis; then an unknown dim makes the rank unknown, as in TF."""
    (t,) = in_types
    if t.shape is None or (axis is None and not all(_known(d) for d in t.shape)):
        return (TensorType(t.dtype, None),)
    if axis is None:
        return (TensorType(t.dtype, tuple(d for d in t.shape if d != 1)),)
    axes = normalize_axes(axis, len(t.shape), t)
    for a in axes:
        if _known(t.shape[a]) and t.shape[a] != 1:
            raise OpTypeError(f"cannot squeeze axis {a} of {t}: its size is {t.shape[a]}, not 1")
    return (TensorType(t.dtype, tuple(d for i, d in enumerate(t.shape) if i not in axes)),)


def _squeeze_view(x: np.ndarray, *, axis: tuple[int, ...] | None) -> np.ndarray:
    return np.squeeze(x, axis=axis)


register("squeeze", _squeeze_rule, _copied(_squeeze_view), Fusion.LAYOUT, view=_squeeze_view)


# -- concat, stack, split, unstack ------------------------------------------------------------
def _merged(dims: Iterable[Dim], describe: str) -> Dim:
    """One dim equal to all of `dims`; `describe` explains a mismatch."""
    out: Dim = None
    for d in dims:
        if not dims_compatible(out, d):
            raise OpTypeError(describe)
        out = merge_dims(out, d)
    return out


def _concat_rule(in_types: tuple[TensorType, ...], axis: int) -> tuple[TensorType, ...]:
    dtype = same_dtype(in_types, "concat's inputs")
    shapes = [t.shape for t in in_types if t.shape is not None]
    listed = ", ".join(str(t) for t in in_types)
    if len({len(s) for s in shapes}) > 1:
        raise OpTypeError(f"concat's inputs must have the same rank, got {listed}")
    if not shapes:
        return (TensorType(dtype, None),)
    rank = len(shapes[0])
    if rank == 0:
        raise OpTypeError(f"cannot concatenate scalars ({listed}); use tf.stack instead")
    a = normalize_axis(axis, rank, in_types[0])
    mismatch = f"concat's inputs must have the same shape except along axis {a}, got {listed}"
    out = [_merged((s[i] for s in shapes), mismatch) if i != a else None for i in range(rank)]
    along = [s[a] for s in shapes]
    if len(shapes) == len(in_types) and all(_known(d) for d in along):
        out[a] = sum(along)
    return (TensorType(dtype, tuple(out)),)


def _concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


register("concat", _concat_rule, _concat, Fusion.LAYOUT)


def _stack_rule(in_types: tuple[TensorType, ...], axis: int) -> tuple[TensorType, ...]:
    dtype = same_dtype(in_types, "stack's inputs")
    shapes = [t.shape for t in in_types if t.shape is not None]
    listed = ", ".join(str(t) for t in in_types)
    if len({len(s) for s in shapes}) > 1:
        raise OpTypeError(f"stack's inputs must have the same shape, got {listed}")
    if not shapes:
        return (TensorType(dtype, None),)
    mismatch = f"stack's inputs must have the same shape, got {listed}"
    shape = tuple(_merged((s[i] for s in shapes), mismatch) for i in range(len(shapes[0])))
    a = normalize_axis(axis, len(shape) + 1, in_types[0])
    return (TensorType(dtype, shape[:a] + (len(in_types),) + shape[a:]),)


def _stack(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.stack(xs, axis=axis)


register("stack", _stack_rule, _stack, Fusion.LAYOUT)


def _split_sizes(dim: Dim, num: int, sizes: tuple[int, ...] | None, t: Any) -> list[Dim]:
    """Each piece's size along the split axis; `sizes=None` splits evenly into `num`."""
    if sizes is None:
        if not _known(dim):
            return [None] * num
        if dim % num:
            raise OpTypeError(f"cannot split {t} evenly into {num} pieces: the axis has size {dim}")
        return [dim // num] * num
    if len(sizes) != num or list(sizes).count(-1) > 1 or any(s < -1 for s in sizes):
        raise OpTypeError(f"split sizes {list(sizes)} must be {num} sizes >= 0 with at most one -1")
    rest = sum(s for s in sizes if s != -1)
    if not _known(dim):
        return [None if s == -1 else s for s in sizes]
    if (-1 in sizes and rest > dim) or (-1 not in sizes and rest != dim):
        raise OpTypeError(f"split sizes {list(sizes)} do not add up to size {dim} of the split axis of {t}")
    return [dim - rest if s == -1 else s for s in sizes]


def _split_rule(in_types: tuple[TensorType, ...], axis: int, num: int,
                sizes: tuple[int, ...] | None) -> tuple[TensorType, ...]:
    (t,) = in_types
    if num < 1:
        raise OpTypeError(f"split needs at least one piece, got num={num}")
    if t.shape is None:
        return tuple(TensorType(t.dtype, None) for _ in range(num))
    a = normalize_axis(axis, len(t.shape), t)
    pieces = _split_sizes(t.shape[a], num, sizes, t)
    return tuple(TensorType(t.dtype, t.shape[:a] + (p,) + t.shape[a + 1:]) for p in pieces)


def _split_view(x: np.ndarray, *, axis: int, num: int, sizes: tuple[int, ...] | None) -> tuple[np.ndarray, ...]:
    pieces = _split_sizes(x.shape[axis], num, sizes, f"a tensor of shape {list(x.shape)}")
    cuts = np.cumsum(pieces)[:-1]
    return tuple(np.split(x, cuts, axis=axis))


register("split", _split_rule, _copied(_split_view), Fusion.LAYOUT, view=_split_view)


def _unstack_rule(in_types: tuple[TensorType, ...], axis: int, num: int) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.shape is None:
        return tuple(TensorType(t.dtype, None) for _ in range(num))
    a = normalize_axis(axis, len(t.shape), t)
    if _known(t.shape[a]) and t.shape[a] != num:
        raise OpTypeError(f"cannot unstack {t} into {num} tensors: axis {a} has size {t.shape[a]}")
    piece = TensorType(t.dtype, t.shape[:a] + t.shape[a + 1:])
    return tuple(piece for _ in range(num))


def _unstack_view(x: np.ndarray, *, axis: int, num: int) -> tuple[np.ndarray, ...]:
    if x.shape[axis] != num:
        raise ValueError(f"cannot unstack a tensor of shape {list(x.shape)} into {num} tensors "
                         f"along axis {axis}")
    before = (slice(None),) * (axis % x.ndim)
    return tuple(x[before + (i, Ellipsis)] for i in range(num))  # the Ellipsis keeps 0-d pieces arrays


register("unstack", _unstack_rule, _copied(_unstack_view), Fusion.LAYOUT, view=_unstack_view)


# -- slice ------------------------------------------------------------------------------------
def _slice_rule(in_types: tuple[TensorType, ...], begin: Ints, size: Ints) -> tuple[TensorType, ...]:
    """`slice[begin, size](x)` or `slice[begin, size](x, begin, size)`; size -1 runs to the end."""
    t = in_types[0]
    if len(begin) != len(size):
        raise OpTypeError(f"slice's begin {list(begin)} and size {list(size)} differ in length")
    if len(in_types) == 3:
        _require_index_vector(in_types[1], "slice's begin", len(begin))
        _require_index_vector(in_types[2], "slice's size", len(size))
    else:
        _require_static(begin + size, "slice's begin and size")
    shape = t.shape if t.shape is not None else (None,) * len(begin)
    if len(shape) != len(begin):
        raise OpTypeError(f"slice of {t} needs one begin and size per axis, got begin {list(begin)}, "
                          f"size {list(size)}")
    return (TensorType(t.dtype, tuple(_slice_dim(t, i, d, b, s)
                                      for i, (d, b, s) in enumerate(zip(shape, begin, size)))),)


def _slice_dim(t: TensorType, i: int, d: Dim, b: Dim, s: Dim) -> Dim:
    if (_known(b) and b < 0) or (_known(s) and s < -1):
        raise OpTypeError(f"slice of {t} has begin[{i}] = {b} and size[{i}] = {s}; "
                          "begin must be >= 0 and size >= -1")
    if _known(d) and _known(b) and (b > d or (_known(s) and s != -1 and b + s > d)):
        raise OpTypeError(f"slice of {t} with begin[{i}] = {b} and size[{i}] = {s} "
                          f"runs past the axis size {d}")
    if s != -1:
        return s
    if b == 0:
        return d
    return d - b if _known(d) and _known(b) else None


def _slice_view(x: np.ndarray, begin_t: np.ndarray | None = None, size_t: np.ndarray | None = None, *,
                begin: Ints, size: Ints) -> np.ndarray:
    b, s = _runtime(begin_t, begin), _runtime(size_t, size)
    if len(b) != x.ndim or len(s) != x.ndim:
        raise ValueError(f"slice of a tensor of shape {list(x.shape)} got begin {list(b)} and size {list(s)}")
    index = []
    for i, (d, bi, si) in enumerate(zip(x.shape, b, s)):
        si = d - bi if si == -1 else si
        if not (0 <= bi <= d and 0 <= si <= d - bi):
            raise ValueError(f"Expected begin[{i}] in [0, {d}] and size[{i}] in [0, {d - bi}], "
                             f"got begin {list(b)} and size {list(s)} for shape {list(x.shape)}")
        index.append(slice(bi, bi + si))
    return x[tuple(index)]


register("slice", _slice_rule, _copied(_slice_view), Fusion.LAYOUT, view=_slice_view)


# -- strided_slice ------------------------------------------------------------------------------
def _bit(mask: int, i: int) -> bool:
    return bool(mask >> i & 1)


def strided_index(begin: Sequence[Any], end: Sequence[Any], strides: Sequence[Any], begin_mask: int,
                  end_mask: int, ellipsis_mask: int, new_axis_mask: int, shrink_axis_mask: int) -> tuple:
    """The NumPy index of a strided slice (TF's and NumPy's slicing agree on clamping)."""
    index: list[Any] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if _bit(ellipsis_mask, i):
            index.append(Ellipsis)
        elif _bit(new_axis_mask, i):
            index.append(None)
        elif _bit(shrink_axis_mask, i):
            index.append(int(b))
        else:
            index.append(slice(None if _bit(begin_mask, i) else b,
                                        None if _bit(end_mask, i) else e, s))
    return tuple(index)


def _slice_plan(rank: int, n: int, ellipsis_mask: int, new_axis_mask: int,
                shrink_axis_mask: int) -> list[tuple[str, int | None, int | None]]:
    """(kind, spec position, input axis) per output step: 'full', 'new', 'shrink' or 'range'.

    An ellipsis (explicit, or implied at the end) stands for as many full axes as needed.
    """
    positions = range(n)
    if sum(_bit(ellipsis_mask, i) for i in positions) > 1:
        raise OpTypeError("a strided slice may have at most one ellipsis")
    consumed = sum(1 for i in positions if not _bit(ellipsis_mask, i) and not _bit(new_axis_mask, i))
    if consumed > rank:
        raise OpTypeError(f"a strided slice indexes {consumed} axes of a tensor of rank {rank}")
    plan: list[tuple[str, int | None, int | None]] = []
    axis = 0
    for i in positions:
        if _bit(ellipsis_mask, i):
            plan += [("full", i, axis + k) for k in range(rank - consumed)]
            axis += rank - consumed
        elif _bit(new_axis_mask, i):
            plan.append(("new", i, None))
        else:
            plan.append(("shrink" if _bit(shrink_axis_mask, i) else "range", i, axis))
            axis += 1
    plan += [("full", None, a) for a in range(axis, rank)]
    return plan


def _strided_slice_rule(in_types: tuple[TensorType, ...], begin: Ints, end: Ints, strides: Ints,
                        begin_mask: int = 0, end_mask: int = 0, ellipsis_mask: int = 0,
                        new_axis_mask: int = 0, shrink_axis_mask: int = 0) -> tuple[TensorType, ...]:
    """`strided_slice[...](x)` or `strided_slice[...](x, begin, end, strides)`."""
    t = in_types[0]
    n = len(begin)
    if len(end) != n or len(strides) != n:
        raise OpTypeError(f"strided_slice's begin {list(begin)}, end {list(end)} and strides "
                          f"{list(strides)} differ in length")
    if len(in_types) == 4:
        for what, arg in zip(("begin", "end", "strides"), in_types[1:]):
            _require_index_vector(arg, f"strided_slice's {what}", n)
    else:
        _require_static(begin + end + strides, "strided_slice's begin, end and strides")
    if any(s == 0 for s in strides):
        raise OpTypeError(f"strided_slice's strides {list(strides)} must be non-zero")
    if t.shape is None:
        return (TensorType(t.dtype, None),)
    plan = _slice_plan(len(t.shape), n, ellipsis_mask, new_axis_mask, shrink_axis_mask)
    out: list[Dim] = []
    for kind, i, axis in plan:
        d = t.shape[axis] if axis is not None else None
        if kind == "full":
            out.append(d)
        elif kind == "new":
            out.append(1)
        elif kind == "shrink":
            _check_index(t, axis, d, begin[i])
        else:
            masked = (_bit(begin_mask, i), _bit(end_mask, i))
            out.append(_range_dim(d, begin[i], end[i], strides[i], masked))
    return (TensorType(t.dtype, tuple(out)),)


def _check_index(t: TensorType, axis: int, d: Dim, index: Dim) -> None:
    if _known(d) and _known(index) and not -d <= index < d:
        raise OpTypeError(f"index {index} is out of range for axis {axis} of {t} (size {d})")


def _range_dim(d: Dim, b: Dim, e: Dim, s: Dim, masked: tuple[bool, bool]) -> Dim:
    """Length of `b:e:s` on an axis of size `d` (Python's clamping), when known."""
    if masked == (True, True) and s in (1, -1):
        return d
    if not (_known(d) and _known(s) and (masked[0] or _known(b)) and (masked[1] or _known(e))):
        return None
    start = None if masked[0] else b
    stop = None if masked[1] else e
    return len(range(*slice(start, stop, s).indices(d)))


def _strided_slice_view(x: np.ndarray, begin_t: np.ndarray | None = None, end_t: np.ndarray | None = None,
                        strides_t: np.ndarray | None = None, *, begin: Ints, end: Ints, strides: Ints,
                        **masks: int) -> np.ndarray:
    index = strided_index(_runtime(begin_t, begin), _runtime(end_t, end), _runtime(strides_t, strides),
                          **masks)
    return x[index if Ellipsis in index else index + (Ellipsis,)]  # an array even when every axis shrinks


register("strided_slice", _strided_slice_rule, _copied(_strided_slice_view), Fusion.LAYOUT,
         view=_strided_slice_view)


# -- gather, one_hot --------------------------------------------------------------------------
def _gather_rule(in_types: tuple[TensorType, ...], axis: int) -> tuple[TensorType, ...]:
    params, indices = in_types
    if indices.dtype not in (int32, int64):
        raise OpTypeError(f"gather's indices must be int32 or int64, got {indices}")
    if params.shape is None or indices.shape is None:
        return (TensorType(params.dtype, None),)
    if not params.shape:
        raise OpTypeError(f"gather needs params of rank >= 1, got {params}")
    a = normalize_axis(axis, len(params.shape), params)
    return (TensorType(params.dtype, params.shape[:a] + indices.shape + params.shape[a + 1:]),)


def _gather(params: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    size = params.shape[axis]
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        position = ",".join(str(i) for i in where)
        raise ValueError(f"indices[{position}] = {indices[where]} is not in [0, {size})")
    return np.take(params, indices, axis=axis)


register("gather", _gather_rule, _gather, Fusion.LAYOUT)


def _one_hot_rule(in_types: tuple[TensorType, ...], depth: int | None, axis: int) -> tuple[TensorType, ...]:
    """`one_hot[depth, axis](indices, on, off)`, or with a fourth input: the depth at run time."""
    indices, on, off = in_types[:3]
    if indices.dtype not in (uint8, int32, int64):
        raise OpTypeError(f"one_hot's indices must be uint8, int32 or int64, got {indices}")
    if on.dtype != off.dtype or on.shape not in ((), None) or off.shape not in ((), None):
        raise OpTypeError(f"one_hot's on_value and off_value must be scalars of one dtype, got {on} and {off}")
    if len(in_types) == 4:
        if not in_types[3].dtype.is_integer or in_types[3].shape not in ((), None):
            raise OpTypeError(f"one_hot's depth must be an integer scalar, got {in_types[3]}")
    elif depth is None:
        raise OpTypeError("one_hot's depth is unknown while building, so it needs a depth input")
    if _known(depth) and depth < 0:
        raise OpTypeError(f"one_hot's depth must be non-negative, got {depth}")
    if indices.shape is None:
        return (TensorType(on.dtype, None),)
    a = _one_hot_axis(axis, len(indices.shape), indices)
    return (TensorType(on.dtype, indices.shape[:a] + (depth,) + indices.shape[a:]),)


def _one_hot_axis(axis: int, rank: int, t: Any) -> int:
    """TF's one_hot axis: -1 (the new last axis) or 0..rank."""
    if not -1 <= axis <= rank:
        raise OpTypeError(f"one_hot's axis must be -1 or in [0, {rank}] for indices {t}, got {axis}")
    return rank if axis == -1 else axis


def _one_hot(indices: np.ndarray, on: np.ndarray, off: np.ndarray, depth_t: np.ndarray | None = None, *,
             depth: int | None, axis: int) -> np.ndarray:
    n = int(depth_t) if depth_t is not None else depth
    if n < 0:
        raise ValueError(f"one_hot's depth must be non-negative, got {n}")
    a = _one_hot_axis(axis, indices.ndim, list(indices.shape))
    classes = np.arange(n).reshape((n,) + (1,) * (indices.ndim - a))
    hot = np.expand_dims(indices, a).astype(np.int64) == classes
    return np.where(hot, on, off).astype(on.dtype, copy=False)


register("one_hot", _one_hot_rule, _one_hot, Fusion.LAYOUT, differentiable=False)


# -- pad, mirror_pad, tile, broadcast_to --------------------------------------------------------
Pairs = tuple[tuple[Dim, Dim], ...]
_MIRROR_OFFSET = {"REFLECT": 1, "SYMMETRIC": 0}  # how far a mirror pad may reach past the edge


def _padded(t: TensorType, paddings: Pairs, mode: str) -> tuple[Dim, ...]:
    shape = t.shape if t.shape is not None else (None,) * len(paddings)
    if len(shape) != len(paddings) or any(len(p) != 2 for p in paddings):
        raise OpTypeError(f"paddings {[list(p) for p in paddings]} must hold one [before, after] pair "
                          f"per axis of {t}")
    out = []
    for axis, (d, (lo, hi)) in enumerate(zip(shape, paddings)):
        if (_known(lo) and lo < 0) or (_known(hi) and hi < 0):
            raise OpTypeError(f"paddings must be non-negative, got {[lo, hi]} for axis {axis} of {t}")
        limit = d - _MIRROR_OFFSET[mode] if mode in _MIRROR_OFFSET and _known(d) else None
        if limit is not None and any(_known(p) and p > limit for p in (lo, hi)):
            raise OpTypeError(f"{mode} paddings {[lo, hi]} for axis {axis} of {t} must be at most {limit}")
        out.append(d + lo + hi if all(_known(v) for v in (d, lo, hi)) else None)
    return tuple(out)


def _require_pairs(in_types: tuple[TensorType, ...], paddings: Pairs) -> None:
    """The run-time paddings, when given, are an integer [rank, 2] matrix."""
    if not in_types:
        _require_static([v for p in paddings for v in p], "paddings")
        return
    t = in_types[0]
    if not t.dtype.is_integer or (t.shape is not None and (len(t.shape) != 2 or t.shape[1] not in (2, None))):
        raise OpTypeError(f"paddings must be an integer matrix of shape [rank, 2], got {t}")


def _pad_rule(in_types: tuple[TensorType, ...], paddings: Pairs) -> tuple[TensorType, ...]:
    """`pad[paddings](x, constant_value)`, or with a third input: the paddings at run time."""
    x, value = in_types[:2]
    if value.dtype != x.dtype or value.shape not in ((), None):
        raise OpTypeError(f"pad's constant_values must be a scalar of {x.dtype.name}, got {value}")
    _require_pairs(in_types[2:], paddings)
    return (TensorType(x.dtype, _padded(x, paddings, "CONSTANT")),)


def _checked_pairs(x: np.ndarray, dynamic: np.ndarray | None, paddings: Pairs, mode: str) -> list[tuple[int, int]]:
    pairs = paddings if dynamic is None else dynamic.tolist()
    _padded(TensorType(as_dtype(x.dtype), x.shape), tuple(map(tuple, pairs)), mode)
    return [(int(lo), int(hi)) for lo, hi in pairs]


def _pad(x: np.ndarray, value: np.ndarray, paddings_t: np.ndarray | None = None, *, paddings: Pairs) -> np.ndarray:
    pairs = _checked_pairs(x, paddings_t, paddings, "CONSTANT")
    return np.pad(x, pairs, mode="constant", constant_values=value)


register("pad", _pad_rule, _pad, Fusion.LAYOUT)


def _mirror_pad_rule(in_types: tuple[TensorType, ...], paddings: Pairs, mode: str) -> tuple[TensorType, ...]:
    """`mirror_pad[paddings, mode](x)` with mode REFLECT or SYMMETRIC; optional run-time paddings."""
    x = in_types[0]
    if mode not in _MIRROR_OFFSET:
        raise OpTypeError(f"mirror_pad's mode must be REFLECT or SYMMETRIC, got {mode!r}")
    _require_pairs(in_types[1:], paddings)
    return (TensorType(x.dtype, _padded(x, paddings, mode)),)


def _mirror_pad(x: np.ndarray, paddings_t: np.ndarray | None = None, *, paddings: Pairs, mode: str) -> np.ndarray:
    pairs = _checked_pairs(x, paddings_t, paddings, mode)
    return np.pad(x, pairs, mode=mode.lower())


register("mirror_pad", _mirror_pad_rule, _mirror_pad, Fusion.LAYOUT)


def _tile_rule(in_types: tuple[TensorType, ...], multiples: Ints) -> tuple[TensorType, ...]:
    """`tile[multiples](x)` or `tile[multiples](x, multiples)`."""
    t = in_types[0]
    if len(in_types) == 2:
        _require_index_vector(in_types[1], "tile's multiples", len(multiples))
    else:
        _require_static(multiples, "tile's multiples")
    shape = t.shape if t.shape is not None else (None,) * len(multiples)
    if len(shape) != len(multiples) or any(_known(m) and m < 0 for m in multiples):
        raise OpTypeError(f"tile of {t} needs one non-negative multiple per axis, got {list(multiples)}")
    return (TensorType(t.dtype, tuple(_tiled(d, m) for d, m in zip(shape, multiples))),)


def _tiled(d: Dim, m: Dim) -> Dim:
    if m == 1:
        return d
    if m == 0:
        return 0
    return d * m if _known(d) and _known(m) else None


def _tile(x: np.ndarray, multiples_t: np.ndarray | None = None, *, multiples: Ints) -> np.ndarray:
    m = _runtime(multiples_t, multiples)
    if len(m) != x.ndim or any(v < 0 for v in m):
        raise ValueError(f"tile of a tensor of shape {list(x.shape)} needs one non-negative multiple "
                         f"per axis, got {list(m)}")
    return np.tile(x, m) if m else _fresh(x)


register("tile", _tile_rule, _tile, Fusion.LAYOUT)


def _broadcast_to_rule(in_types: tuple[TensorType, ...], shape: Ints) -> tuple[TensorType, ...]:
    """`broadcast_to[shape](x)` or `broadcast_to[shape](x, dims)`: NumPy's broadcasting rule."""
    t = in_types[0]
    if len(in_types) == 2:
        _require_index_vector(in_types[1], "broadcast_to's shape", len(shape))
    else:
        _require_static(shape, "broadcast_to's shape")
    if t.shape is None:
        return (TensorType(t.dtype, tuple(shape)),)
    if len(t.shape) > len(shape):
        raise OpTypeError(f"cannot broadcast {t} to {list(shape)}: the target has a lower rank")
    padded = (1,) * (len(shape) - len(t.shape)) + tuple(t.shape)
    out: list[Dim] = []
    for d, s in zip(padded, shape):
        if _known(d) and _known(s) and d not in (1, s):
            raise OpTypeError(f"cannot broadcast {t} to {list(shape)}: size {d} does not match {s}")
        out.append(d if s is None and _known(d) and d != 1 else s)
    return (TensorType(t.dtype, tuple(out)),)


def _broadcast_to(x: np.ndarray, dims: np.ndarray | None = None, *, shape: Ints) -> np.ndarray:
    return _fresh(np.broadcast_to(x, _runtime(dims, shape)))


register("broadcast_to", _broadcast_to_rule, _broadcast_to, Fusion.LAYOUT)

LAYOUT_OPS = ("identity", "stop_gradient", "reshape", "transpose", "expand_dims", "squeeze", "concat",
              "stack", "split", "unstack", "slice", "strided_slice", "gather", "one_hot", "pad",
              "mirror_pad", "tile", "broadcast_to")
