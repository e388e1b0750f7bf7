"""TF1 `tf.nn` ops beyond activations: bias_add, softmax, the cross-entropy losses, l2_loss.

Argument names, defaults, default op names and error cases follow TF 1.x; float16 inputs
stay float16 (the ops compute in float32 inside, as TF's cross-entropy wrappers do).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError
from ..errors import where as at
from ..ops.shapes import normalize_axis
from ..trace.source import user_location
from ..trace.tensor import Tensor, convert_to_tensor
from .array_ops import stop_gradient
from .math_ops import cast, constant_value, emit1

__all__ = ["bias_add", "softmax", "log_softmax", "softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits",
           "sigmoid_cross_entropy_with_logits", "l2_loss"]


def _data_format(data_format: str | None) -> str:
    """TF's reading of `data_format`: 'NC...' is channels-first, 'N...C' channels-last."""
    if data_format is None:
        return "NHWC"
    if data_format.startswith("NC"):
        return "NCHW"
    if data_format.startswith("N") and data_format.endswith("C"):
        return "NHWC"
    raise ValueError("`data_format` must be of the form `N...C` or `NC...`. "
                     f"Received: data_format={data_format}")


def bias_add(value: Any, bias: Any, data_format: str | None = None, name: str | None = None) -> Tensor:
    """value + bias, with the 1-D bias along the channel dim of `data_format`."""
    fmt = _data_format(data_format)
    x = convert_to_tensor(value)
    b = bias if isinstance(bias, Tensor) else convert_to_tensor(bias, dtype=x.dtype)
    return emit1("bias_add", [x, b], {"data_format": fmt}, name or "BiasAdd")


def _axis_alias(axis: Any, dim: Any, default: int = -1) -> Any:
    """TF's deprecated `dim` alias of `axis`: giving both is an error."""
    if axis is not None and dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'.")
    chosen = axis if axis is not None else dim
    return default if chosen is None else chosen


def _class_axis(op: str, axis: Any, logits: Tensor) -> int:
    """The axis as an int, non-negative when the rank is known (a constant tensor is accepted)."""
    if isinstance(axis, Tensor):
        value = constant_value(axis)
        if value is None:
            raise ValueError(f"{op}: `axis` must be known while the graph is built (an int or a constant)")
        axis = value
    axis = int(np.asarray(axis))
    rank = logits.type.rank
    if rank is None or rank == 0:
        return axis  # the type rule reports a scalar with the op's name and shapes
    try:
        return normalize_axis(axis, rank, logits.type)
    except ValueError as e:
        raise GraphError(f"{at(op, user_location())}: {e}") from None


def softmax(logits: Any, axis: Any = None, name: str | None = None, dim: Any = None) -> Tensor:
    """exp(logits) / reduce_sum(exp(logits), axis), computed without overflow."""
    x = convert_to_tensor(logits)
    ax = _class_axis("softmax", _axis_alias(axis, dim), x)
    return emit1("softmax", [x], {"axis": ax}, name or "Softmax")


def log_softmax(logits: Any, axis: Any = None, name: str | None = None, dim: Any = None) -> Tensor:
    """logits - log(reduce_sum(exp(logits), axis)), computed without overflow."""
    x = convert_to_tensor(logits)
    ax = _class_axis("log_softmax", _axis_alias(axis, dim), x)
    return emit1("log_softmax", [x], {"axis": ax}, name or "LogSoftmax")


def _ensure_xent_args(name: str, sentinel: Any, labels: Any, logits: Any) -> None:
    """TF1's guard against positional calls, which silently swapped labels and logits."""
    if sentinel is not None:
        raise ValueError(f"Only call `{name}` with named arguments (labels=..., logits=..., ...)")
    if labels is None or logits is None:
        raise ValueError("Both labels and logits must be provided.")


def _logits_and_labels(labels: Any, logits: Any) -> tuple[Tensor, Tensor]:
    """Labels in the logits' dtype: Python values convert to it, tensors are cast as TF does."""
    x = convert_to_tensor(logits)
    y = convert_to_tensor(labels, preferred_dtype=x.dtype)
    if x.dtype.is_floating and y.dtype != x.dtype:
        y = cast(y, x.dtype)
    return x, y


def _softmax_xent(labels: Any, logits: Any, axis: Any, name: str) -> Tensor:
    x, y = _logits_and_labels(labels, logits)
    ax = _class_axis("softmax_cross_entropy_with_logits", axis, x)
    return emit1("softmax_cross_entropy_with_logits", [x, y], {"axis": ax}, name)


def softmax_cross_entropy_with_logits_v2(labels: Any, logits: Any, axis: Any = None, name: str | None = None,
                                         dim: Any = None) -> Tensor:
    """Softmax cross-entropy along `axis`; gradients flow into both labels and logits."""
    return _softmax_xent(labels, logits, _axis_alias(axis, dim),
                         name or "softmax_cross_entropy_with_logits")


def softmax_cross_entropy_with_logits(_sentinel: Any = None, labels: Any = None, logits: Any = None,
                                      dim: Any = -1, name: str | None = None, axis: Any = None) -> Tensor:
    """TF1's (deprecated) form: like `_v2`, but no gradient flows into `labels`."""
    _ensure_xent_args("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    class_axis = _axis_alias(axis, None if dim == -1 else dim)  # -1 is dim's default, not a choice
    x = convert_to_tensor(logits)
    y = convert_to_tensor(labels, preferred_dtype=x.dtype)
    with x.graph.name_scope(name or "softmax_cross_entropy_with_logits_sg") as scope:
        y = stop_gradient(y, name="labels_stop_gradient")
    return _softmax_xent(y, x, class_axis, scope)  # a name ending in '/' is taken as given


def sparse_softmax_cross_entropy_with_logits(_sentinel: Any = None, labels: Any = None, logits: Any = None,
                                             name: str | None = None) -> Tensor:
    """Softmax cross-entropy with int32/int64 class indices over the last dim of logits."""
    _ensure_xent_args("sparse_softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    x = convert_to_tensor(logits)
    y = convert_to_tensor(labels)
    return emit1("sparse_softmax_cross_entropy_with_logits", [x, y], {},
                 name or "SparseSoftmaxCrossEntropyWithLogits")


def sigmoid_cross_entropy_with_logits(_sentinel: Any = None, labels: Any = None, logits: Any = None,
                                      name: str | None = None) -> Tensor:
    """Elementwise logistic loss max(x, 0) - x * z + log(1 + exp(-|x|)), stable for any x."""
    _ensure_xent_args("sigmoid_cross_entropy_with_logits", _sentinel, labels, logits)
    x = convert_to_tensor(logits)
    y = convert_to_tensor(labels, preferred_dtype=x.dtype)
    return emit1("sigmoid_cross_entropy_with_logits", [x, y], {}, name or "logistic_loss")


def l2_loss(t: Any, name: str | None = None) -> Tensor:
    """sum(t ** 2) / 2 as a scalar (no square root, as in TF)."""
    return emit1("l2_loss", [convert_to_tensor(t)], {}, name or "L2Loss")
