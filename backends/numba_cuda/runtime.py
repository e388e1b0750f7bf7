"""Values of a running plan on the host, the device or both, and the copies between them.

A `Buffer` holds one value: its NumPy array, its device array (always flat and C-ordered:
every generated kernel indexes its arguments as 1-D arrays) or both. A value is copied to
the other side at most once (the copy is kept), and every copy is counted, so a test or a
user can see what crossed (`transfer_stats()`). A copy that placement did not ask for (no
feed, fetch or `device_copy`) is *implicit*: it is counted apart, and inside
`no_implicit_transfers()` it is an error.

While a plan runs, `launching(arena, stream)` makes its device allocations come from the
plan's arena (the i-th allocation of a run reuses the i-th array of the previous run) and
its kernels and copies go to its stream.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np
from numba import cuda

from tfjit.errors import FailedPreconditionError

_lock = threading.Lock()
_stats = {"host_to_device": 0, "device_to_host": 0, "implicit": 0, "copies": 0}
_local = threading.local()


def transfer_stats() -> dict[str, int]:
    """Bytes copied host→device and device→host by this process (all plans together), the
    bytes of those copies that were implicit, and the number of copies."""
    with _lock:
        return dict(_stats)


def reset_transfer_stats() -> None:
    with _lock:
        for k in _stats:
            _stats[k] = 0


def _count(direction: str, nbytes: int) -> None:
    with _lock:
        _stats[direction] += nbytes
        _stats["copies"] += 1


@contextlib.contextmanager
def no_implicit_transfers() -> Iterator[None]:
    """Inside this block (this thread), a host-device copy placement did not ask for raises."""
    previous = getattr(_local, "strict", False)
    _local.strict = True
    try:
        yield
    finally:
        _local.strict = previous


def implicit_transfer(what: str, nbytes: int) -> None:
    """Record an implicit copy of `what` (or raise under `no_implicit_transfers()`)."""
    if getattr(_local, "strict", False):
        raise FailedPreconditionError(message=(
            f"implicit host-device copy of {what} ({nbytes} bytes) inside tfjit.debug.no_implicit_transfers(): "
            "place the consumer on the value's device, or make the copy explicit with tf.device scopes"))
    with _lock:
        _stats["implicit"] += nbytes


class Arena:
    """A plan's device arrays, handed out again in the same order on every run."""

    def __init__(self) -> None:
        self.arrays: list[Any] = []
        self.next = 0

    def allocate(self, size: int, dtype: np.dtype) -> Any:
        i, self.next = self.next, self.next + 1
        if i < len(self.arrays) and self.arrays[i].size == size and self.arrays[i].dtype == dtype:
            return self.arrays[i]
        array = cuda.device_array(size, dtype, stream=current_stream())
        if i < len(self.arrays):
            self.arrays[i] = array
        else:
            self.arrays.append(array)
        return array


@contextlib.contextmanager
def launching(arena: Arena, stream: Any) -> Iterator[None]:
    """Run a plan: allocations from `arena` (restarted), launches and copies on `stream`."""
    previous = getattr(_local, "launch", None)
    arena.next = 0
    _local.launch = (arena, stream)
    try:
        yield
    finally:
        _local.launch = previous


def current_stream() -> Any:
    """The running plan's stream (0, the default stream, outside a plan)."""
    launch = getattr(_local, "launch", None)
    return launch[1] if launch else 0


def device_array(size: int, dtype: np.dtype) -> Any:
    launch = getattr(_local, "launch", None)
    if launch is None:
        return cuda.device_array(size, dtype)
    return launch[0].allocate(size, np.dtype(dtype))


class Buffer:
    """One value of a plan; `host` and `device` are filled in as they are needed."""

    __slots__ = ("shape", "dtype", "host", "device")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, host: np.ndarray | None = None,
                 device: Any = None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.host = host
        self.device = device

    @classmethod
    def on_host(cls, array: Any) -> Buffer:
        a = np.asarray(array)
        return cls(a.shape, a.dtype, host=a)

    @classmethod
    def empty_on_device(cls, shape: tuple[int, ...], dtype: np.dtype) -> Buffer:
        """A fresh result (from the running plan's arena)."""
        size = int(np.prod(shape, dtype=np.int64))
        return cls(shape, dtype, device=device_array(size, np.dtype(dtype)))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def to_device(self) -> Any:
        """The flat device array (copied from the host the first time)."""
        if self.device is None:
            flat = np.ascontiguousarray(self.host).reshape(-1)
            self.device = cuda.to_device(flat, stream=current_stream())
            _count("host_to_device", flat.nbytes)
        return self.device

    def to_host(self, sync: bool = True) -> np.ndarray:
        """The NumPy array (copied from the device the first time); `sync=False` leaves the
        copy queued on the stream (the caller synchronises once for several)."""
        if self.host is None:
            stream = current_stream()
            self.host = self.device.copy_to_host(stream=stream).reshape(self.shape)
            if sync and stream:
                stream.synchronize()
            _count("device_to_host", self.host.nbytes)
        return self.host


class DeviceVariable:
    """A variable's value on the device: the current array and a spare the next write fills
    (so a write never changes an array a running plan still reads)."""

    def __init__(self, current: Buffer):
        self.current = current
        self.spare: Any = None

    def to_host(self) -> np.ndarray:
        return self.current.to_host()

    def target(self, lent: set[int]) -> Any:
        """A device array for the next value: the spare unless this run read it."""
        cur = self.current
        spare = self.spare
        if spare is None or id(spare) in lent or spare.size != cur.size or spare.dtype != cur.dtype:
            spare = cuda.device_array(cur.size, cur.dtype, stream=current_stream())
        return spare

    def replace(self, array: Any) -> Buffer:
        """Make `array` (from `target`) the current value; the old one becomes the spare."""
        self.spare = self.current.device
        self.current = Buffer(self.current.shape, self.current.dtype, device=array)
        return self.current
