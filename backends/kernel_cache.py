"""The on-disk kernel cache of the numba backends.

`KernelCache.load(key, source, entry)` writes a kernel's generated source to
`<cache dir>/<entry digest>.py`, imports it from there and returns the function named
`entry`. The generated source decorates its functions with `numba.njit(cache=True, ...)`,
so numba keeps their machine code in `<cache dir>/__pycache__` (or under `NUMBA_CACHE_DIR`
when that is set) and a second process loads it instead of compiling.

The machine code of numba's runtime functions (NRT reference counting), which numba compiles
in every process, is kept there too (`<digest>.nrt`, see `_initialize_runtime`).

The entry digest hashes the key *and* the source, so a changed source can never reuse a
stale file or stale machine code (numba stamps its cache with the source's content hash).
The key names what the source does not show: the IR, dtypes/layout class, codegen options,
backend, helper modules, target CPU and toolchain versions; it explains misses
(`TFJIT_EXPLAIN_CACHE_MISSES=1`). Generated sources that call other kernels must import
them by their module names (`module_name(...)`), so a changed callee changes the caller.

Safety: files are written atomically (temporary file, `os.replace`; no fsync, which cost
6-13 ms a file here: a file a crash left torn fails the check below); each source
file starts with `# tfjit-kernel sha256=<hash of the rest>` and is compared with what
would be written before it is run, so a corrupted or truncated entry is rewritten and
recompiled with a warning (unreadable numba cache files likewise). The directory
(`TFJIT_CACHE_DIR`, else `~/.cache/tfjit`) is created private (0o700); one owned by someone
else or writable by other users is refused with a warning, since loading from it would run
their code, and a private temporary directory is used instead.
"""
from __future__ import annotations

import argparse
import atexit
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import llvmlite
import llvmlite.binding as llvm
import numba
import numpy
from numba.core import config as numba_config
from numba.core import event as numba_event
from numba.core.caching import Cache as NumbaCache
from numba.core.caching import UserProvidedCacheLocator
from numba.core.dispatcher import Dispatcher

from . import numba_startup

log = logging.getLogger("tfjit.cache")
numba_startup.install()

HEADER = "# tfjit-kernel sha256="
_ENTRY = re.compile(r"^[0-9a-f]{64}\.(py|json|nrt)$")
_NUMBA_FILE = re.compile(r"^[0-9a-f]{64}\.")
_TMP_PREFIX = ".tmp-"
_STATS_FILE = "stats.jsonl"
_STALE_TMP_S = 3600.0
_MODULE_PREFIX = "_tfjit_kernel_"
# What numba's `inspect_types` shows for a kernel loaded from the cache (see save_overload)
_NO_ANNOTATION = "tfjit does not cache its kernels' type annotations; `tfjit dump --stage kernels` shows their source"


# -- the key -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def host_target() -> str:
    """The CPU numba compiles for (numba's NUMBA_CPU_NAME/NUMBA_CPU_FEATURES overrides win)."""
    name = numba_config.CPU_NAME or llvm.get_host_cpu_name()
    features = numba_config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return f"{name} {features}"


def _tfjit_version() -> str:
    import tfjit  # at key creation, long after tfjit finished importing

    return tfjit.__version__


def files_digest(*paths: str | os.PathLike[str]) -> str:
    """sha256 of helper modules a kernel imports, for `KernelKey.deps`: numba's cache does
    not notice when a callee in another file changes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


_NUMBA_VERSION = numba.__version__
_LLVMLITE_VERSION = llvmlite.__version__
_NUMPY_VERSION = numpy.__version__
_PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class KernelKey:
    """Every input that changes a kernel's code. `options` may be given as a mapping."""

    name: str                 # the kernel's name; groups entries when explaining misses
    ir: str                   # the kernel's IR text (stored hashed)
    signature: str = ""       # argument dtypes and layout class, e.g. "f32[C,2] f32[A,0]"
    options: Any = ()         # codegen options
    backend: str = "numba_cpu"
    deps: str = ""            # files_digest() of helper modules the source imports
    target: str = field(default_factory=host_target)
    numba: str = _NUMBA_VERSION
    llvmlite: str = _LLVMLITE_VERSION
    numpy: str = _NUMPY_VERSION
    python: str = _PYTHON_VERSION
    tfjit: str = field(default_factory=_tfjit_version)

    def __post_init__(self) -> None:
        items = self.options.items() if isinstance(self.options, Mapping) else self.options
        object.__setattr__(self, "options", tuple(sorted((str(k), repr(v)) for k, v in items)))

    def as_dict(self) -> dict[str, Any]:
        """The key as JSON-ready values (the IR as its hash), as stored in the sidecar."""
        values = asdict(self)
        values["ir"] = _sha256(self.ir)
        values["options"] = dict(self.options)
        return values

    def digest(self) -> str:
        return _sha256(json.dumps(self.as_dict(), sort_keys=True))


