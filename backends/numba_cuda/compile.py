"""Generated CUDA source: the device spelling of the shared element expressions, and
compiling kernels through the on-disk kernel cache.

Kernels are written with the CPU backend's `Lines`/`ElementWriter`; `DeviceLines` rewrites
each `np.f(` call of the shared expressions to the device primitive `_np_f(` of
`device_lib`. A source that names a helper `device_lib` lacks (one the CPU library gained
later) is refused, and its node runs on the host, rather than failing to compile.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any

from numba import cuda

from ..kernel_cache import KernelKey, default_cache, files_digest
from ..numba_cpu.codegen import Lines
from . import device_lib

_NP_CALL = re.compile(r"\bnp\.(\w+)\(")
_HELPER = re.compile(r"(?<![\w.])(_\w+)\(")
_HERE = os.path.dirname(os.path.abspath(__file__))
_DEPS = files_digest(os.path.join(_HERE, "device_lib.py"), os.path.join(_HERE, "compile.py"))
_HEADER = (
    "import math\n"
    "import numpy as np\n"
    "from numba import cuda\n"
    f"from tfjit.backends.numba_cuda.device_lib import {', '.join(sorted(device_lib.NAMES))}\n\n\n"
    "@cuda.jit(cache=True)\n"
)


class DeviceLines(Lines):
    """Lines whose NumPy calls become device primitives."""

    def add(self, line: str, comment: str | None = None) -> None:
        line = _NP_CALL.sub(r"_np_\1(", line)
        missing = {name for name in _HELPER.findall(line) if name not in device_lib.NAMES}
        if missing:
            raise NotImplementedError(f"no device version of {', '.join(sorted(missing))}")
        super().add(line, comment)


@functools.lru_cache(maxsize=None)
def device_target() -> str:
    """What the kernels are compiled for (the GPU's compute capability): part of the cache key."""
    if device_lib.SIMULATED:
        return "cuda-simulator"
    if cuda.is_available():
        major, minor = cuda.get_current_device().compute_capability
        return f"sm_{major}{minor}"
    return "cuda-no-device"


@functools.lru_cache(maxsize=None)
def _numba_cuda_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba-cuda")
    except PackageNotFoundError:  # numba's own (older) CUDA target
        return "none"


def compile_kernel(source: str, name: str) -> Any:
    """The `@cuda.jit` dispatcher of `kernel` in `source` (a definition without imports)."""
    key = KernelKey(name=name, ir=source, backend="numba_cuda", deps=_DEPS, target=device_target(),
                    options={"simulator": device_lib.SIMULATED, "numba_cuda": _numba_cuda_version()})
    return default_cache().load(key, _HEADER + source, "kernel")


def python_function(kernel: Any) -> Any:
    """The plain Python function behind a compiled kernel (for `cuda.compile_ptx`)."""
    return getattr(kernel, "py_func", None) or kernel.fn


def to_ptx(kernel: Any, dtypes: tuple[Any, ...], cc: tuple[int, int] = (9, 0)) -> str:
    """PTX of a compiled kernel for 1-D contiguous arguments of `dtypes` (no GPU needed)."""
    from numba import from_dtype

    ptx, _ = cuda.compile_ptx(python_function(kernel), tuple(from_dtype(d)[::1] for d in dtypes), cc=cc)
    return ptx
