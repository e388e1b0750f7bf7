"""TF1's standard collection names and the collection functions on the default graph."""
from __future__ import annotations

from typing import Any

from ..trace.graph import get_default_graph


class GraphKeys:
    GLOBAL_VARIABLES = "variables"
    LOCAL_VARIABLES = "local_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    MODEL_VARIABLES = "model_variables"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"
    REGULARIZATION_LOSSES = "regularization_losses"
    LOSSES = "losses"
    UPDATE_OPS = "update_ops"
    SUMMARIES = "summaries"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    QUEUE_RUNNERS = "queue_runners"
    ACTIVATIONS = "activations"
    INIT_OP = "init_op"
    WEIGHTS = "weights"
    BIASES = "biases"
    VARIABLES = GLOBAL_VARIABLES


def add_to_collection(name: str, value: Any) -> None:
    get_default_graph().add_to_collection(name, value)


def add_to_collections(names: Any, value: Any) -> None:
    for name in ([names] if isinstance(names, str) else names):
        add_to_collection(name, value)


def get_collection(key: str, scope: str | None = None) -> list[Any]:
    return get_default_graph().get_collection(key, scope)


def get_collection_ref(key: str) -> list[Any]:
    return get_default_graph().get_collection_ref(key)