def entry_digest(key: KernelKey, source: str) -> str:
    """The name of a kernel's files: its key and its source, hashed together."""
    return _sha256(f"{key.digest()}\n{_sha256(source)}")


def module_name(key: KernelKey, source: str) -> str:
    """The name a kernel's module has in `sys.modules` (numba's cached code refers to it)."""
    return _MODULE_PREFIX + entry_digest(key, source)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_text(source: str) -> str:
    return f"{HEADER}{_sha256(source)}\n{source}"


# -- statistics --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheStats:
    """What one cache did in this process."""

    hits: int = 0          # loads served by an existing file (or a module already loaded)
    misses: int = 0        # loads that wrote their file (new or corrupt)
    corrupt: int = 0       # corrupt entries and unreadable numba cache files replaced
    numba_hits: int = 0    # signatures numba loaded from its cache, over this cache's kernels
    numba_misses: int = 0  # signatures numba compiled, over this cache's kernels
    process_compilations: int = 0  # numba compilations of any function in this process

    @property
    def compiled_nothing(self) -> bool:
        return self.numba_misses == 0 and self.process_compilations == 0


@dataclass(frozen=True)
class CacheInfo:
    """A cache directory's contents, and the statistics recorded by the processes using it."""

    directory: Path
    entries: int
    total_bytes: int
    bad_entries: int   # entries whose content hash does not match now
    hits: int
    misses: int
    corrupt: int
    processes: int


class _CompileCounter(numba_event.Listener):
    """Counts every numba compilation in the process (kernels, their callees, anything)."""

    count = 0

    def on_start(self, event: numba_event.Event) -> None:
        type(self).count += 1

    def on_end(self, event: numba_event.Event) -> None:
        pass


numba_event.register("numba:compile", _CompileCounter())


# -- file safety -------------------------------------------------------------------------------

