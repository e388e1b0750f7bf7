"""Compiling generated kernel source with numba (the on-disk kernel cache plugs in here)."""
from __future__ import annotations

import linecache
import hashlib
from typing import Callable

import numpy as np
from numba import njit

from . import scalar_lib

# Never full fastmath: NaN and inf must behave as in NumPy/TF.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def compile_kernel(source: str, entry: str) -> Callable[..., None]:
    """exec the source (registered with linecache so tracebacks show it) and njit `entry`."""
    filename = f"<tfjit-kernel-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"np": np, **scalar_lib.NAMES}
    exec(compile(source, filename, "exec"), namespace)
    return njit(error_model="numpy", fastmath=FASTMATH, nogil=True)(namespace[entry])
