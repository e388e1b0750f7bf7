"""Compiling generated kernel source through the on-disk kernel cache.

The generated function becomes a standalone module (its imports, then the function under
`@njit(cache=True, ...)`), written to the cache by content hash and imported from there, so
a second process loads the compiled machine code instead of compiling again.

The cached module holds the kernel's code without its comments (the node name and the user's
`# file:line` notes, which `LoopKernel.source()` & co. still show): kernels that differ only
in those, such as the same update applied to six weights, share one entry and one compile.
"""
from __future__ import annotations

import os
from typing import Callable

from ..kernel_cache import KernelKey, default_cache, files_digest
from . import scalar_lib
from .codegen import strip_comments

# Never full fastmath: NaN, inf and signed zeros must behave as in NumPy/TF. 'reassoc' lets
# sums vectorise and 'contract' forms FMAs; 'afn'/'arcp' turned 1/sqrt(inf) into NaN (measured)
# and 'nsz' loses rsqrt(-0) = -inf, so they stay off.
FASTMATH = {"contract", "reassoc"}
_HERE = os.path.dirname(os.path.abspath(__file__))
_DEPS = files_digest(*(os.path.join(_HERE, f) for f in sorted(os.listdir(_HERE))
                       if f in ("scalar_lib.py", "mathlib.py", "gemm.py", "im2col.py", "winograd_tiles.py",
                                "microgemm.py", "atomics.py")))
_IMPORTS = (
    "import math\n"
    "import numpy as np\n"
    "from numba import njit, prange\n"
    f"from tfjit.backends.numba_cpu.scalar_lib import {', '.join(sorted(scalar_lib.NAMES))}\n\n\n"
)


def compile_kernel(source: str, entry: str, name: str = "kernel", parallel: bool = False,
                   prelude: str = "", scalar: bool = False) -> Callable[..., None]:
    """The numba dispatcher of `entry` in `source` (a function definition without imports);
    `prelude` holds the extra imports it needs (of modules in the key's deps).

    `no_cfunc_wrapper`: kernels are called from Python and from other kernels, never passed
    as first-class functions, so numba need not build that wrapper (8% of the compile time of
    the MLP step's kernels, measured). `scalar`: the source computes element by element, with
    no whole-array expressions, so numba's rewrites (which fuse array expressions into loops)
    are skipped: they took 22 of the 420 ms that compiling the MLP step's four kernels took,
    for the same machine code (their run times measured alike)."""
    decorator = (f"@njit(cache=True, error_model='numpy', fastmath=set({sorted(FASTMATH)!r}), nogil=True, "
                 "no_cfunc_wrapper=True"
                 f"{', no_rewrites=True' if scalar else ''}{', parallel=True' if parallel else ''})\n")
    code = strip_comments(source)
    module = _IMPORTS + prelude + decorator + code
    options = {"fastmath": sorted(FASTMATH), "parallel": parallel, "rewrites": not scalar}
    key = KernelKey(name=name, ir=prelude + code, options=options, deps=_DEPS)
    return default_cache().load(key, module, entry)
