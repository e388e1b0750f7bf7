"""The kernel cache: compile once, load in a new process without compiling, explain misses,
survive corruption and concurrent writers, refuse directories others can write.

Compilations are counted through the cache's statistics, never timed."""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfjit.backends.kernel_cache import _NO_ANNOTATION, KernelCache, KernelKey, cli, entry_digest, files_digest

ADD = """\
import numba


@numba.njit(cache=True)
def add(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + b[i]
"""

# Compiled eagerly at import (explicit signature), so numba reads its cache while the module runs.
SCALE = """\
import numba
import numpy as np


@numba.njit("void(float32[::1], float32[::1])", cache=True)
def scale(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * np.float32(2.5)
"""

# A child process: load the kernels named on the command line, run them, print stats as JSON.
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from tfjit.backends.kernel_cache import KernelCache, KernelKey
    directory, source, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    cache = KernelCache(directory)
    a = np.arange(1000, dtype=np.float32)
    results = []
    for name in names:
        add = cache.load(KernelKey(name, "ir:" + name, "f32[C] f32[C]"), source, "add")
        out = np.empty_like(a)
        add(a, a, out)
        results.append(bool(np.array_equal(out, a + a)))
    stats = cache.stats()
    print(json.dumps({"correct": results, "stats": stats.__dict__, "compiled_nothing": stats.compiled_nothing}))
""")


def add_key(name: str = "add", **changes: object) -> KernelKey:
    return dataclasses.replace(KernelKey(name, f"ir:{name}", "f32[C] f32[C]"), **changes)


def run_add(fn, dtype=np.float32, n=37) -> None:
    """Call an `add` kernel and check it against NumPy."""
    a = np.linspace(-3, 3, n).astype(dtype)
    b = np.arange(n).astype(dtype)
    out = np.empty_like(a)
    fn(a, b, out)
    np.testing.assert_array_equal(out, a + b)


def child(directory: Path, *names: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(directory), ADD, *names],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tfjit-cache"
    monkeypatch.setenv("TFJIT_CACHE_DIR", str(directory))
    return directory


def entry_path(directory: Path, key: KernelKey, source: str) -> Path:
    return directory / f"{entry_digest(key, source)}.py"


def test_compiles_once_and_a_new_process_compiles_nothing(cache_dir: Path) -> None:
    cache = KernelCache()
    assert cache.directory == cache_dir
    assert cache_dir.stat().st_mode & 0o777 == 0o700
    add = cache.load(add_key(), ADD, "add")
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        run_add(add, dtype)
    assert cache.load(add_key(), ADD, "add") is add
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.corrupt) == (1, 1, 0)
    assert stats.numba_misses == 4 and stats.numba_hits == 0  # one compilation per dtype

    result = child_result(child(cache_dir, "add"))
    assert result["correct"] == [True]
    assert result["stats"]["hits"] == 1 and result["stats"]["misses"] == 0
    assert result["stats"]["numba_hits"] == 1
    assert result["stats"]["numba_misses"] == 0
    assert result["stats"]["process_compilations"] == 0 and result["compiled_nothing"]


def test_saved_kernels_leave_out_the_type_annotation(cache_dir: Path) -> None:
    """numba's type annotation text (which tokenizes the source) is not made on save: a kernel
    loaded from the cache shows a note instead, and computes the same."""
    first = KernelCache()
    run_add(first.load(add_key(), ADD, "add"))
    assert first.stats().numba_misses == 1
    again = KernelCache()  # a second cache object re-imports the module: numba loads its saved code
    add = again.load(add_key(), ADD, "add")
    run_add(add)
    assert again.stats().numba_hits == 1 and again.stats().numba_misses == 0
    (loaded,) = add.overloads.values()
    assert loaded.type_annotation == _NO_ANNOTATION


# Cached code that calls the NRT (np.empty), a threading layer (prange) and the hash secret
# (str hash): a new process loads it without numba's registry refresh and must link all three.
RUNTIME_USER = """\
import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def doubled(a, out):
    tmp = np.empty(a.shape[0], a.dtype)
    for i in numba.prange(a.shape[0]):
        tmp[i] = a[i] * 2
    h = hash("tfjit") & 1
    for i in range(a.shape[0]):
        out[i] = tmp[i] + h - h
