"""`tf.losses` (TF 1.x): weighted losses reduced as TF reduces them, and the loss collections.

Every loss casts to float32 (as TF 1.x does), multiplies by `weights` (a scalar, or a tensor
of the losses' rank whose dims are 1 or match), reduces with `reduction` (by default
SUM_BY_NONZERO_WEIGHTS: the weighted sum over the number of non-zero weights, 0 when there is
none), casts back to the input dtype and is added to `GraphKeys.LOSSES`. Broadcastability of
weights is checked while building where the shapes are known.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

from ..ir.types import dims_compatible, float32
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from .array_ops import constant, ones_like, shape, size, stop_gradient, zeros_like
from .graph_keys import GraphKeys
from .layout_ops import expand_dims, squeeze
from .math_ops import abs, add_n, cast, equal, multiply, reduce_sum, squared_difference, subtract, where
from .nn_ops import (l2_loss, sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits_v2,
                     sparse_softmax_cross_entropy_with_logits)


class Reduction:
    """How `compute_weighted_loss` reduces the weighted losses."""

    NONE = "none"
    SUM = "weighted_sum"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    MEAN = "weighted_mean"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls) -> tuple[str, ...]:
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_OVER_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key: str) -> None:
        if key not in cls.all():
            raise ValueError(f"Invalid Reduction Key {key}.")


# -- the weighted reduction --------------------------------------------------------------------
def compute_weighted_loss(losses: Any, weights: Any = 1.0, scope: str | None = None,
                          loss_collection: str | None = GraphKeys.LOSSES,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """`losses * weights` reduced by `reduction`, in the losses' dtype, added to the collection."""
    Reduction.validate(reduction)
    with get_default_graph().name_scope(scope or "weighted_loss"):
        losses = convert_to_tensor(losses)
        input_dtype = losses.dtype
        losses = cast(losses, float32)
        weights = cast(weights, float32)
        _check_broadcastable(weights, losses)
        weighted = multiply(losses, weights)
        loss = weighted if reduction == Reduction.NONE else _reduce(weighted, losses, weights, reduction)
        loss = cast(loss, input_dtype)
        add_loss(loss, loss_collection)
        return loss


def _reduce(weighted: Tensor, losses: Tensor, weights: Tensor, reduction: str) -> Tensor:
    total = reduce_sum(weighted)
    if reduction == Reduction.MEAN:
        return div_no_nan(total, reduce_sum(ones_like(losses) * weights))
    if reduction == Reduction.SUM_BY_NONZERO_WEIGHTS:
        return div_no_nan(total, _num_present(losses, weights))
    if reduction == Reduction.SUM_OVER_BATCH_SIZE:
        return div_no_nan(total, cast(size(losses), float32))
    return total


def div_no_nan(x: Tensor, y: Tensor, name: str = "value") -> Tensor:
    """x / y, and 0 where y is 0 (TF's `div_no_nan`); the gradient is 0 there too."""
    zero = equal(y, 0.0)
    return where(zero, zeros_like(x), x / where(zero, ones_like(y), y), name=name)


def _num_present(losses: Tensor, weights: Tensor) -> Tensor:
    """How many losses have a non-zero weight (weights broadcast to the losses' shape)."""
    with get_default_graph().name_scope("num_present") as scope:
        present = where(equal(weights, 0.0), zeros_like(weights), ones_like(weights))
        return reduce_sum(broadcast_weights(present, losses), name=scope)


def broadcast_weights(weights: Tensor, values: Tensor) -> Tensor:
    """`weights` expanded to the values' shape (TF's `weights_broadcast_ops.broadcast_weights`)."""
    _check_broadcastable(weights, values)
    if weights.type.is_fully_defined and weights.type.shape == values.type.shape:
        return weights
    return multiply(weights, ones_like(values))


