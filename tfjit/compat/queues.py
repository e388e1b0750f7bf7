"""TF 1.x queues (`tf.FIFOQueue`, `tf.RandomShuffleQueue`, `tf.PaddingFIFOQueue`).

A queue is not a node: it is a name the graph reserves plus the description every queue
op carries (`tfjit/ops/queue.py`), so the session makes the host queue on first use.
"""
from __future__ import annotations

from typing import Any

from ..ir.types import DType, TensorType, as_dtype, make_shape
from ..trace.graph import get_default_graph
from ..trace.tensor import Operation, Tensor, convert_to_tensor
from .math_ops import constant_value, emit
from .random_ops import get_seed

__all__ = ["QueueBase", "FIFOQueue", "RandomShuffleQueue", "PaddingFIFOQueue"]


class QueueBase:
    """The queue ops TF 1.x offers; subclasses choose the order elements leave in."""

    def __init__(self, kind: str, capacity: int, dtypes: Any, shapes: Any, names: Any, name: str,
                 min_after_dequeue: int = 0, seed: int | None = None):
        self._dtypes = [as_dtype(d) for d in (dtypes if isinstance(dtypes, (list, tuple)) else [dtypes])]
        self._shapes = _shapes(shapes, len(self._dtypes))
        self._names = _names(names, len(self._dtypes))
        graph = get_default_graph()
        self._graph = graph
        self._name = graph.unique_name(name)
        s1, s2 = get_seed(seed) if kind == "random_shuffle" else (0, 0)
        components = tuple(TensorType(d, s) for d, s in zip(self._dtypes, self._shapes))
        self._attrs = {"resource": self._name, "kind": kind, "capacity": int(capacity), "components": components,
                       "min_after_dequeue": int(min_after_dequeue), "seed": s1, "seed2": s2}

    # -- properties -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def dtypes(self) -> list[DType]:
        return list(self._dtypes)

    @property
    def shapes(self) -> list[Any]:
        from ..trace.tensor import TensorShape

        return [TensorShape(s) for s in self._shapes]

    @property
    def names(self) -> list[str] | None:
        return self._names

    # -- ops ----------------------------------------------------------------------------------
    def enqueue(self, vals: Any, name: str | None = None) -> Operation:
        """Adds one element; blocks while the queue is full."""
        return self._emit("queue_enqueue", self._values(vals), name or "enqueue")

    def enqueue_many(self, vals: Any, name: str | None = None) -> Operation:
        """Adds the slices of `vals` along their first dimension as elements."""
        return self._emit("queue_enqueue_many", self._values(vals), name or "enqueue_many")

    def dequeue(self, name: str | None = None) -> Any:
        """Removes one element; blocks while the queue is empty (OutOfRangeError once closed)."""
        return self._outputs(self._emit("queue_dequeue", [], name or "dequeue"))

    def dequeue_many(self, n: Any, name: str | None = None) -> Any:
        """Removes `n` elements, stacked along a new first dimension."""
        op = self._emit("queue_dequeue_many", [], name or "dequeue_many", n=_static_n(n))
        return self._outputs(op)

    def dequeue_up_to(self, n: Any, name: str | None = None) -> Any:
        """Like dequeue_many, but after close returns the fewer than `n` elements left."""
        op = self._emit("queue_dequeue_up_to", [], name or "dequeue_up_to", n=_static_n(n))
        return self._outputs(op)

    def close(self, cancel_pending_enqueues: bool = False, name: str | None = None) -> Operation:
        """No more enqueues; dequeues drain what is left, then raise OutOfRangeError."""
        return self._emit("queue_close", [], name or "close", cancel_pending_enqueues=bool(cancel_pending_enqueues))

    def is_closed(self, name: str | None = None) -> Tensor:
        return self._emit("queue_is_closed", [], name or "is_closed").outputs[0]

    def size(self, name: str | None = None) -> Tensor:
        return self._emit("queue_size", [], name or "size").outputs[0]

    # -- helpers ------------------------------------------------------------------------------
    def _emit(self, op: str, inputs: list[Tensor], name: str, **attrs: Any) -> Operation:
        with self._graph.as_default(), self._graph.name_scope(self._name + "/"):
            return emit(op, inputs, {**self._attrs, **attrs}, name=name)

    def _values(self, vals: Any) -> list[Tensor]:
        """The enqueued values as tensors of the queue's dtypes, in component order."""
        if isinstance(vals, dict):
            if self._names is None:
                raise ValueError("Queue must have names to enqueue a dictionary")
            if sorted(vals) != sorted(self._names):
                raise ValueError(f"Keys in dictionary to enqueue {sorted(vals)} do not match names "
                                 f"of Queue {sorted(self._names)}")
            vals = [vals[k] for k in self._names]
        elif self._names is not None:
            raise ValueError("You must enqueue a dictionary in a Queue with names")
        elif not isinstance(vals, (list, tuple)):
            vals = [vals]
        if len(vals) != len(self._dtypes):
            raise ValueError(f"Queue {self._name} has {len(self._dtypes)} components, got {len(vals)} values")
        with self._graph.as_default():
            return [convert_to_tensor(v, dtype=d) for v, d in zip(vals, self._dtypes)]

    def _outputs(self, op: Operation) -> Any:
        outs = list(op.outputs)
        if self._names is not None:
            return dict(zip(self._names, outs))
        return outs[0] if len(outs) == 1 else outs