"""

REFRESH_COUNTING_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import numba.core.base
    from tfjit.backends.kernel_cache import KernelCache, KernelKey
    refresh, calls = numba.core.base.BaseContext.refresh, []
    numba.core.base.BaseContext.refresh = lambda self: calls.append(1) or refresh(self)
    cache = KernelCache(sys.argv[1])
    doubled = cache.load(KernelKey("doubled", "ir:doubled"), sys.argv[2], "doubled")
    a = np.arange(1000, dtype=np.float64)
    out = np.empty_like(a)
    doubled(a, out)
    print(json.dumps({"correct": bool(np.array_equal(out, 2 * a)), "refreshes": len(calls),
                      "compiled_nothing": cache.stats().compiled_nothing}))
""")


@pytest.mark.slow
def test_a_warm_load_skips_numbas_refresh_and_links_the_runtime(cache_dir: Path) -> None:
    def run() -> dict:
        proc = subprocess.Popen([sys.executable, "-c", REFRESH_COUNTING_CHILD, str(cache_dir), RUNTIME_USER],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return child_result(proc)

    cold = run()
    assert cold["correct"] and cold["refreshes"] > 0 and not cold["compiled_nothing"]
    warm = run()
    assert warm == {"correct": True, "refreshes": 0, "compiled_nothing": True}


# Allocates through the NRT, so its machine code calls the runtime's reference counting.
ALLOCATING = """\
import numba
import numpy as np


@numba.njit(cache=True)
def doubled(a, out):
    tmp = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        tmp[i] = a[i] * 2
    out[:] = tmp
"""

RUNTIME_COUNTING_CHILD = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    from numba.core.runtime import nrtdynmod
    made, create = [], nrtdynmod.create_nrt_module
    nrtdynmod.create_nrt_module = lambda ctx: made.append(1) or create(ctx)
    from tfjit.backends.kernel_cache import KernelCache, KernelKey
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = KernelCache(sys.argv[1])
        doubled = cache.load(KernelKey("doubled", "ir:doubled"), sys.argv[2], "doubled")
        a = np.arange(1000, dtype=np.float64)
        out = np.empty_like(a)
        for _ in range(3):
            doubled(a, out)
    print(json.dumps({"correct": bool(np.array_equal(out, 2 * a)), "runtime_compiled": len(made),
                      "warnings": [str(w.message) for w in caught]}))
""")


def test_numbas_runtime_is_compiled_once_then_loaded_and_a_damaged_copy_recompiled(cache_dir: Path) -> None:
    def run() -> dict:
        proc = subprocess.Popen([sys.executable, "-c", RUNTIME_COUNTING_CHILD, str(cache_dir), ALLOCATING],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return child_result(proc)

    assert run() == {"correct": True, "runtime_compiled": 1, "warnings": []}
    (saved,) = cache_dir.glob("*.nrt")
    assert run() == {"correct": True, "runtime_compiled": 0, "warnings": []}
    data = bytearray(saved.read_bytes())
    data[-20] ^= 0xFF  # a flipped byte in the machine code
    saved.write_bytes(bytes(data))
    damaged = run()
    assert damaged["correct"] and damaged["runtime_compiled"] == 1
    assert len(damaged["warnings"]) == 1 and "runtime cache file" in damaged["warnings"][0]
    assert run() == {"correct": True, "runtime_compiled": 0, "warnings": []}  # rewritten whole


@pytest.mark.parametrize("field, value, explained", [
    ("numba", "0.0.test", "numba: '0.68.1' -> '0.0.test'"),
    ("options", {"fastmath": ("nsz",)}, "options.fastmath: None -> \"('nsz',)\""),
    ("target", "generic +sse2", "target: changed"),
])
def test_a_changed_key_field_misses_and_is_explained(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture, field: str,
                                                     value: object, explained: str) -> None:
    monkeypatch.setenv("TFJIT_EXPLAIN_CACHE_MISSES", "1")
    cache = KernelCache()
    key = add_key(numba="0.68.1")
    first = cache.load(key, ADD, "add")
    changed = dataclasses.replace(key, **{field: value})
    with caplog.at_level(logging.WARNING, logger="tfjit.cache"):
        second = cache.load(changed, ADD, "add")
    assert second is not first
    assert entry_path(cache_dir, changed, ADD) != entry_path(cache_dir, key, ADD)
    assert entry_path(cache_dir, changed, ADD).exists()
    assert cache.stats().misses == 2
    assert "kernel cache miss for `add`" in caplog.text and explained in caplog.text
    run_add(second)


def test_explains_a_new_kernel_and_a_changed_source(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TFJIT_EXPLAIN_CACHE_MISSES", "1")
    cache = KernelCache()
    with caplog.at_level(logging.WARNING, logger="tfjit.cache"):
        cache.load(add_key(), ADD, "add")
        run_add(cache.load(add_key(), ADD + "# another generator\n", "add"))
    assert "no kernel named `add` is cached" in caplog.text
    assert "its key is unchanged but its generated source changed" in caplog.text


def test_key_names_every_input() -> None:
    base = add_key(options={"parallel": False, "fastmath": ("nsz", "arcp")})
    assert base.options == (("fastmath", "('nsz', 'arcp')"), ("parallel", "False"))
    assert base == add_key(options={"fastmath": ("nsz", "arcp"), "parallel": False})
    changes = {"name": "mul", "ir": "other", "signature": "f64[C] f64[C]", "options": {"parallel": True},
               "backend": "numba_cuda", "deps": "abc", "target": "generic", "numba": "0", "llvmlite": "0",
               "numpy": "0", "python": "2.7", "tfjit": "0"}
    assert set(changes) == {f.name for f in dataclasses.fields(KernelKey)}
    digests = {dataclasses.replace(base, **{name: value}).digest() for name, value in changes.items()}
    assert base.digest() not in digests and len(digests) == len(changes)
    assert entry_digest(base, ADD) != entry_digest(base, ADD + "\n")


def test_files_digest_follows_helper_contents(tmp_path: Path) -> None:
    helper = tmp_path / "mathlib.py"
    helper.write_text("def f(x): return x\n")
    before = files_digest(helper)
    helper.write_text("def f(x): return x + 1\n")
    assert files_digest(helper) != before


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_a_corrupted_entry_warns_recompiles_and_is_correct(cache_dir: Path, damage: str) -> None:
    KernelCache().load(add_key(), ADD, "add")
    path = entry_path(cache_dir, add_key(), ADD)
    good = path.read_bytes()
    bad = good[: len(good) // 2] if damage == "truncate" else good.replace(b"a[i] + b[i]", b"a[i] - b[i]")
    path.write_bytes(bad)

    cache = KernelCache()
    assert cache.info().bad_entries == 1
    with pytest.warns(UserWarning, match=f"{path.name} is corrupted or truncated"):
        add = cache.load(add_key(), ADD, "add")
    run_add(add)
    stats = cache.stats()
    assert (stats.corrupt, stats.misses, stats.numba_misses) == (1, 1, 1)  # recompiled
    assert path.read_bytes() == good
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("source, entry", [(ADD, "add"), (SCALE, "scale")], ids=["lazy", "eager"])
def test_unreadable_numba_cache_files_are_recompiled(cache_dir: Path, source: str, entry: str) -> None:
    key = add_key(entry)
    kernel = KernelCache().load(key, source, entry)
    x = np.arange(10, dtype=np.float32)
    out = np.empty_like(x)
    call = (lambda k: k(x, x, out)) if entry == "add" else (lambda k: k(x, out))
    call(kernel)
    numba_files = list(Path(kernel.stats.cache_path).glob(f"{entry_digest(key, source)}.*.nbc"))
    assert numba_files
    for f in numba_files:
        f.write_bytes(f.read_bytes()[:50])

    cache = KernelCache()
    with pytest.warns(UserWarning, match="numba's compiled code for kernel .* could not be read"):
        call(cache.load(key, source, entry))
    np.testing.assert_array_equal(out, x + x if entry == "add" else x * np.float32(2.5))
    assert cache.stats().corrupt == 1 and cache.stats().numba_misses == 1


def test_two_processes_fill_an_empty_cache_at_once(cache_dir: Path) -> None:
    names = ["k0", "k1", "k2"]
    procs = [child(cache_dir, *names), child(cache_dir, *reversed(names))]
    results = [child_result(p) for p in procs]
    assert all(r["correct"] == [True] * 3 for r in results)
    assert not [f for f in cache_dir.iterdir() if f.name.startswith(".tmp-")]
    assert child_result(child(cache_dir, *names))["compiled_nothing"]
    info = KernelCache().info()
    assert info.entries == 3 and info.bad_entries == 0
    # each process recorded its counts at exit: 9 loads, each kernel written at least once
    assert info.processes == 3 and info.hits + info.misses == 9 and 3 <= info.misses <= 6


@pytest.mark.parametrize("mode", [0o770, 0o757])
def test_a_directory_others_can_write_is_refused(cache_dir: Path, mode: int) -> None:
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(mode)
    with pytest.warns(UserWarning, match=f"{cache_dir} is writable by other users .* would run"):
        cache = KernelCache()
    assert cache.refused is not None
    assert cache.directory != cache_dir and cache.directory.stat().st_mode & 0o777 == 0o700
    add = cache.load(add_key(), ADD, "add")
    run_add(add)
    assert Path(add.py_func.__code__.co_filename).parent == cache.directory
    assert not list(cache_dir.glob("*.py"))


def test_an_entry_others_can_write_is_refused(cache_dir: Path) -> None:
    KernelCache().load(add_key(), ADD, "add")
    entry_path(cache_dir, add_key(), ADD).chmod(0o666)
    cache = KernelCache()
    with pytest.warns(UserWarning, match="is writable by other users"):
        add = cache.load(add_key(), ADD, "add")
    run_add(add)
    assert cache.directory != cache_dir


def test_cli_info_and_clear(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = KernelCache()
    cache.load(add_key(), ADD, "add")(np.ones(3), np.ones(3), np.empty(3))
    (cache_dir / "notes.txt").write_text("not the cache's")

    assert cli(["info"]) == 0
    out = capsys.readouterr().out
    assert f"directory: {cache_dir}" in out and "entries:   1 kernels" in out
    assert "recorded:  0 hits, 0 misses" in out  # a new cache object: nothing recorded yet
    assert cache.info().misses == 1 and cache.info().total_bytes > len(ADD)

    assert cli(["clear", "--dir", str(cache_dir)]) == 0
    assert "removed 4 files" in capsys.readouterr().out  # source, sidecar, numba index and data
    assert sorted(f.name for f in cache_dir.iterdir()) == ["__pycache__", "notes.txt"]
    fresh = KernelCache()
    assert fresh.info().entries == 0
    run_add(fresh.load(add_key(), ADD, "add"))  # a cleared cache fills again
    assert fresh.stats().misses == 1 and fresh.info().entries == 1


def test_cli_refuses_an_unsafe_directory(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache_dir.mkdir()
    cache_dir.chmod(0o777)
    assert cli(["clear"]) == 1
    assert "writable by other users" in capsys.readouterr().err


def test_a_missing_entry_function_is_named(cache_dir: Path) -> None:
    with pytest.raises(AttributeError, match=r"\.py defines no `mul`"):
        KernelCache().load(add_key(), ADD, "mul")