def _check_broadcastable(weights: Tensor, values: Tensor) -> None:
    """TF's rule: weights are a scalar, or have the values' rank with each dim 1 or equal."""
    w, v = weights.type.shape, values.type.shape
    if w is None or v is None or len(w) == 0:
        return
    if len(w) != len(v):
        raise ValueError(f"weights can not be broadcast to values. values.rank={len(v)}. weights.rank={len(w)}. "
                         f"values.shape={values.shape}. weights.shape={weights.shape}.")
    for i, (a, b) in enumerate(zip(w, v)):
        if isinstance(a, int) and isinstance(b, int) and a not in (1, b):
            raise ValueError(f"weights can not be broadcast to values. Mismatch at dim {i}. "
                             f"values.shape={values.shape}. weights.shape={weights.shape}.")


# -- the losses --------------------------------------------------------------------------------
def _pair_as_float32(labels: Any, predictions: Any) -> tuple[Tensor, Tensor]:
    if labels is None:
        raise ValueError("Argument `labels` must not be None.")
    if predictions is None:
        raise ValueError("Argument `predictions` must not be None.")
    predictions, labels = cast(predictions, float32), cast(labels, float32)
    predictions.shape.assert_is_compatible_with(labels.shape)
    return labels, predictions


def mean_squared_error(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None,
                       loss_collection: str | None = GraphKeys.LOSSES,
                       reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """Weighted `(predictions - labels) ** 2`."""
    with get_default_graph().name_scope(scope or "mean_squared_error") as name:
        labels, predictions = _pair_as_float32(labels, predictions)
        losses = squared_difference(predictions, labels)
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def absolute_difference(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None,
                        loss_collection: str | None = GraphKeys.LOSSES,
                        reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """Weighted `|predictions - labels|`."""
    with get_default_graph().name_scope(scope or "absolute_difference") as name:
        labels, predictions = _pair_as_float32(labels, predictions)
        losses = abs(subtract(predictions, labels))
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def sigmoid_cross_entropy(multi_class_labels: Any, logits: Any, weights: Any = 1.0, label_smoothing: float = 0,
                          scope: str | None = None, loss_collection: str | None = GraphKeys.LOSSES,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """Weighted logistic loss; smoothing moves labels toward 1/2."""
    with get_default_graph().name_scope(scope or "sigmoid_cross_entropy_loss") as name:
        logits = convert_to_tensor(logits)
        labels = cast(multi_class_labels, logits.dtype)
        logits.shape.assert_is_compatible_with(labels.shape)
        if label_smoothing > 0:
            labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
        losses = sigmoid_cross_entropy_with_logits(labels=labels, logits=logits, name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def softmax_cross_entropy(onehot_labels: Any, logits: Any, weights: Any = 1.0, label_smoothing: float = 0,
                          scope: str | None = None, loss_collection: str | None = GraphKeys.LOSSES,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """Weighted softmax cross-entropy of [batch, classes] logits; no gradient to the labels."""
    with get_default_graph().name_scope(scope or "softmax_cross_entropy_loss") as name:
        logits = convert_to_tensor(logits)
        labels = cast(onehot_labels, logits.dtype)
        logits.shape.assert_is_compatible_with(labels.shape)
        if label_smoothing > 0:
            num_classes = cast(shape(labels)[-1], logits.dtype)
            labels = labels * (1 - label_smoothing) + label_smoothing / num_classes
        labels = stop_gradient(labels, name="labels_stop_gradient")
        losses = softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits, name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def sparse_softmax_cross_entropy(labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None,
                                 loss_collection: str | None = GraphKeys.LOSSES,
                                 reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:
    """Weighted softmax cross-entropy with class indices; `[batch, 1]` labels are squeezed."""
    with get_default_graph().name_scope(scope or "sparse_softmax_cross_entropy_loss") as name:
        labels, logits, weights = _squeeze_for_sparse(labels, logits, weights)
        losses = sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def _squeeze_for_sparse(labels: Any, logits: Any, weights: Any) -> tuple[Tensor, Tensor, Any]:
    labels, logits = remove_squeezable_dimensions(labels, logits, expected_rank_diff=1)
    weights = convert_to_tensor(weights)
    if labels.type.rank is not None and weights.type.rank is not None and weights.type.rank - labels.type.rank == 1:
        weights = squeeze(weights, [-1])
    return labels, logits, weights


def remove_squeezable_dimensions(labels: Any, predictions: Any,
                                 expected_rank_diff: int = 0) -> tuple[Tensor, Tensor]:
    """Squeeze a trailing size-1 dim off labels or predictions when their ranks differ by one
    more (or less) than expected (static ranks only)."""
    predictions, labels = convert_to_tensor(predictions), convert_to_tensor(labels)
    pred_shape, label_shape = predictions.type.shape, labels.type.shape
    if pred_shape is None or label_shape is None:
        return labels, predictions
    diff = len(pred_shape) - len(label_shape)
    if diff == expected_rank_diff + 1 and dims_compatible(pred_shape[-1], 1):
        predictions = squeeze(predictions, [-1])
    elif diff == expected_rank_diff - 1 and dims_compatible(label_shape[-1], 1):
        labels = squeeze(labels, [-1])
    return labels, predictions


def match_weights_rank(predictions: Tensor, weights: Tensor) -> Tensor:
    """Weights one rank above the predictions lose their last dim; one below gain one."""
    p, w = predictions.type.rank, weights.type.rank
    if p is None or w is None or w == 0:
        return weights
    if w - p == 1:
        return squeeze(weights, [-1])
    if p - w == 1:
        return expand_dims(weights, -1)
    return weights


# -- the collections ---------------------------------------------------------------------------
def add_loss(loss: Tensor, loss_collection: str | None = GraphKeys.LOSSES) -> None:
    if loss_collection:
        get_default_graph().add_to_collection(loss_collection, loss)


def get_losses(scope: str | None = None, loss_collection: str = GraphKeys.LOSSES) -> list[Tensor]:
    return get_default_graph().get_collection(loss_collection, scope)


def get_regularization_losses(scope: str | None = None) -> list[Tensor]:
    return get_default_graph().get_collection(GraphKeys.REGULARIZATION_LOSSES, scope)


def get_regularization_loss(scope: str | None = None, name: str = "total_regularization_loss") -> Tensor:
    """The sum of the regularization losses (a float32 0 when there is none)."""
    losses = get_regularization_losses(scope)
    return add_n(losses, name=name) if losses else constant(0.0)


def get_total_loss(add_regularization_losses: bool = True, name: str = "total_loss",
                   scope: str | None = None) -> Tensor:
    """The sum of the losses (and regularization losses) in the collections."""
    losses = get_losses(scope)
    if add_regularization_losses:
        losses = losses + get_regularization_losses(scope)
    if not losses:
        raise ValueError("No losses found: add some with tf.losses.* or tf.losses.add_loss.")
    return add_n(losses, name=name)


# -- regularizers ------------------------------------------------------------------------------
def l2_regularizer(scale: float, scope: str | None = None) -> Callable[[Any], Tensor | None]:
    """`tf.contrib.layers.l2_regularizer`: weights -> `scale * sum(w ** 2) / 2` (None at scale 0)."""
    if isinstance(scale, numbers.Integral):
        raise ValueError(f"scale cannot be an integer: {scale}")
    if isinstance(scale, numbers.Real):
        if scale < 0.0:
            raise ValueError(f"Setting a scale less than 0 on a regularizer: {scale:g}.")
        if scale == 0.0:
            return lambda _: None

    def l2(weights: Any) -> Tensor:
        weights = convert_to_tensor(weights)
        with get_default_graph().name_scope(scope or "l2_regularizer") as name:
            my_scale = convert_to_tensor(scale, dtype=weights.dtype, name="scale")
            return multiply(my_scale, l2_loss(weights), name=name)

    return l2
