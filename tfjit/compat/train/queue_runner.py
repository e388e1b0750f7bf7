"""Queue-based input pipelines of TF 1.x: `QueueRunner`, `Coordinator`, the input producers
and `batch` / `shuffle_batch`.

A QueueRunner's threads run enqueue ops in a loop through one Session (whose `run` is
thread-safe); when an enqueue fails because its input queue is closed and drained
(OutOfRangeError) the last of its threads closes the runner's queue, so the end of the
data travels down the pipeline to the consumer as OutOfRangeError.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ...errors import CancelledError, OutOfRangeError
from ...ir.types import int32, int64
from ...trace.graph import get_default_graph
from ...trace.tensor import Operation, Tensor, convert_to_tensor
from ..array_ops import identity, range as range_, shape
from ..control_flow import control_dependencies
from ..graph_keys import GraphKeys, add_to_collection, get_collection
from ..layout_ops import gather
from ..math_ops import emit1
from ..queues import FIFOQueue, PaddingFIFOQueue, QueueBase, RandomShuffleQueue
from ..random_ops import get_seed
from ..session import get_default_session

log = logging.getLogger("tfjit")


# -- the coordinator ------------------------------------------------------------------------
class Coordinator:
    """Lets threads stop together: any thread may request a stop (reporting an exception),
    every thread polls `should_stop()`, and `join()` waits for them and re-raises the error."""

    def __init__(self, clean_stop_exception_types: Sequence[type] | None = None):
        self._clean = tuple(clean_stop_exception_types) if clean_stop_exception_types is not None else (OutOfRangeError,)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._exc_info: tuple | None = None
        self._threads: set[threading.Thread] = set()
        self._joined = False

    def request_stop(self, ex: Any = None) -> None:
        """Ask every thread to stop; `ex` (an exception or exc_info) is reported by `join()`,
        unless it is a clean stop (OutOfRangeError: the input ran out)."""
        with self._lock:
            if ex is not None and self._exc_info is None and not self._stop_event.is_set():
                info = ex if isinstance(ex, tuple) else (type(ex), ex, ex.__traceback__)
                if not issubclass(info[0], self._clean):
                    self._exc_info = info
            self._stop_event.set()

    def clear_stop(self) -> None:
        with self._lock:
            self._joined = False
            self._exc_info = None
            self._stop_event.clear()

    def should_stop(self) -> bool:
        return self._stop_event.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        return self._stop_event.wait(timeout)

    @contextmanager
    def stop_on_exception(self) -> Iterator[None]:
        """`with coord.stop_on_exception():` turns an exception of the block into a stop request."""
        try:
            yield
        except Exception:
            self.request_stop(sys.exc_info())

    def register_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.add(thread)

    def join(self, threads: Sequence[threading.Thread] | None = None, stop_grace_period_secs: float = 120,
             ignore_live_threads: bool = False) -> None:
        """Wait until a stop is requested and the threads end (at most the grace period after
        the request); then raise the reported exception, or complain about live threads."""
        with self._lock:
            threads = list(self._threads | set(threads or []))
        while any(t.is_alive() for t in threads) and not self.wait_for_stop(0.05):
            pass
        deadline = time.monotonic() + stop_grace_period_secs
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._joined = True
            self._threads.clear()
            if self._exc_info is not None:
                raise self._exc_info[1].with_traceback(self._exc_info[2])
        alive = [t.name for t in threads if t.is_alive()]
        if alive and not ignore_live_threads:
            raise RuntimeError(f"Coordinator stopped with threads still running: {' '.join(alive)}")

    @property
    def joined(self) -> bool:
        return self._joined

    def raise_requested_exception(self) -> None:
        with self._lock:
            if self._exc_info is not None:
                raise self._exc_info[1].with_traceback(self._exc_info[2])


# -- queue runners ----------------------------------------------------------------------------
class QueueRunner:
    """Runs `enqueue_ops` (one thread each) until the input ends or the coordinator stops."""

    def __init__(self, queue: QueueBase | None = None, enqueue_ops: Sequence[Operation] | None = None,
                 close_op: Operation | None = None, cancel_op: Operation | None = None,
                 queue_closed_exception_types: Sequence[type] | None = None):
        if queue is None or not enqueue_ops:
            raise ValueError("QueueRunner needs a queue and at least one enqueue op")
        self._queue = queue
        self._enqueue_ops = list(enqueue_ops)
        self._close_op = close_op if close_op is not None else queue.close()
        self._cancel_op = cancel_op if cancel_op is not None else queue.close(cancel_pending_enqueues=True)
        self._closed_types = tuple(queue_closed_exception_types or (OutOfRangeError, CancelledError))
        self._lock = threading.Lock()
        self._runs: dict[Any, int] = {}
        self._exceptions_raised: list[BaseException] = []

    @property
    def queue(self) -> QueueBase:
        return self._queue

    @property
    def enqueue_ops(self) -> list[Operation]:
        return list(self._enqueue_ops)

    @property
    def close_op(self) -> Operation:
        return self._close_op

    @property
    def cancel_op(self) -> Operation:
        return self._cancel_op

    @property
    def queue_closed_exception_types(self) -> tuple[type, ...]:
        return self._closed_types

    @property
    def exceptions_raised(self) -> list[BaseException]:
        return list(self._exceptions_raised)

    @property
    def name(self) -> str:
        return self._queue.name

    def create_threads(self, sess: Any, coord: Coordinator | None = None, daemon: bool = False,
                       start: bool = False) -> list[threading.Thread]:
        """One thread per enqueue op, plus one that cancels pending enqueues when `coord` stops."""
        with self._lock:
            if self._runs.get(sess, 0) > 0:
                return []  # already running in this session
            self._runs[sess] = len(self._enqueue_ops)
            self._exceptions_raised = []
        threads = [threading.Thread(target=self._run, args=(sess, op, coord), daemon=daemon,
                                    name=f"QueueRunnerThread-{self.name}-{op.name}") for op in self._enqueue_ops]
        if coord is not None:
            threads.append(threading.Thread(target=self._close_on_stop, args=(sess, coord), daemon=True,
                                            name=f"QueueRunnerThread-{self.name}-close_on_stop"))
        for t in threads:
            if coord is not None:
                coord.register_thread(t)
            if start:
                t.start()
        return threads

    def _run(self, sess: Any, enqueue_op: Operation, coord: Coordinator | None) -> None:
        decremented = False
        try:
            while coord is None or not coord.should_stop():
                try:
                    sess.run(enqueue_op)
                except self._closed_types:
                    decremented = True
                    self._last_one_closes(sess)
                    return
        except Exception as e:
            if coord is None:
                with self._lock:
                    self._exceptions_raised.append(e)
                raise
            coord.request_stop(e)
        finally:
            if not decremented:
                with self._lock:
                    self._runs[sess] -= 1

    def _last_one_closes(self, sess: Any) -> None:
        with self._lock:
            self._runs[sess] -= 1
            last = self._runs[sess] == 0
        if last:
            try:
                sess.run(self._close_op)
            except Exception as e:  # the session may be closing: nothing left to tell
                log.debug("QueueRunner %s: ignored %s while closing its queue", self.name, e)

    def _close_on_stop(self, sess: Any, coord: Coordinator) -> None:
        coord.wait_for_stop()
        try:
            sess.run(self._cancel_op)
        except Exception as e:
            log.debug("QueueRunner %s: ignored %s while cancelling its queue", self.name, e)


def add_queue_runner(qr: QueueRunner, collection: str = GraphKeys.QUEUE_RUNNERS) -> None:
    add_to_collection(collection, qr)


def start_queue_runners(sess: Any = None, coord: Coordinator | None = None, daemon: bool = True,
                        start: bool = True, collection: str = GraphKeys.QUEUE_RUNNERS) -> list[threading.Thread]:
    """Start the threads of every queue runner in the graph's collection; returns them."""
    sess = sess if sess is not None else get_default_session()
    if sess is None:
        raise ValueError("Cannot start queue runners: No default session is registered. Use `with "
                         "sess.as_default()` or pass an explicit session to tf.start_queue_runners(sess=sess)")
    threads: list[threading.Thread] = []
    for qr in get_collection(collection):
        threads.extend(qr.create_threads(sess, coord=coord, daemon=daemon, start=start))
    return threads


