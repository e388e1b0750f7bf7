"""A kernel call's scratch arrays, carved from one recycled buffer.

The convolution kernels' per-call scratch (Winograd's transformed tiles and products, im2col's
columns, a filter gradient's per-thread sums) is a few arrays of 0.1-1 MiB each: below the
pool's threshold (buffers.MIN_BYTES), so each came from malloc, which hands blocks this size
back to the OS on free, and every call faulted their pages in again: 0.3-0.6 ms of a 2.2-4.6 ms
Winograd call on the CNN's layers (one thread, measured). Taking them together from the pool,
at least MIN_BYTES, makes them one buffer that is reused while nothing else holds it.
"""
from __future__ import annotations

import math

import numpy as np

from . import buffers


def scratch(dtype: np.dtype, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """C-contiguous arrays of `shapes` (contents undefined) sharing one pooled buffer."""
    dtype = np.dtype(dtype)
    step = buffers.ALIGNMENT // dtype.itemsize  # each array starts on a cache line
    sizes = [math.prod(shape) for shape in shapes]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + -(-size // step) * step)
    flat = buffers.POOL.empty((max(starts[-1], -(-buffers.MIN_BYTES // dtype.itemsize)),), dtype)  # aligned
    return [flat[start:start + size].reshape(shape)
            for start, size, shape in zip(starts, sizes, shapes)]
