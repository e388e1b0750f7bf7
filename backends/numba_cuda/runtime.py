"""Values of a running plan on the host, the device or both, and the copies between them.

A `Buffer` holds one value: its NumPy array, its device array (always flat and C-ordered:
every generated kernel indexes its arguments as 1-D arrays) or both. A value is copied to
the other side at most once (the copy is kept), and every copy is counted, so a test or a
user can see what crossed (`transfer_stats()`).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numba import cuda

_lock = threading.Lock()
_stats = {"host_to_device": 0, "device_to_host": 0}


def transfer_stats() -> dict[str, int]:
    """Bytes copied host→device and device→host by this process (all plans together)."""
    with _lock:
        return dict(_stats)


def reset_transfer_stats() -> None:
    with _lock:
        for k in _stats:
            _stats[k] = 0


def _count(direction: str, nbytes: int) -> None:
    with _lock:
        _stats[direction] += nbytes


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
        size = int(np.prod(shape, dtype=np.int64))
        return cls(shape, dtype, device=cuda.device_array(size, np.dtype(dtype)))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_device(self) -> Any:
        """The flat device array (copied from the host the first time)."""
        if self.device is None:
            flat = np.ascontiguousarray(self.host).reshape(-1)
            self.device = cuda.to_device(flat)
            _count("host_to_device", flat.nbytes)
        return self.device

    def to_host(self) -> np.ndarray:
        """The NumPy array (copied from the device the first time)."""
        if self.host is None:
            self.host = self.device.copy_to_host().reshape(self.shape)
            _count("device_to_host", self.host.nbytes)
        return self.host
