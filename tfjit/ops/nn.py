"""Neural-network ops: bias_add, softmax, log_softmax, the cross-entropy losses and l2_loss.

Each loss is one op rather than a composition, so fusion sees one reduction and autodiff can
give it the cheap rule TF uses (softmax minus labels). The references use the formulas of
TF's CPU kernels (max-shifted exponentials, `labels * (logsumexp - shifted)`), so they agree
with TF on extreme logits, NaN included; float16 is computed in float32 and rounded once at
the end.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, OpTypeError
from ..ir.types import Dim, TensorType, dims_compatible, int32, int64, merge_dims
from .registry import Fusion, register
from .shapes import broadcast_shapes, normalize_axis, require_float, require_numeric, same_dtype

Shape = tuple[Dim, ...]


def _work(x: np.ndarray) -> np.ndarray:
    """float16 in float32 (as TF's xent kernels do); other dtypes as they are."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _merge_same_shape(a: TensorType, b: TensorType, what: str) -> Shape | None:
    """The shape two operands must share, each dim as informative as either side makes it."""
    if a.shape is None or b.shape is None:
        return b.shape if a.shape is None else a.shape
    if len(a.shape) != len(b.shape) or not all(map(dims_compatible, a.shape, b.shape)):
        raise OpTypeError(f"{what} must have the same shape, got {a} and {b}")
    return tuple(merge_dims(x, y) for x, y in zip(a.shape, b.shape))


def _class_axis(t: TensorType, axis: int) -> int | None:
    """The normalised class axis of a rank >= 1 tensor; None when the rank is unknown."""
    if t.shape is None:
        return None
    if not t.shape:
        raise OpTypeError(f"logits must have rank >= 1, got a scalar {t}")
    return normalize_axis(axis, len(t.shape), t)


# -- bias_add ------------------------------------------------------------------------------
def _bias_add_rule(in_types: tuple[TensorType, ...], data_format: str = "NHWC") -> tuple[TensorType, ...]:
    value, bias = in_types
    dtype = same_dtype(in_types, "bias_add's value and bias")
    require_numeric(value)
    if bias.shape is not None and len(bias.shape) != 1:
        raise OpTypeError(f"bias must be 1-D, got {bias}")
    if value.shape is None:
        return (value,)
    c = _channel_axis(value, data_format)
    if bias.shape is None:
        return (value,)
    if not dims_compatible(value.shape[c], bias.shape[0]):
        raise OpTypeError(f"bias {bias} must match the channel dimension {c} of value {value} "
                          f"(data_format {data_format}): {bias.shape[0]} != {value.shape[c]}")
    shape = list(value.shape)
    shape[c] = merge_dims(shape[c], bias.shape[0])
    return (TensorType(dtype, tuple(shape)),)


def _channel_axis(value: TensorType, data_format: str) -> int:
    """Dim 1 for NCHW (which needs rank >= 3, as in TF), the last dim for NHWC."""
    if data_format not in ("NHWC", "NCHW"):
        raise OpTypeError(f"data_format must be NHWC or NCHW, got {data_format!r}")
    rank = len(value.shape)
    min_rank = 3 if data_format == "NCHW" else 2
    if rank < min_rank:
        raise OpTypeError(f"value must have rank >= {min_rank} for data_format {data_format}, got {value}")
    return 1 if data_format == "NCHW" else rank - 1


def _bias_add(value: np.ndarray, bias: np.ndarray, data_format: str = "NHWC") -> np.ndarray:
    if data_format == "NCHW":
        bias = bias.reshape((-1,) + (1,) * (value.ndim - 2))
    with np.errstate(all="ignore"):
        return (value + bias).astype(value.dtype, copy=False)


register("bias_add", _bias_add_rule, _bias_add, Fusion.BROADCAST,
         doc="value + bias along the channel dim (last for NHWC, 1 for NCHW)")


# -- softmax and log_softmax ---------------------------------------------------------------
def _softmax_rule(in_types: tuple[TensorType, ...], axis: int = -1) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_float(t)
    _class_axis(t, axis)
    return (t,)


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its max along `axis`: exp() of it cannot overflow, and the max entry is exactly 0."""
    return x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)


def _softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(all="ignore"):
        e = np.exp(_shifted(_work(logits), axis))
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(logits.dtype)


def _log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(all="ignore"):
        shifted = _shifted(_work(logits), axis)
        out = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        return out.astype(logits.dtype)


register("softmax", _softmax_rule, _softmax, Fusion.REDUCTION,
         doc="exp(x - max) / sum(exp(x - max)) along `axis`")
register("log_softmax", _softmax_rule, _log_softmax, Fusion.REDUCTION,
         doc="(x - max) - log(sum(exp(x - max))) along `axis`")


# -- softmax cross-entropy (dense labels) --------------------------------------------------
def _xent_rule(in_types: tuple[TensorType, ...], axis: int = -1) -> tuple[TensorType, ...]:
    """Inputs (logits, labels); labels broadcast to the logits' shape, as in TF's kernel."""
    logits, labels = in_types
    require_float(logits)
    dtype = same_dtype(in_types, "logits and labels")
    ax = _class_axis(logits, axis)
    if ax is None:
        return (TensorType(dtype, None),)
    shape = _labels_broadcast(logits, labels)
    return (TensorType(dtype, shape[:ax] + shape[ax + 1:]),)


def _labels_broadcast(logits: TensorType, labels: TensorType) -> Shape:
    """The logits' shape, refined by the labels', which must broadcast to it."""
    mismatch = OpTypeError(f"labels {labels} must have the shape of logits {logits} (or broadcast to it)")
    try:
        shape = broadcast_shapes(logits.shape, labels.shape)
    except OpTypeError:
        raise mismatch from None
    if shape is None:
        return tuple(logits.shape)
    widened = [d == 1 and isinstance(s, int) and s != 1 for d, s in zip(logits.shape, shape)]
    if len(shape) != len(logits.shape) or any(widened):
        raise mismatch
    return tuple(1 if d == 1 else s for d, s in zip(logits.shape, shape))  # an unknown label dim may be 1


def _xent(logits: np.ndarray, labels: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(all="ignore"):
        shifted = _shifted(_work(logits), axis)
        lse = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        loss = np.sum(_work(labels) * (lse - shifted), axis=axis)
        return loss.astype(logits.dtype)


register("softmax_cross_entropy_with_logits", _xent_rule, _xent, Fusion.REDUCTION,
         doc="sum(labels * (logsumexp(logits) - logits)) along `axis`; inputs (logits, labels)")


# -- softmax cross-entropy (class-index labels) --------------------------------------------
def _sparse_xent_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    """Inputs (logits, labels): labels index the last dim and have the logits' other dims."""
    logits, labels = in_types
    require_float(logits)
    if labels.dtype not in (int32, int64):
        raise OpTypeError(f"labels must be int32 or int64 class indices, got {labels}")
    if logits.shape is None:
        return (TensorType(logits.dtype, labels.shape),)
    if not logits.shape:
        raise OpTypeError(f"logits cannot be a scalar, got {logits}")
    outer = logits.shape[:-1]
    if labels.shape is None:
        return (TensorType(logits.dtype, outer),)
    if len(labels.shape) != len(outer):
        raise OpTypeError(f"the rank of labels {labels} must equal the rank of logits {logits} minus 1")
    if not all(map(dims_compatible, labels.shape, outer)):
        raise OpTypeError(f"labels {labels} must have the shape of logits {logits} without its last dim")
    return (TensorType(logits.dtype, tuple(map(merge_dims, labels.shape, outer))),)


def _sparse_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    _check_labels(labels, logits.shape[-1])
    with np.errstate(all="ignore"):
        shifted = _shifted(_work(logits), -1)
        lse = np.log(np.sum(np.exp(shifted), axis=-1))
        picked = np.take_along_axis(shifted, labels[..., None].astype(np.intp), axis=-1)[..., 0]
        return (lse - picked).astype(logits.dtype)


def _check_labels(labels: np.ndarray, classes: int) -> None:
    """TF's CPU kernel rejects out-of-range labels (its GPU kernel gives NaN instead)."""
    bad = (labels < 0) | (labels >= classes)
    if np.any(bad):
        first = labels[bad].reshape(-1)[0]
        shown = " ".join(str(v) for v in labels.reshape(-1)[:32]) + (" ..." if labels.size > 32 else "")
        raise InvalidArgumentError(None, "sparse_softmax_cross_entropy_with_logits",
                                   f"Received a label value of {first} which is outside the valid "
                                   f"range of [0, {classes}).  Label values: {shown}")


register("sparse_softmax_cross_entropy_with_logits", _sparse_xent_rule, _sparse_xent, Fusion.REDUCTION,
         doc="logsumexp(logits) - logits[label] over the last dim; inputs (logits, labels)")


# -- sigmoid cross-entropy and l2_loss -----------------------------------------------------
def _sigmoid_xent_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    logits, labels = in_types
    require_float(logits)
    dtype = same_dtype(in_types, "logits and labels")
    return (TensorType(dtype, _merge_same_shape(logits, labels, "logits and labels")),)


def _sigmoid_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """TF's overflow-free form: max(x, 0) - x * z + log(1 + exp(-|x|))."""
    x, z = _work(logits), _work(labels)
    with np.errstate(all="ignore"):
        out = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
        return out.astype(logits.dtype)


def _l2_loss_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    (t,) = in_types
    require_float(t)
    return (TensorType(t.dtype, ()),)


def _l2_loss(t: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        x = _work(t)
        return np.asarray(np.sum(x * x) / 2, dtype=t.dtype)


register("sigmoid_cross_entropy_with_logits", _sigmoid_xent_rule, _sigmoid_xent, Fusion.ELEMENTWISE,
         doc="elementwise logistic loss; inputs (logits, labels)")
register("l2_loss", _l2_loss_rule, _l2_loss, Fusion.REDUCTION, doc="sum(t ** 2) / 2, a scalar")

NN_OPS: tuple[str, ...] = ("bias_add", "softmax", "log_softmax", "softmax_cross_entropy_with_logits",
                           "sparse_softmax_cross_entropy_with_logits",
                           "sigmoid_cross_entropy_with_logits", "l2_loss")
