"""`tf.metrics` (TF 1.x): streaming metrics as (value, update_op) over local variables.

A metric keeps its running sums in local variables (`<name>/total`, `<name>/count`) that
`tf.local_variables_initializer()` resets; `update_op` adds a batch and returns the new value.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..ir.types import float32
from ..trace.tensor import Tensor, convert_to_tensor
from .array_ops import size, zeros
from .control_flow import control_dependencies
from .graph_keys import GraphKeys, add_to_collections
from .losses import broadcast_weights, div_no_nan, match_weights_rank, remove_squeezable_dimensions
from .math_ops import cast, equal, maximum, multiply, reduce_sum
from .variables import Variable, variable_scope

METRIC_VARIABLES = "metric_variables"


def metric_variable(shape: Sequence[int], dtype: Any, name: str) -> Variable:
    """A local, non-trainable variable starting at zeros (also in the `metric_variables` collection)."""
    return Variable(lambda: zeros(shape, dtype), trainable=False,
                    collections=[GraphKeys.LOCAL_VARIABLES, METRIC_VARIABLES], name=name)


def mean(values: Any, weights: Any = None, metrics_collections: Sequence[str] | None = None,
         updates_collections: Sequence[str] | None = None, name: str | None = None) -> tuple[Tensor, Tensor]:
    """The (weighted) mean of all values seen: `total / count`, 0 before any."""
    with variable_scope(name, "mean"):
        values = cast(values, float32)
        total = metric_variable([], float32, "total")
        count = metric_variable([], float32, "count")
        if weights is None:
            num_values = cast(size(values), float32)
        else:
            weights = broadcast_weights(cast(match_weights_rank(values, convert_to_tensor(weights)), float32), values)
            values = multiply(values, weights)
            num_values = reduce_sum(weights)
        update_total = total.assign_add(reduce_sum(values))
        with control_dependencies([values]):
            update_count = count.assign_add(num_values)
        value = div_no_nan(total.value(), maximum(count, 0.0), name="value")
        update_op = div_no_nan(update_total, maximum(update_count, 0.0), name="update_op")
    add_to_collections(metrics_collections or [], value)
    add_to_collections(updates_collections or [], update_op)
    return value, update_op


def accuracy(labels: Any, predictions: Any, weights: Any = None, metrics_collections: Sequence[str] | None = None,
             updates_collections: Sequence[str] | None = None, name: str | None = None) -> tuple[Tensor, Tensor]:
    """How often `predictions` equal `labels` (weighted): `(accuracy, update_op)`."""
    labels, predictions = remove_squeezable_dimensions(labels, predictions)
    predictions.shape.assert_is_compatible_with(labels.shape)
    if labels.dtype != predictions.dtype:
        predictions = cast(predictions, labels.dtype)
    is_correct = cast(equal(predictions, labels), float32)
    return mean(is_correct, weights, metrics_collections, updates_collections, name or "accuracy")