# -- input producers ---------------------------------------------------------------------------
def limit_epochs(tensor: Any, num_epochs: int | None = None, name: str | None = None) -> Tensor:
    """`tensor`, but its `num_epochs + 1`-th evaluation raises OutOfRangeError (the counter is
    a local variable: run `tf.local_variables_initializer()`)."""
    tensor = convert_to_tensor(tensor)
    if num_epochs is None:
        return tensor
    if num_epochs <= 0:
        raise ValueError(f"num_epochs must be > 0 not {num_epochs}.")
    from ..variables import Variable

    graph = get_default_graph()
    with graph.name_scope(name or "limit_epochs"):
        epochs = Variable(np.zeros((), np.int64), trainable=False, name="epochs",
                          collections=[GraphKeys.LOCAL_VARIABLES])
        attrs = {"var": epochs._attrs["var"], "dtype": int64, "limit": int(num_epochs)}
        counter = emit1("count_up_to", [], attrs, name="CountUpTo")
        with control_dependencies([counter]):
            return identity(tensor)


def input_producer(input_tensor: Any, element_shape: Any = None, num_epochs: int | None = None,
                   shuffle: bool = True, seed: int | None = None, capacity: int = 32,
                   shared_name: str | None = None, summary_name: str | None = None,
                   name: str | None = None, cancel_op: Operation | None = None) -> FIFOQueue:
    """A queue filled, epoch after epoch, with the rows of `input_tensor` (shuffled per epoch)."""
    graph = get_default_graph()
    with graph.name_scope(name or "input_producer"):
        input_tensor = convert_to_tensor(input_tensor)
        if shuffle:
            s1, s2 = get_seed(seed)
            input_tensor = emit1("random_shuffle", [input_tensor], {"seed": s1, "seed2": s2}, name="RandomShuffle")
        input_tensor = limit_epochs(input_tensor, num_epochs)
        shape_ = element_shape if element_shape is not None else _row_shape(input_tensor)
        q = FIFOQueue(capacity, [input_tensor.dtype], shapes=[shape_], name="fifo_queue")
        enq = q.enqueue_many([input_tensor])
        add_queue_runner(QueueRunner(q, [enq], cancel_op=cancel_op))
        return q


