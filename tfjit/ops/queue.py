"""Queue and input-pipeline ops: stateful host ops over objects kept in the runtime state.

Every op here names its host object in the `resource` attribute (a queue's or an
iterator's graph-unique name); the object lives in `RuntimeState.resources`, made on first
use, so any op of a queue may be the first to run. All of them write state: DCE keeps them,
CSE never merges them, and the fusion scheduler keeps the ops of one resource in program
order (`passes/fuse.py`, `effect_edges`). A dequeue on an empty queue blocks its thread
until another thread enqueues or closes the queue (TF 1.x semantics).
"""
from __future__ import annotations

import threading
import weakref
from collections import deque
from itertools import count
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import (CancelledError, FailedPreconditionError, InvalidArgumentError, OpTypeError,
                      OutOfRangeError)
from ..ir.types import DType, TensorType, bool_, dims_compatible, int32, shape_compatible
from ..runtime.state import RuntimeState
from .registry import Fusion, register

Components = tuple[TensorType, ...]


# -- the host queue -------------------------------------------------------------------------
class HostQueue:
    """A bounded queue of elements (tuples of arrays) shared by the threads of one session."""

    def __init__(self, name: str, kind: str, capacity: int, components: Components,
                 min_after_dequeue: int, seed: int, seed2: int):
        self.name = name
        self.kind = kind
        self.capacity = capacity if capacity > 0 else np.iinfo(np.int32).max
        self.components = components
        self.min_after_dequeue = min_after_dequeue
        self.items: deque[tuple[np.ndarray, ...]] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.closing = False  # a close waits behind the pending enqueues
        self.waiting_enqueues = 0  # enqueue ops not yet done
        self.cancel_enqueues = False
        self.cancelled = False  # the session closed: every waiting op fails
        self.rng = np.random.Generator(np.random.Philox(key=(seed & 0xFFFFFFFF) << 32 | (seed2 & 0xFFFFFFFF)))

    @property
    def title(self) -> str:
        kinds = {"fifo": "FIFOQueue", "random_shuffle": "RandomShuffleQueue", "padding_fifo": "PaddingFIFOQueue"}
        return f"{kinds[self.kind]} '{self.name}'"

    def enqueue(self, elements: Iterator[tuple[np.ndarray, ...]]) -> None:
        """Adds the elements one at a time, each waiting for room (TF's EnqueueMany does too)."""
        with self.cond:
            if self.closed or self.closing:
                raise CancelledError(message=f"{self.title} is closed.")
            self.waiting_enqueues += 1
            try:
                for element in elements:
                    while len(self.items) >= self.capacity:
                        self._check_cancelled(enqueue=True)
                        self.cond.wait()
                    self._check_cancelled(enqueue=True)
                    self.items.append(element)
                    self.cond.notify_all()
            finally:
                self.waiting_enqueues -= 1
                self.cond.notify_all()

    def dequeue(self, n: int, up_to: bool) -> list[tuple[np.ndarray, ...]]:
        """`n` elements, taken as they arrive (so `n` may exceed the capacity); a random-shuffle
        queue keeps `min_after_dequeue` back until closed. After close: what is left
        (`up_to`) or OutOfRangeError, with the elements taken so far put back, as TF does."""
        taken: list[tuple[np.ndarray, ...]] = []
        with self.cond:
            try:
                while True:
                    self._check_cancelled(enqueue=False)
                    reserve = 0 if self.closed else self.min_after_dequeue
                    while len(taken) < n and len(self.items) > reserve:
                        taken.append(self._take())
                    if len(taken) == n or (self.closed and up_to and taken):
                        return taken
                    if self.closed:
                        raise OutOfRangeError(message=f"{self.title} is closed and has insufficient elements "
                                                      f"(requested {n}, current size {len(self.items) + len(taken)})")
                    self.cond.wait()
            except BaseException:
                self._put_back(taken)
                raise

    def _put_back(self, taken: list[tuple[np.ndarray, ...]]) -> None:
        if self.kind == "random_shuffle":
            self.items.extend(taken)
        else:
            self.items.extendleft(reversed(taken))
        self.cond.notify_all()

    def _take(self) -> tuple[np.ndarray, ...]:
        if self.kind != "random_shuffle":
            element = self.items.popleft()
        else:
            i = int(self.rng.integers(len(self.items)))
            self.items[i], self.items[-1] = self.items[-1], self.items[i]
            element = self.items.pop()
        self.cond.notify_all()
        return element

    def _check_cancelled(self, enqueue: bool) -> None:
        if self.cancelled:
            raise CancelledError(message=f"{self.title}: the session was closed while the op waited.")
        if enqueue and self.cancel_enqueues:
            raise CancelledError(message=f"{self.title} is closed; pending enqueues were cancelled.")

    def close(self, cancel_pending_enqueues: bool) -> None:
        """Cancelling fails the pending enqueues at once; otherwise, as in TF, the close waits
        behind them (they complete as room appears) and later enqueues fail."""
        with self.cond:
            if cancel_pending_enqueues:
                self.cancel_enqueues = True
            else:
                self.closing = True
                while self.waiting_enqueues and not self.cancelled:
                    self.cond.wait()
            self.closed = True
            self.cond.notify_all()

    def cancel(self) -> None:
        with self.cond:
            self.closed = self.cancelled = True
            self.cond.notify_all()

    def size(self) -> int:
        with self.cond:
            return len(self.items)