def _unsafe(path: Path, st: os.stat_result) -> str | None:
    """Why running code from `path` would run someone else's code, or None."""
    uid = os.getuid()
    if st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not by you (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):#o})"
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return f"{path} is not a regular file"
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part (mkstemp makes it 0o600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _is_intact(data: bytes) -> bool:
    """Whether a file's first-line hash matches the rest (used where the source is unknown)."""
    head, _, body = data.partition(b"\n")
    return head == f"{HEADER}{hashlib.sha256(body).hexdigest()}".encode()


def default_directory() -> Path:
    """`TFJIT_CACHE_DIR`, else `$XDG_CACHE_HOME/tfjit`, else `~/.cache/tfjit`."""
    explicit = os.environ.get("TFJIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfjit"


# -- numba's own cache -------------------------------------------------------------------------

class _GuardedNumbaCache:
    """Wraps numba's cache of one dispatcher: numba raises on an unreadable index or data
    file; this drops the file and lets numba compile (and save) afresh.

    It also loads without numba's `target_context.refresh()`, which numba's own
    `load_overload` runs first: that refresh imports and installs every typing and lowering
    registry numba has (0.2 s, measured; most of a warm first call), which only compiling
    needs, and numba's compiler runs it itself before compiling. Machine code loaded from
    the cache needs only the symbols it links against, which `_prepare_for_cached_code`
    provides."""

    def __init__(self, inner: NumbaCache, directory: Path, on_unreadable: Callable[[BaseException], None]):
        self._inner = inner
        self._directory = directory
        self._on_unreadable = on_unreadable

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            return _load_without_refresh(self._inner, sig, target_context, self._directory)
        except Exception as exc:  # noqa: BLE001 - any unreadable pickle means "not cached"
            self._on_unreadable(exc)
            return None

    def save_overload(self, sig: Any, cres: Any) -> None:
        """numba's save, without the type annotation text numba stores for `inspect_types`:
        making it re-reads and tokenizes the kernel's source file (52 of the 67 ms that saving
        the MLP step's four kernels took, measured; most of it compiling tokenize's patterns)."""
        replace = getattr(cres, "_replace", None)
        self._inner.save_overload(sig, replace(type_annotation=_NO_ANNOTATION) if replace else cres)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _load_without_refresh(cache: NumbaCache, sig: Any, target_context: Any, directory: Path) -> Any:
    """numba's `Cache.load_overload` minus its registry refresh (see `_GuardedNumbaCache`);
    numba's own path where its private methods are missing (another numba version)."""
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:
        return cache.load_overload(sig, target_context)
    _prepare_for_cached_code(target_context, directory)
    with guard():
        return load(sig, target_context)
    return None  # the guard swallowed a spurious I/O error: not cached


def _prepare_for_cached_code(target_context: Any, directory: Path) -> None:
    """Register the symbols cached machine code may call that the refresh would register:
    numba installs its helper, exception and libm symbols when its CPU context is created,
    parallel kernels start their threading layer themselves (numba's `reload_init`); the NRT
    (allocation, reference counting) and the hash secret remain. Without a symbol, LLVM would
    abort the process when linking the code."""
    _initialize_runtime(target_context, directory)
    numba_startup.define_hash_secret()


# -- numba's runtime ---------------------------------------------------------------------------

def _initialize_runtime(target_context: Any, directory: Path) -> None:
    """numba's `rtsys.initialize`, with the NRT's LLVM functions (reference counting, atomics)
    loaded as machine code from `<directory>/<digest>.nrt` when an earlier process left it there,
    else compiled as numba does and saved there. numba compiles them in every process (15-40 ms
    of a warm first call, measured: LLVM optimises and generates their code). A damaged file
    is reported, compiled again and rewritten; numba's own way where its internals differ."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import nrt, nrtdynmod

    rtsys = nrt.rtsys
    create = getattr(nrtdynmod, "create_nrt_module", None)
    if getattr(rtsys, "_init", True) or create is None or not hasattr(nrt, "_nrt"):
        rtsys.initialize(target_context)  # done already, or another numba: numba's way
        return
    with global_compiler_lock:
        if rtsys._init:
            return
        for name, address in nrt._nrt.c_helpers.items():  # as numba's initialize registers them
            llvm.add_symbol(name if name.startswith("_") else f"NRT_{name}", address)
        path = directory / f"{_runtime_digest()}.nrt"
        codegen = target_context.codegen()
        data = _read(path)
        if data is not None and _unsafe(path, path.lstat()) is None and _is_intact(data):
            library = codegen.unserialize_library(_unpack_library(data.partition(b"\n")[2]))
        else:
            if data is not None:
                warnings.warn(f"numba runtime cache file {path} is corrupted or truncated; compiling "
                              "the runtime again and rewriting it", stacklevel=5)
            module, library = create(target_context)
            library.enable_object_caching()  # keep the machine code to save it
            library.add_ir_module(module)
            library.finalize()
            body = _pack_library(library.serialize_using_object_code())
            try:
                _atomic_write(path, f"{HEADER}{hashlib.sha256(body).hexdigest()}\n".encode() + body)
            except OSError:
                pass  # not kept: the next process compiles the runtime again
        rtsys._library = library
        rtsys._init = True


@functools.lru_cache(maxsize=None)
def _runtime_digest() -> str:
    """The runtime file's name: numba's runtime source, the optimisation level, and what every
    kernel's key holds (target CPU, toolchain versions)."""
    from numba.core.runtime import nrtdynmod

    key = KernelKey("numba-runtime", files_digest(nrtdynmod.__file__), options={"opt": int(numba_config.OPT)})
    return entry_digest(key, "")


def _pack_library(state: tuple[str, str, tuple[bytes, bytes]]) -> bytes:
    """numba's serialized library `(name, 'object', (machine code, bitcode))` as bytes, without pickle."""
    name, kind, (code, bitcode) = state
    head = json.dumps({"name": name, "kind": kind, "code": len(code)}).encode()
    return head + b"\n" + code + bitcode


def _unpack_library(body: bytes) -> tuple[str, str, tuple[bytes, bytes]]:
    head, _, blobs = body.partition(b"\n")
    meta = json.loads(head)
    return meta["name"], meta["kind"], (blobs[:meta["code"]], blobs[meta["code"]:])


def _numba_cache_dirs(path: Path) -> list[Path]:
    """Where numba keeps the compiled code of functions defined in `path`."""
    if numba_config.CACHE_DIR:
        return [Path(numba_config.CACHE_DIR) / UserProvidedCacheLocator.get_suitable_cache_subpath(str(path))]
    return [path.parent / "__pycache__"]


def _numba_files(path: Path) -> list[Path]:
    """numba's index and data files for the functions of the kernel file `path`."""
    return [f for d in _numba_cache_dirs(path) for f in d.glob(f"{path.stem}.*")]


def _drop_numba_files(path: Path) -> list[Path]:
    dropped = _numba_files(path)
    for f in dropped:
        f.unlink(missing_ok=True)
    return dropped


# -- the cache ---------------------------------------------------------------------------------

class KernelCache:
    """Generated kernels on disk, imported and compiled by numba with `cache=True`."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_directory()
        self.refused: str | None = None  # why the directory was refused, if it was
        self._lock = threading.RLock()
        self._modules: dict[str, ModuleType] = {}
        self._dispatchers: list[Dispatcher] = []
        self._hits = self._misses = self._corrupt = 0
        self._ensure_private_directory()
        atexit.register(self._record_stats)

    # -- public API ----------------------------------------------------------------------------

    def load(self, key: KernelKey, source: str, entry: str) -> Any:
        """The function `entry` of `source`, compiled once and then loaded from the cache."""
        digest = entry_digest(key, source)
        with self._lock:
            module = self._modules.get(digest)
            if module is None:
                module = self._modules[digest] = self._load_module(digest, key, source)
            else:
                self._hits += 1
        try:
            return getattr(module, entry)
        except AttributeError:
            raise AttributeError(f"kernel source {module.__file__} defines no `{entry}`") from None

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits, misses=self._misses, corrupt=self._corrupt,
                numba_hits=sum(sum(d.stats.cache_hits.values()) for d in self._dispatchers),
                numba_misses=sum(sum(d.stats.cache_misses.values()) for d in self._dispatchers),
                process_compilations=_CompileCounter.count)

    def info(self) -> CacheInfo:
        """Entries and size on disk; hits/misses of finished processes plus this one's."""
        files = self._own_files()
        entries = [f for f in files if f.suffix == ".py" and _ENTRY.match(f.name)]
        recorded = self._recorded_stats()
        now = self.stats()
        return CacheInfo(
            directory=self.directory, entries=len(entries),
            total_bytes=sum(f.stat().st_size for f in files),
            bad_entries=sum(not _is_intact(f.read_bytes()) for f in entries),
            hits=recorded["hits"] + now.hits, misses=recorded["misses"] + now.misses,
            corrupt=recorded["corrupt"] + now.corrupt, processes=recorded["processes"])

    def clear(self) -> int:
        """Remove this cache's files (and nothing else in the directory); returns how many.
        Modules already loaded stay usable."""
        with self._lock:
            files = set(self._own_files(include_tmp_younger_than=_STALE_TMP_S))
            for entry in [f for f in files if f.suffix == ".py"]:
                files.update(_numba_files(entry))  # under NUMBA_CACHE_DIR when that is set
            for f in files:
                f.unlink(missing_ok=True)
            self._modules.clear()
            return len(files)

    # -- loading -------------------------------------------------------------------------------

    def _load_module(self, digest: str, key: KernelKey, source: str) -> ModuleType:
        self._ensure_private_directory()  # it may have been removed or opened up meanwhile
        text = _file_text(source)
        path = self.directory / f"{digest}.py"
        hit = self._entry_matches(path, text)
        path = self.directory / path.name  # _refuse may have moved the cache
        if hit:
            self._hits += 1
        else:
            self._misses += 1
            if os.environ.get("TFJIT_EXPLAIN_CACHE_MISSES") == "1":
                log.warning("%s", self._explain_miss(digest, key, source))
            self._write_entry(path, key, source, text)
        return self._import(path, text)

    def _entry_matches(self, path: Path, text: str) -> bool:
        """Whether `path` holds exactly `text`; a damaged file is reported and dropped."""
        data = _read(path)
        if data is None:
            return False
        reason = _unsafe(path, path.lstat())
        if reason is not None:
            self._refuse(reason)  # moves to a fresh directory, where the entry is missing
            return False
        if data == text.encode():
            return True
        self._corrupt += 1
        warnings.warn(f"kernel cache entry {path} is corrupted or truncated (it differs from the "
                      "source its name and sha256 header stand for); rewriting and recompiling it", stacklevel=4)
        _drop_numba_files(path)
        return False

    def _write_entry(self, path: Path, key: KernelKey, source: str, text: str) -> None:
        sidecar = {"name": key.name, "key": key.as_dict(), "source_sha256": _sha256(source)}
        _atomic_write(path.with_suffix(".json"), json.dumps(sidecar, indent=1, sort_keys=True).encode())
        _atomic_write(path, text.encode())

    def _import(self, path: Path, text: str) -> ModuleType:
        """Run the verified text as module `_tfjit_kernel_<digest>` (numba's cached code looks
        it up by that name); numba cache files it cannot read are dropped and compiled again."""
        try:
            module = self._exec(path, text)
        except Exception as exc:
            dropped = _drop_numba_files(path)
            if not dropped:
                raise
            module = self._exec(path, text)  # an error in the source itself raises again
            self._note_unreadable(path, exc, dropped)
        self._guard_dispatchers(module, path)
        return module

    def _exec(self, path: Path, text: str) -> ModuleType:
        name = _MODULE_PREFIX + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - our verified file
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module

    def _guard_dispatchers(self, module: ModuleType, path: Path) -> None:
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__:
                self._dispatchers.append(value)
                numba_startup.skip_extensions(value)
                if isinstance(value._cache, NumbaCache):
                    value._cache = _GuardedNumbaCache(
                        value._cache, path.parent, lambda exc: self._note_unreadable(path, exc, _drop_numba_files(path)))

    def _note_unreadable(self, path: Path, exc: BaseException, dropped: list[Path]) -> None:
        self._corrupt += 1
        names = ", ".join(str(f) for f in dropped) or "its numba cache files"
        warnings.warn(f"numba's compiled code for kernel {path} could not be read "
                      f"({type(exc).__name__}: {exc}); removed {names} and recompiled it", stacklevel=2)

    # -- the directory -------------------------------------------------------------------------

    def _ensure_private_directory(self) -> None:
        """Create the directory (and numba's `__pycache__` in it) private to the user, or
        refuse it if others could have written its contents."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.directory / "__pycache__").mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            self._refuse(f"{self.directory} cannot be used ({exc})")
            return
        for path in (self.directory, self.directory / "__pycache__"):
            reason = _unsafe(path, path.stat())
            if reason is not None:
                self._refuse(reason)
                return

    def _refuse(self, reason: str) -> None:
        fallback = Path(tempfile.mkdtemp(prefix="tfjit-cache-"))
        (fallback / "__pycache__").mkdir(mode=0o700)
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        warnings.warn(f"not loading kernels from the cache: {reason}, and loading them would run "
                      f"their code. Using the private temporary directory {fallback} instead (kernels "
                      f"compiled now are not kept). Fix: chmod 700 the cache directory, or set "
                      f"TFJIT_CACHE_DIR to a directory of your own.", stacklevel=4)
        self.refused = reason
        self.directory = fallback
        self._modules.clear()

    def _own_files(self, include_tmp_younger_than: float = 0.0) -> list[Path]:
        """This cache's files: entries, sidecars, numba's code for them, stale temporaries,
        the statistics log. Temporaries younger than the given age may be mid-write."""
        if not self.directory.is_dir():
            return []
        cutoff = time.time() - include_tmp_younger_than
        ours = []
        for f in self.directory.iterdir():
            if _ENTRY.match(f.name) or f.name == _STATS_FILE:
                ours.append(f)
            elif f.name.startswith(_TMP_PREFIX) and f.stat().st_mtime < cutoff:
                ours.append(f)
        pycache = self.directory / "__pycache__"
        if pycache.is_dir():
            ours.extend(f for f in pycache.iterdir() if _NUMBA_FILE.match(f.name))
        return ours

    # -- explaining misses ---------------------------------------------------------------------

    def _explain_miss(self, digest: str, key: KernelKey, source: str) -> str:
        """Compare the missed key with the cached keys of the kernel of the same name."""
        head = f"kernel cache miss for `{key.name}` (entry {digest[:12]}): "
        cached = [c for c in self._sidecars() if c.get("name") == key.name]
        if not cached:
            return head + f"no kernel named `{key.name}` is cached in {self.directory}"
        wanted = key.as_dict()
        changes = min((_key_changes(c["key"], wanted) for c in cached), key=len)
        if changes:
            return head + "; ".join(changes)
        return head + ("its key is unchanged but its generated source changed: the key misses an "
                       "input of the code generator, or the generator is not deterministic")

    def _sidecars(self) -> list[dict[str, Any]]:
        found = []
        for f in self.directory.glob("*.json"):
            if _ENTRY.match(f.name):
                try:
                    found.append(json.loads(f.read_text()))
                except (OSError, ValueError):
                    continue
        return found

    # -- statistics across processes -----------------------------------------------------------

    def _record_stats(self) -> None:
        """At exit, append this process's counts to the directory's statistics log (one short
        O_APPEND write, so concurrent processes do not interleave)."""
        now = self.stats()
        if self.refused is not None or not (now.hits or now.misses or now.corrupt):
            return
        line = json.dumps({"hits": now.hits, "misses": now.misses, "corrupt": now.corrupt}) + "\n"
        try:
            fd = os.open(self.directory / _STATS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return
        with os.fdopen(fd, "a") as f:
            f.write(line)

    def _recorded_stats(self) -> dict[str, int]:
        totals = {"hits": 0, "misses": 0, "corrupt": 0, "processes": 0}
        try:
            lines = (self.directory / _STATS_FILE).read_text().splitlines()
        except OSError:
            return totals
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            totals["processes"] += 1
            for name in ("hits", "misses", "corrupt"):
                totals[name] += int(record.get(name, 0))
        return totals


def _key_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`field: old -> new` for each key field that differs (options compared one by one)."""
    changes = []
    for name in (f.name for f in fields(KernelKey)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes.extend(f"{name}.{k}: {before.get(k)!r} -> {after.get(k)!r}"
                           for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k))
        else:
            changes.append(f"{name}: {_show_change(before, after)}")
    return changes


def _show_change(before: Any, after: Any) -> str:
    """Short values in full; long ones (CPU features) as the tokens that differ."""
    if len(str(before)) + len(str(after)) <= 80:
        return f"{before!r} -> {after!r}"
    old, new = set(re.split(r"[ ,]", str(before))), set(re.split(r"[ ,]", str(after)))
    shown = sorted(new - old)[:6] + [f"(was {t})" for t in sorted(old - new)[:6]]
    return "changed: " + " ".join(shown)


# -- the process's caches and the CLI ----------------------------------------------------------

_caches: dict[Path, KernelCache] = {}
_caches_lock = threading.Lock()


def default_cache() -> KernelCache:
    """The cache of the directory `TFJIT_CACHE_DIR` names now (one per directory)."""
    directory = default_directory()
    with _caches_lock:
        if directory not in _caches:
            _caches[directory] = KernelCache(directory)
        return _caches[directory]


def cli(argv: list[str]) -> int:
    """`tfjit cache info` and `tfjit cache clear`."""
    parser = argparse.ArgumentParser(prog="tfjit cache", description="show or clear the kernel cache")
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--dir", help="the cache directory (default: TFJIT_CACHE_DIR, else ~/.cache/tfjit)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = KernelCache(args.dir)
    if cache.refused is not None:
        print(f"tfjit cache: {caught[0].message if caught else cache.refused}", file=sys.stderr)
        return 1
    if args.action == "clear":
        print(f"removed {cache.clear()} files from {cache.directory}")
        return 0
    info = cache.info()
    print(f"directory: {info.directory}")
    print(f"entries:   {info.entries} kernels, {info.total_bytes / 2**20:.2f} MiB with numba's compiled code")
    if info.bad_entries:
        print(f"damaged:   {info.bad_entries} entries (they are rewritten when next used)")
    print(f"recorded:  {info.hits} hits, {info.misses} misses, {info.corrupt} corrupt "
          f"over {info.processes} processes")
    return 0