def _row_shape(t: Tensor) -> Any:
    full = t.value.type.shape
    if full is None or len(full) == 0:
        raise ValueError(f"input_producer needs a tensor of known rank >= 1, got {t}")
    return list(full[1:])


def range_input_producer(limit: Any, num_epochs: int | None = None, shuffle: bool = True,
                         seed: int | None = None, capacity: int = 32, shared_name: str | None = None,
                         name: str | None = None) -> FIFOQueue:
    """A queue of the integers 0 .. limit-1, epoch after epoch."""
    graph = get_default_graph()
    with graph.name_scope(name or "input_producer") as scope:
        rng = range_(0, limit, dtype=int32, name="range")
        return input_producer(rng, [], num_epochs, shuffle, seed, capacity, shared_name, name=scope)


def slice_input_producer(tensor_list: Sequence[Any], num_epochs: int | None = None, shuffle: bool = True,
                         seed: int | None = None, capacity: int = 32, shared_name: str | None = None,
                         name: str | None = None) -> list[Tensor]:
    """One row of every tensor in `tensor_list` per run (rows of one index together)."""
    graph = get_default_graph()
    with graph.name_scope(name or "input_producer") as scope:
        tensors = [convert_to_tensor(t) for t in tensor_list]
        if not tensors:
            raise ValueError("Expected at least one tensor in slice_input_producer().")
        size = _static_rows(tensors)
        limit = size if size is not None else shape(tensors[0], out_type=int32)[0]
        queue = range_input_producer(limit, num_epochs, shuffle, seed, capacity, shared_name, name=scope)
        index = queue.dequeue()
        return [gather(t, index) for t in tensors]