def _host_queue(state: RuntimeState, resource: str, kind: str, capacity: int, components: Components,
                min_after_dequeue: int, seed: int, seed2: int) -> HostQueue:
    return state.resource(resource, lambda: HostQueue(resource, kind, capacity, components,
                                                      min_after_dequeue, seed, seed2))


# -- type rules ------------------------------------------------------------------------------
def _check_components(in_types: tuple[TensorType, ...], components: Components, many: bool) -> None:
    if len(in_types) != len(components):
        raise OpTypeError(f"the queue has {len(components)} components but {len(in_types)} values were given")
    for i, (t, c) in enumerate(zip(in_types, components)):
        if t.dtype != c.dtype:
            raise OpTypeError(f"component {i} of the queue is {c.dtype.name}, the value is {t}")
        shape = t.shape
        if many and shape is not None:
            if len(shape) == 0:
                raise OpTypeError(f"enqueue_many needs values of rank >= 1; component {i} is {t}")
            shape = shape[1:]
        if c.shape is not None and not _compatible(shape, c.shape):
            kind = "an element of " if many else ""
            raise OpTypeError(f"{kind}component {i} has shape {TensorType(t.dtype, shape)}, "
                              f"the queue holds {c}")
    if many:
        firsts = {t.shape[0] for t in in_types if t.shape is not None and isinstance(t.shape[0], int)}
        if len(firsts) > 1:
            raise OpTypeError(f"enqueue_many needs one leading dimension in every component, got "
                              f"{', '.join(str(t) for t in in_types)}")


def _compatible(a: tuple | None, b: tuple | None) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(dims_compatible(x, y) for x, y in zip(a, b))


def _enqueue_rule(in_types: tuple[TensorType, ...], components: Components, **queue: Any) -> tuple[TensorType, ...]:
    _check_components(in_types, components, many=False)
    return ()


def _enqueue_many_rule(in_types: tuple[TensorType, ...], components: Components, **queue: Any) -> tuple[TensorType, ...]:
    _check_components(in_types, components, many=True)
    return ()


def _dequeue_rule(in_types: tuple[TensorType, ...], components: Components, **queue: Any) -> tuple[TensorType, ...]:
    return tuple(components)


def _batched(components: Components, n: int | None) -> tuple[TensorType, ...]:
    return tuple(TensorType(c.dtype, None if c.shape is None else (n, *c.shape)) for c in components)


def _dequeue_many_rule(in_types: tuple[TensorType, ...], components: Components, n: int,
                       **queue: Any) -> tuple[TensorType, ...]:
    if n < 0:
        raise OpTypeError(f"dequeue_many needs n >= 0, got {n}")
    return _batched(components, n)


def _dequeue_up_to_rule(in_types: tuple[TensorType, ...], components: Components, n: int,
                        **queue: Any) -> tuple[TensorType, ...]:
    if n < 0:
        raise OpTypeError(f"dequeue_up_to needs n >= 0, got {n}")
    return _batched(components, None)