class FIFOQueue(QueueBase):
    """Elements leave in the order they came."""

    def __init__(self, capacity: int, dtypes: Any, shapes: Any = None, names: Any = None,
                 shared_name: str | None = None, name: str = "fifo_queue"):
        super().__init__("fifo", capacity, dtypes, shapes, names, name)


class PaddingFIFOQueue(QueueBase):
    """A FIFO queue whose dequeue_many pads each component to the batch's largest shape."""

    def __init__(self, capacity: int, dtypes: Any, shapes: Any, names: Any = None,
                 shared_name: str | None = None, name: str = "padding_fifo_queue"):
        if shapes is None:
            raise ValueError("PaddingFIFOQueue requires the shapes of its components")
        super().__init__("padding_fifo", capacity, dtypes, shapes, names, name)


class RandomShuffleQueue(QueueBase):
    """Elements leave in a random order; a dequeue waits until more than `min_after_dequeue`
    are held (until the queue is closed), so what leaves is well mixed."""

    def __init__(self, capacity: int, min_after_dequeue: int, dtypes: Any, shapes: Any = None,
                 names: Any = None, seed: int | None = None, shared_name: str | None = None,
                 name: str = "random_shuffle_queue"):
        if min_after_dequeue >= capacity > 0:
            raise ValueError(f"min_after_dequeue ({min_after_dequeue}) must be less than capacity ({capacity})")
        super().__init__("random_shuffle", capacity, dtypes, shapes, names, name, min_after_dequeue, seed)


def _shapes(shapes: Any, n: int) -> list[tuple | None]:
    if shapes is None:
        return [None] * n
    items = [shapes] if hasattr(shapes, "as_list") else list(shapes)
    if all(d is None or isinstance(d, int) for d in items):
        items = [items]  # a single shape, e.g. shapes=[2, 3] (TF's rule)
    if len(items) != n:
        raise ValueError(f"Queue shapes must have the same length as dtypes: {n} dtypes, {len(items)} shapes")
    return [make_shape(s.as_list() if hasattr(s, "as_list") else s) for s in items]


def _names(names: Any, n: int) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != n:
        raise ValueError(f"Queue names must have the same length as dtypes: {n} dtypes, {len(names)} names")
    return names


def _static_n(n: Any) -> int:
    value = constant_value(n)
    if value is None or value.ndim != 0:
        raise ValueError("tfjit queues need the number of elements to dequeue known while building "
                         f"(a Python int or a constant), got {n!r}")
    return int(value)

