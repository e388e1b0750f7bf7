"""numba's start-up trimmed for tfjit (backends/numba_startup.py): a fresh process compiles and
loads kernels without importing scipy.linalg, numpy.ma or numba.cpython.hashing, and what it
does instead gives numba's own values; a kernel's compile loads only the registries kernels use
and none of numba's extensions, and the user's own numba code still compiles with all of numba's."""
from __future__ import annotations

import cmath
import gc
import heapq
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
from numba.core import entrypoints
extensions = [entrypoints._already_initialized]
from tfjit.backends import numba_startup
mine = [v.value for v in numba_startup._secret_values]
import numba.cpython.hashing as hashing
numba_values = [hashing._hashsecret[k].value.value for k in ("djbx33a_suffix", "siphash_k0", "siphash_k1")]
import numba
extensions.append(numba.njit(lambda x: x + 1)(1) == 2 and entrypoints._already_initialized)
print(json.dumps({"out": out.tolist(), "loaded": loaded, "mine": mine, "numba": numba_values,
                  "extensions": extensions}))
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
    # kernels compile and load without numba's extensions; the user's own function loads them
    assert cold["extensions"] == warm["extensions"] == [False, True]


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



_KERNEL_AND_USER_CODE = r"""
import cmath, heapq, json, sys
import numpy as np
from numba import njit
from tfjit.backends.numba_cpu.compile import compile_kernel

UNUSED = ("numba.cpython.heapq", "numba.cpython.enumimpl", "numba.cpython.cmathimpl", "numba.np.polynomial",
          "numba.np.random")


@njit
def user(xs):  # the user's own numba code, needing what the kernels' refresh leaves out
    h = [x for x in xs]
    heapq.heapify(h)
    s = 0.0
    for i, v in enumerate(h):
        s += i * v + cmath.sqrt(complex(-v)).imag
    return s


def run_kernel():  # max(int, int) types an @intrinsic: its lowering is registered as it is typed
    source = ("def kernel(a, out):\n    for i in range(max(a.shape[0], 1)):\n"
              "        out[i] = math.log1p(_f32(a[i])) * _f32(2)\n")
    kernel = compile_kernel(source, "kernel")
    a = np.linspace(0, 3, 7, dtype=np.float32)
    out = np.empty_like(a)
    kernel(a, out)
    return out.tolist()


xs = np.array([3.0, 1.0, 2.0, 5.0])
result = {}
if sys.argv[1] == "kernel first":
    result["out"] = run_kernel()
    result["after_kernel"] = [m for m in UNUSED if m in sys.modules]
    result["user"] = user(xs)
else:
    result["user"] = user(xs)
    result["out"] = run_kernel()
result["after_both"] = [m for m in UNUSED if m in sys.modules]
print(json.dumps(result))
"""


@pytest.mark.parametrize("order", ["kernel first", "user first"])
def test_kernels_compile_with_a_trimmed_registry_refresh_and_user_code_with_numbas(tmp_path, order):
    env = dict(os.environ, TFJIT_CACHE_DIR=str(tmp_path / "tfjit"), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    done = subprocess.run([sys.executable, "-c", _KERNEL_AND_USER_CODE, order], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    a = np.linspace(0, 3, 7, dtype=np.float32)
    np.testing.assert_allclose(result["out"], np.log1p(a) * 2, rtol=1e-6)
    h = [3.0, 1.0, 2.0, 5.0]
    heapq.heapify(h)
    assert result["user"] == pytest.approx(sum(i * v + cmath.sqrt(complex(-v)).imag for i, v in enumerate(h)))
    if order == "kernel first":
        assert result["after_kernel"] == []  # the kernel's compile loaded only what kernels use
    assert len(result["after_both"]) == 5  # the user's code: numba's whole refresh, as without tfjit


def test_the_trimmed_refresh_replaces_only_the_loading_it_knows():
    from numba.core.cpu import CPUContext

    from tfjit.backends import numba_startup

    class Other:  # another numba's loading: left as it is
        def load_additional_registries(self):
            from numba.np import arraymath, arrayobj  # noqa: F401

    before = Other.load_additional_registries
    numba_startup._refresh_kernel_registries_only(Other)
    assert Other.load_additional_registries is before
    patched = CPUContext.load_additional_registries  # this numba's: replaced once, on install
    assert patched.__module__ == numba_startup.__name__
    numba_startup._refresh_kernel_registries_only(CPUContext)
    assert CPUContext.load_additional_registries is patched


def test_the_garbage_collector_is_held_while_a_kernel_compiles_and_only_then(tmp_path, monkeypatch):
    import numba
    from numba.core import event

    from tfjit.backends.numba_cpu.compile import compile_kernel

    monkeypatch.setenv("TFJIT_CACHE_DIR", str(tmp_path))  # an empty cache: the kernels compile
    enabled_at_compile = []

    class Spy(event.Listener):
        def on_start(self, ev):
            enabled_at_compile.append(gc.isenabled())

        def on_end(self, ev):
            pass

    source = "def kernel(a, out):\n    for i in range(a.shape[0]):\n        out[i] = a[i] * _f32({})\n"
    a = np.arange(5, dtype=np.float32)
    out = np.empty_like(a)
    spy = Spy()
    event.register("numba:compile", spy)
    try:
        compile_kernel(source.format(3), "kernel")(a, out)
        assert gc.isenabled() and out.tolist() == (a * 3).tolist()
        numba.njit(lambda x: x + 1)(1)  # the user's own function compiles as numba does
        gc.disable()
        try:  # a collector the user turned off stays off
            compile_kernel(source.format(5), "kernel")(a, out)
            assert not gc.isenabled() and out.tolist() == (a * 5).tolist()
        finally:
            gc.enable()
    finally:
        event.unregister("numba:compile", spy)
    assert enabled_at_compile == [False, True, False]