# -- references ------------------------------------------------------------------------------
def _checked_element(q: HostQueue, values: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    for i, (v, c) in enumerate(zip(values, q.components)):
        if not shape_compatible(c.shape, v.shape):
            raise InvalidArgumentError(message=f"Shape mismatch in tuple component {i}. Expected {c}, "
                                               f"got {list(v.shape)}")
    return tuple(np.array(v, copy=True) for v in values)


def _enqueue(*values: np.ndarray, state: RuntimeState, **queue: Any) -> tuple[()]:
    q = _host_queue(state, **queue)
    q.enqueue(iter([_checked_element(q, values)]))
    return ()


def _enqueue_many(*values: np.ndarray, state: RuntimeState, **queue: Any) -> tuple[()]:
    q = _host_queue(state, **queue)
    sizes = {v.shape[0] for v in values}
    if len(sizes) != 1:
        raise InvalidArgumentError(message=f"{q.title}: enqueue_many components have different leading "
                                           f"dimensions {sorted(sizes)}")
    (size,) = sizes
    q.enqueue(_checked_element(q, [v[i] for v in values]) for i in range(size))
    return ()


def _dequeue(*, state: RuntimeState, **queue: Any) -> tuple[np.ndarray, ...]:
    (element,) = _host_queue(state, **queue).dequeue(1, up_to=False)
    return element


def _dequeue_many(*, n: int, state: RuntimeState, **queue: Any) -> tuple[np.ndarray, ...]:
    return _stack(_host_queue(state, **queue), n, up_to=False)


def _dequeue_up_to(*, n: int, state: RuntimeState, **queue: Any) -> tuple[np.ndarray, ...]:
    return _stack(_host_queue(state, **queue), n, up_to=True)


def _stack(q: HostQueue, n: int, up_to: bool) -> tuple[np.ndarray, ...]:
    if any(c.shape is None for c in q.components):
        raise InvalidArgumentError(message=f"{q.title}: dequeue_many and dequeue_up_to require the "
                                           "components to have specified shapes.")
    elements = q.dequeue(n, up_to)
    return tuple(_stack_component(c, [e[i] for e in elements], q.kind == "padding_fifo")
                 for i, c in enumerate(q.components))


def _stack_component(c: TensorType, parts: list[np.ndarray], pad: bool) -> np.ndarray:
    """The parts stacked; a padding queue pads each to the batch's largest shape with zeros."""
    if not parts:
        return np.zeros((0, *(d if isinstance(d, int) else 0 for d in c.shape)), dtype=c.dtype.np_dtype)
    if not pad:
        return np.stack(parts)
    shape = tuple(max(p.shape[k] for p in parts) for k in range(len(c.shape)))
    out = np.zeros((len(parts), *shape), dtype=c.dtype.np_dtype)
    for i, p in enumerate(parts):
        out[(i, *(slice(0, d) for d in p.shape))] = p
    return out


def _close(*, cancel_pending_enqueues: bool, state: RuntimeState, **queue: Any) -> tuple[()]:
    _host_queue(state, **queue).close(cancel_pending_enqueues)
    return ()


def _size(*, state: RuntimeState, **queue: Any) -> np.ndarray:
    return np.asarray(_host_queue(state, **queue).size(), dtype=np.int32)


def _is_closed(*, state: RuntimeState, **queue: Any) -> np.ndarray:
    return np.asarray(_host_queue(state, **queue).closed)


def _scalar(dtype: DType) -> Callable[..., tuple[TensorType, ...]]:
    return lambda in_types, **attrs: (TensorType(dtype, ()),)


def _close_rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    return ()


_HOST = dict(stateful=True, writes_state=True, differentiable=False)
register("queue_enqueue", _enqueue_rule, _enqueue, Fusion.STATEFUL, **_HOST)
register("queue_enqueue_many", _enqueue_many_rule, _enqueue_many, Fusion.STATEFUL, **_HOST)
register("queue_dequeue", _dequeue_rule, _dequeue, Fusion.STATEFUL, **_HOST)
register("queue_dequeue_many", _dequeue_many_rule, _dequeue_many, Fusion.STATEFUL, **_HOST)
register("queue_dequeue_up_to", _dequeue_up_to_rule, _dequeue_up_to, Fusion.STATEFUL, **_HOST)
register("queue_close", _close_rule, _close, Fusion.STATEFUL, **_HOST)
register("queue_size", _scalar(int32), _size, Fusion.STATEFUL, **_HOST)
register("queue_is_closed", _scalar(bool_), _is_closed, Fusion.STATEFUL, **_HOST)


# -- input producers: epoch counting and shuffled index ranges --------------------------------
_COUNT_LOCK = threading.Lock()


def _count_up_to(*, var: str, dtype: DType, limit: int, state: RuntimeState) -> np.ndarray:
    """TF's CountUpTo: the variable's old value, then +1; OutOfRangeError once it reaches `limit`."""
    with _COUNT_LOCK:
        old = state.read(var)
        if old >= limit:
            raise OutOfRangeError(message=f"Reached limit of {limit}")
        state.write(var, np.asarray(old + 1, dtype=dtype.np_dtype))
        return np.array(old, copy=True)


def _count_up_to_rule(in_types: tuple[TensorType, ...], var: str, dtype: DType, limit: int) -> tuple[TensorType, ...]:
    if not dtype.is_integer:
        raise OpTypeError(f"count_up_to needs an integer variable, {var!r} is {dtype.name}")
    return (TensorType(dtype, ()),)


def _random_shuffle(value: np.ndarray, *, seed: int, seed2: int, state: RuntimeState) -> np.ndarray:
    """TF's RandomShuffle: a permutation along the first axis, a new one on every run."""
    if value.ndim == 0:
        return value
    return value[state.random_generator(seed, seed2).permutation(value.shape[0])]


def _same_type(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    return (in_types[0],)


register("count_up_to", _count_up_to_rule, _count_up_to, Fusion.STATEFUL, **_HOST)
register("random_shuffle", _same_type, _random_shuffle, Fusion.RANDOM, stateful=True, differentiable=False)


# -- dataset iterators -----------------------------------------------------------------------
# A `tf.data` pipeline is Python (map functions, buffers), so the IR names it by a number;
# the Dataset objects stay alive as long as the graphs holding iterators over them.
_PIPELINES: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_KEEP_ALIVE: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()
_NUMBERS = count(1)


def register_pipeline(pipeline: Any, graph: Any) -> int:
    """A number for `pipeline` (an object with `start(values, state) -> iterator of tuples`)."""
    number = next(_NUMBERS)
    _PIPELINES[number] = pipeline
    _KEEP_ALIVE.setdefault(graph, []).append(pipeline)
    return number


class HostIterator:
    """One pass over a pipeline; `next` is serialised, since threads may share the iterator."""

    def __init__(self, elements: Iterator[tuple[np.ndarray, ...]]):
        self.elements = elements
        self.lock = threading.Lock()

    def next(self) -> tuple[np.ndarray, ...]:
        with self.lock:
            try:
                return next(self.elements)
            except StopIteration:
                raise OutOfRangeError(message="End of sequence") from None


def _start(pipeline: int, values: Sequence[np.ndarray], state: RuntimeState) -> HostIterator:
    return HostIterator(_PIPELINES[pipeline].start(list(values), state))


def _iterator_init(*values: np.ndarray, resource: str, pipeline: int, state: RuntimeState) -> tuple[()]:
    state.resources[resource] = _start(pipeline, values, state)  # one assignment: atomic for readers
    return ()


def _get_next(*, resource: str, pipeline: int, components: Components, one_shot: bool,
              state: RuntimeState) -> tuple[np.ndarray, ...]:
    if one_shot:
        iterator = state.resource(resource, lambda: _start(pipeline, (), state))
    else:
        iterator = state.resources.get(resource)
        if iterator is None:
            raise FailedPreconditionError(message="GetNext() failed because the iterator has not been "
                                                  "initialized. Ensure that you have run the initializer "
                                                  "operation for this iterator before getting the next element.")
    element = iterator.next()
    for i, (v, c) in enumerate(zip(element, components)):
        if v.dtype != c.dtype.np_dtype or not shape_compatible(c.shape, v.shape):
            raise InvalidArgumentError(message=f"dataset element component {i} is {v.dtype}{list(v.shape)}, "
                                               f"the iterator's type says {c}")
    return tuple(element)


def _get_next_rule(in_types: tuple[TensorType, ...], components: Components, **attrs: Any) -> tuple[TensorType, ...]:
    return tuple(components)


register("iterator_init", _close_rule, _iterator_init, Fusion.STATEFUL, **_HOST)
register("iterator_get_next", _get_next_rule, _get_next, Fusion.STATEFUL, **_HOST)
