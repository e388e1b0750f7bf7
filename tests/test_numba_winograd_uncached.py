"""Where numba finds no writable cache directory (tfjit installed read-only, no writable home
and no NUMBA_CACHE_DIR), the Winograd tile transforms compile uncached and the Winograd
kernels still give the reference backend's results. Run in a child process: the transforms
are registered once per process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys
import numpy as np
from numba.core import caching
from tfjit.backends.numba_cpu import conv, winograd_tiles

locators = caching.CacheImpl._locator_classes
caching.CacheImpl._locator_classes = []  # numba finds no cache directory anywhere
winograd_tiles.register(np.float32, "input", "output", "output_gradient")
assert all(isinstance(callback._cache, caching.NullCache) for callback in winograd_tiles._REGISTERED.values())
caching.CacheImpl._locator_classes = locators  # the kernels themselves live in tfjit's cache

sys.path.insert(0, sys.argv[1])
conv.WINOGRAD_MIN_CHANNELS = 1
from test_numba_conv import assert_same, conv_and_grads, window_kernels

got, want, exe = conv_and_grads((2, 6, 5, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1), "NHWC", np.float32)
assert_same(got, want, np.float32)
kernels = window_kernels(exe)
assert kernels["conv2d"].plan.winograd and kernels["conv2d_backprop_filter"].winograd
print("ok", sorted(winograd_tiles._REGISTERED))
"""


def test_winograd_without_a_writable_numba_cache(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent)], capture_output=True,
                          text=True, env={**os.environ, "TFJIT_CACHE_DIR": str(tmp_path / "cache"),
                                          "TFJIT_BACKEND": "numba"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout
    assert "('input', 'f')" in proc.stdout and "('output', 'f')" in proc.stdout
