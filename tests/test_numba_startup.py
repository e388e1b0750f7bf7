"""numba's start-up trimmed for tfjit (backends/numba_startup.py): a fresh process compiles and
loads kernels without importing scipy.linalg, numpy.ma or numba.cpython.hashing, and what it
does instead gives numba's own values."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_CHILD = r"""
import json, sys
import numpy as np
from tfjit.backends.numba_cpu.compile import compile_kernel

source = "def kernel(a, out):\n    for i in range(a.shape[0]):\n        out[i] = math.exp(_f32(a[i])) + _f32(1)\n"
kernel = compile_kernel(source, "kernel")
a = np.linspace(-3, 3, 7, dtype=np.float32)
out = np.empty_like(a)
kernel(a, out)
loaded = {m: m in sys.modules for m in ("scipy.linalg", "numpy.ma", "numba.cpython.hashing")}
from tfjit.backends import numba_startup
mine = [v.value for v in numba_startup._secret_values]
import numba.cpython.hashing as hashing
numba_values = [hashing._hashsecret[k].value.value for k in ("djbx33a_suffix", "siphash_k0", "siphash_k1")]
print(json.dumps({"out": out.tolist(), "loaded": loaded, "mine": mine, "numba": numba_values}))
"""


def _run(tmp_path, env_extra):
    env = dict(os.environ, TFJIT_CACHE_DIR=str(tmp_path / "tfjit"), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               **env_extra)
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_compiles_then_loads_kernels_without_numbas_unused_imports(tmp_path):
    want = (np.exp(np.linspace(-3, 3, 7, dtype=np.float32)) + np.float32(1)).tolist()
    cold = _run(tmp_path, {})
    warm = _run(tmp_path, {})  # loads the kernel from the cache: the hash secret is defined by us
    for result in (cold, warm):
        np.testing.assert_allclose(result["out"], want, rtol=1e-6)
        assert not result["loaded"]["scipy.linalg"] and not result["loaded"]["numpy.ma"]
    assert not warm["loaded"]["numba.cpython.hashing"]
    assert warm["mine"] == warm["numba"] and len(warm["mine"]) == 3


@pytest.mark.parametrize("array", [np.zeros((2, 3), np.float32), np.zeros((4, 2), np.int64).T,
                                   np.zeros(5, np.bool_)[::2], np.zeros((), np.float64),
                                   np.zeros((2, 2), np.complex64)], ids=["C", "F", "A", "0-d", "complex"])
def test_arrays_are_typed_as_numbas_rule_types_them(array):
    from numba.core.typing import typeof

    from tfjit.backends import numba_startup

    readonly = array.copy()
    readonly.setflags(write=False)
    for a in (array, readonly):
        assert numba_startup.array_type(a) == typeof._typeof_ndarray(a, None)


def test_arrays_numba_cannot_type_raise_numbas_error():
    from numba.core import errors
    from numba.core.typing import typeof

    from tfjit.backends import numba_startup

    raw = np.zeros(2, dtype="V4")  # raw bytes: no numba type
    with pytest.raises(errors.NumbaValueError) as ours:
        numba_startup.array_type(raw)
    with pytest.raises(errors.NumbaValueError) as numbas:
        typeof._typeof_ndarray(raw, None)
    assert str(ours.value) == str(numbas.value)