def _static_rows(tensors: list[Tensor]) -> int | None:
    sizes = {t.value.type.shape[0] for t in tensors if t.value.type.shape and isinstance(t.value.type.shape[0], int)}
    if len(sizes) > 1:
        raise ValueError(f"slice_input_producer needs tensors with one first dimension, got {sorted(sizes)}")
    return sizes.pop() if sizes else None


# -- batching -----------------------------------------------------------------------------------
def _as_list(tensors: Any) -> tuple[list[Tensor], Any]:
    if isinstance(tensors, dict):
        keys = sorted(tensors)
        return [convert_to_tensor(tensors[k]) for k in keys], keys
    if isinstance(tensors, (list, tuple)):
        return [convert_to_tensor(t) for t in tensors], None
    return [convert_to_tensor(tensors)], None


def _restore(original: Any, keys: Any, dequeued: Any) -> Any:
    """TF's rule: a dict gives a dict; a list of one tensor gives that tensor."""
    outs = dequeued if isinstance(dequeued, list) else [dequeued]
    if keys is not None:
        return dict(zip(keys, outs))
    return outs[0] if len(outs) == 1 else outs


def _element_shapes(tensors: list[Tensor], shapes: Any, enqueue_many: bool) -> list[Any]:
    if shapes is not None:
        return list(shapes)
    out = []
    for t in tensors:
        s = t.value.type.shape
        if s is None or (enqueue_many and len(s) == 0):
            raise ValueError(f"batching needs tensors of known rank, got {t}; pass shapes=")
        out.append(list(s[1:] if enqueue_many else s))
    return out


def _batch(queue_cls: type, tensors: Any, batch_size: int, num_threads: int, enqueue_many: bool,
           shapes: Any, allow_smaller_final_batch: bool, name: str, **queue_kw: Any) -> Any:
    tensor_list, keys = _as_list(tensors)
    graph = get_default_graph()
    with graph.name_scope(name):
        element_shapes = _element_shapes(tensor_list, shapes, enqueue_many)
        if queue_cls is not PaddingFIFOQueue and any(d is None for s in element_shapes for d in (s or [])):
            raise ValueError(f"All shapes must be fully defined: {element_shapes} (use dynamic_pad=True "
                             "to pad unknown dimensions)")
        q = queue_cls(dtypes=[t.dtype for t in tensor_list], shapes=element_shapes, **queue_kw)
        enqueue = q.enqueue_many if enqueue_many else q.enqueue
        enq = enqueue(tensor_list)
        add_queue_runner(QueueRunner(q, [enq] * num_threads))
        take = q.dequeue_up_to if allow_smaller_final_batch else q.dequeue_many
        return _restore(tensors, keys, take(batch_size, name=name))


def batch(tensors: Any, batch_size: int, num_threads: int = 1, capacity: int = 32, enqueue_many: bool = False,
          shapes: Any = None, dynamic_pad: bool = False, allow_smaller_final_batch: bool = False,
          shared_name: str | None = None, name: str | None = None) -> Any:
    """Batches of `batch_size` elements, in order, filled by `num_threads` queue-runner threads."""
    queue_cls = PaddingFIFOQueue if dynamic_pad else FIFOQueue
    return _batch(queue_cls, tensors, batch_size, num_threads, enqueue_many, shapes, allow_smaller_final_batch,
                  name or "batch", capacity=capacity)


def shuffle_batch(tensors: Any, batch_size: int, capacity: int, min_after_dequeue: int, num_threads: int = 1,
                  seed: int | None = None, enqueue_many: bool = False, shapes: Any = None,
                  allow_smaller_final_batch: bool = False, shared_name: str | None = None,
                  name: str | None = None) -> Any:
    """Batches drawn at random from a RandomShuffleQueue holding at least `min_after_dequeue`."""
    return _batch(RandomShuffleQueue, tensors, batch_size, num_threads, enqueue_many, shapes,
                  allow_smaller_final_batch, name or "shuffle_batch", capacity=capacity,
                  min_after_dequeue=min_after_dequeue, seed=seed)
