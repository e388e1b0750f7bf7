"""TF-compatible error classes; every message names the op and the user's source line."""
from __future__ import annotations

from typing import Any


class OpError(Exception):
    """Base of runtime errors (TF's `tf.errors.OpError`): carries the node and a message."""

    def __init__(self, node_def: Any = None, op: Any = None, message: str = ""):
        super().__init__(message)
        self.node_def = node_def
        self.op = op
        self.message = message


class InvalidArgumentError(OpError):
    pass


class FailedPreconditionError(OpError):
    pass


class NotFoundError(OpError):
    pass


class UnimplementedError(OpError):
    pass


class OpTypeError(ValueError):
    """Raised by an op's type rule; the graph builder adds the op name and user's line."""


class GraphError(ValueError):
    """A build-time error at a user's line (bad shapes, dtypes, axes, names)."""


def where(op: str, loc: Any) -> str:
    """'op `matmul` at model.py:12' — the prefix every error message starts with."""
    at = f" at {loc}" if loc is not None else ""
    return f"op `{op}`{at}"


# -- issue 6: queues and input pipelines
class OutOfRangeError(OpError):
    """A dequeue from a closed, drained queue, or `get_next()` past a dataset's end."""


class CancelledError(OpError):
    """An enqueue to a closed queue, or an op cancelled while it waited (session closed)."""
