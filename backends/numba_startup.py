"""numba's one-time start-up in a process, without the parts tfjit's kernels never use.

A first call pays numba's start-up once per process; three parts of it serve features the
generated kernels do not have (measured on a first call of the MLP training step):

- Before its first compilation numba imports all of its typing and lowering registries. One,
  `numba.np.arraymath`, imports scipy.linalg while it is imported, only to learn whether
  `np.dot` may call BLAS (0.08-0.2 s: scipy.linalg pulls in numpy.f2py and scipy's array API
  layer). `before_first_compile` imports that module with the question answered by whether
  scipy is installed. A function that does use `np.dot` still imports scipy.linalg when it is
  compiled (numba.np.linalg's own check, left as it is).
- Code loaded from numba's cache links against numba's hash-secret symbols, which numba
  defines when `numba.cpython.hashing` is imported (11 ms, with its random-number module).
  `define_hash_secret` defines the same symbols from the same CPython struct.
- Typing an array argument asks whether it is a `numpy.ma.MaskedArray`, and so imports
  numpy.ma (15 ms) on the process's first call with each new array type. Where numpy.ma was
  never imported no masked array can exist, so `install` types arrays without asking then.
- Before each compilation (and each load from its cache) numba initialises its extensions,
  whose first time reads the entry points of every installed package (3-12 ms of a first call,
  measured): extensions type other objects than the NumPy arrays and scalars kernels take, so
  tfjit's kernels skip it (`skip_extensions`); the user's own numba functions still run it.
- numba's compiler allocates so many objects that Python's cyclic garbage collector ran ~150
  times during the MLP step's four kernel compiles, once over every object of the process (a
  full collection): 0.11-0.29 s of a cold first call on the (heavily) loaded machine, against
  0.04-0.08 s with the collector held while tfjit's kernels compile (5 interleaved runs each).
  The compile's garbage is collected when it ends (the next allocations collect the young
  objects, mostly the compile's).
- Each compilation first refreshes numba's CPU context, whose first refresh imports and installs
  the implementations of every feature numba has (typed containers, random generators,
  polynomials, jitclasses, datetimes, complex math, strings...; 35-40 ms of a first call,
  measured). While one of tfjit's functions compiles (its kernels and their helpers), the
  refresh loads only what kernels use (`KERNEL_MODULES`); any other compilation gets numba's
  whole refresh, which then loads the rest.

Each step falls back to numba's own way where numba's internals differ from these (another
numba version): it can then cost time, never change a result.
"""
from __future__ import annotations

import ctypes
import dis
import gc
import importlib
import importlib.util
import sys
from typing import Any

from numba.core import errors, event, types
from numba.core.typing import typeof as numba_typeof
from numba.np import numpy_support

_installed = False


def install() -> None:
    """Set up the trimmed start-up for this process (once; cheap)."""
    global _installed
    if _installed:
        return
    _installed = True
    event.register("numba:compile", _FirstCompile())
    _type_arrays_without_numpy_ma()
    from numba.core.cpu import CPUContext

    _refresh_kernel_registries_only(CPUContext)


class _FirstCompile(event.Listener):
    """Runs `before_first_compile` when numba starts its first compilation, before its
    registries are loaded; counts the compilations in progress started by tfjit's functions
    (numba compiles under one lock, and a kernel's helpers compile inside the kernel's), and
    pauses Python's cyclic garbage collector while they run (`_pause_gc`)."""

    def on_start(self, ev: event.Event) -> None:
        global _tfjit_compiles
        before_first_compile()
        if _tfjit_compiles or _is_tfjit(ev.data):
            if not _tfjit_compiles:
                _pause_gc()
            _tfjit_compiles += 1

    def on_end(self, ev: event.Event) -> None:
        global _tfjit_compiles
        if _tfjit_compiles:
            _tfjit_compiles -= 1
            if not _tfjit_compiles:
                _resume_gc()


_tfjit_compiles = 0  # compilations in progress that a tfjit function started
_gc_was_enabled = False


def _pause_gc() -> None:
    """Hold Python's cyclic garbage collector while a kernel compiles (see the module's docstring)."""
    global _gc_was_enabled
    _gc_was_enabled = gc.isenabled()
    gc.disable()


def _resume_gc() -> None:
    if _gc_was_enabled:
        gc.enable()


def _is_tfjit(data: Any) -> bool:
    """Whether the compilation event's function is one of tfjit's CPU functions (a generated
    kernel's module or the package's own; a GPU kernel's compile keeps numba's refresh)."""
    from numba.core.registry import cpu_target

    dispatcher = (data or {}).get("dispatcher")
    if getattr(dispatcher, "targetdescr", None) is not cpu_target:
        return False
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    return module.startswith(("_tfjit_kernel_", "tfjit."))


def skip_extensions(dispatcher: Any) -> None:
    """Compile and load `dispatcher`, a tfjit kernel, without initialising numba's extensions
    first (see the module's docstring); nothing changes where numba has no such hook."""
    if hasattr(dispatcher, "_compilation_chain_init_hook"):
        dispatcher._compilation_chain_init_hook = _no_extensions


def _no_extensions() -> None:
    """A kernel's stand-in for numba's `entrypoints.init_all`."""


def before_first_compile() -> None:
    """Import numba.np.arraymath without importing scipy.linalg (see the module's docstring)."""
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
    except ImportError:
        return
    check = getattr(linalg, "ensure_blas", None)
    if check is None:
        return
    linalg.ensure_blas = _scipy_is_installed
    try:
        import numba.np.arraymath  # noqa: F401 - it binds ensure_blas while being imported
    finally:
        linalg.ensure_blas = check


def _scipy_is_installed() -> None:
    """numba's `ensure_blas` minus the import: raises ImportError where scipy is missing."""
    if importlib.util.find_spec("scipy") is None:
        raise ImportError("scipy 0.16+ is required for linear algebra")


class _HashSecret(ctypes.Structure):
    """The leading members of CPython's `_Py_HashSecret_t` union that numba reads (siphash's
    two keys; djbx33a's suffix after 16 bytes of padding)."""

    _fields_ = [("k0", ctypes.c_uint64), ("k1", ctypes.c_uint64), ("djbx33a_suffix", ctypes.c_size_t)]


_secret_values: list[Any] = []  # the symbols point into these, so they must stay alive


def define_hash_secret() -> None:
    """Define numba's `_numba_hashsecret_*` symbols as `numba.cpython.hashing` does (the same
    names and values), without importing it; nothing to do once it is imported."""
    if "numba.cpython.hashing" in sys.modules or _secret_values:
        return
    try:
        import llvmlite.binding as llvm

        secret = _HashSecret.in_dll(ctypes.pythonapi, "_Py_HashSecret")
    except (ImportError, ValueError, AttributeError):
        import numba.cpython.hashing  # noqa: F401 - numba's own way
        return
    for name in ("djbx33a_suffix", "siphash_k0", "siphash_k1"):
        value = ctypes.c_uint64(getattr(secret, name.replace("siphash_", "")))
        _secret_values.append(value)
        llvm.add_symbol(f"_numba_hashsecret_{name}", ctypes.addressof(value))


def array_type(val: Any) -> Any:
    """numba's type of the array `val`, as numba's rule for arrays gives it, minus that rule's
    masked-array check."""
    try:
        dtype = numpy_support.from_dtype(val.dtype)
    except errors.NumbaNotImplementedError:
        raise errors.NumbaValueError(f"Unsupported array dtype: {val.dtype}") from None
    layout = numpy_support.map_layout(val)
    return types.Array(dtype, val.ndim, layout, readonly=not val.flags.writeable)


def _type_arrays_without_numpy_ma() -> None:
    numba_rule = numba_typeof.typeof_impl.dispatch(numpy_support.np.ndarray)

    def typeof_array(val: Any, c: Any) -> Any:
        """numba's rule while numpy.ma is imported (a masked array may exist), else `array_type`."""
        return numba_rule(val, c) if "numpy.ma" in sys.modules else array_type(val)

    numba_typeof.typeof_impl.register(numpy_support.np.ndarray)(typeof_array)


# What numba's `CPUContext.load_additional_registries` imports (numba 0.68); where it
# imports anything else, its own refresh runs for every compilation.
NUMBA_IMPORTS = frozenset("""
    ClassBuilder arraymath arrayobj builtins cffiimpl charseq cmathimpl datetime_registry dictimpl
    enumimpl function_type gdb_hook generator_core generator_methods hashing heapq inline_closurecall
    iterators jitclass legacy linalg listobj listobject literal mathimpl ndarray npdatetime npyimpl
    numbers optional polynomial_core polynomial_functions printimpl randomimpl rangeobj setobj
    setobject slicing tupleobj typeddict typedlist typedset unicode""".split())
# The part of them the generated kernels use: arrays and their NumPy functions and ufuncs,
# numbers, math, ranges, tuples, slices.
KERNEL_MODULES = (
    "numba.cpython.builtins", "numba.cpython.iterators", "numba.cpython.numbers", "numba.cpython.rangeobj",
    "numba.cpython.slicing", "numba.cpython.tupleobj", "numba.core.optional", "numba.core.inline_closurecall",
    "numba.np.arraymath", "numba.np.arrayobj", "numba.np.npyimpl", "numba.cpython.mathimpl",
    "numba.np.unsafe.ndarray",
)


def _refresh_kernel_registries_only(context_class: type) -> None:
    """Replaces numba's `context_class.load_additional_registries` with one that loads only
    `KERNEL_MODULES` while tfjit compiles; leaves one that imports other modules than numba's
    (another numba version, or one already replaced) as it is."""
    numba_load = context_class.load_additional_registries
    if _imported_names(numba_load) != NUMBA_IMPORTS:
        return

    def load_additional_registries(self: Any) -> None:
        """numba's loading of its registries; while tfjit compiles, only `KERNEL_MODULES`."""
        if not _tfjit_compiles:
            return numba_load(self)
        from numba.core.runtime import rtsys

        rtsys.initialize(self)
        for name in KERNEL_MODULES:
            importlib.import_module(name)
        from numba.cpython import mathimpl
        from numba.np import npyimpl

        # numba's own registries of these two, then any installed before (numba puts the lowering
        # of every @intrinsic it types into the first registry installed, whichever that is)
        for registry in (mathimpl.registry, npyimpl.registry, *self._registries):
            self.install_registry(registry)

    context_class.load_additional_registries = load_additional_registries  # type: ignore[method-assign]


def _imported_names(function: Any) -> frozenset[str]:
    """The names `function` imports from modules (`from m import a, b`)."""
    try:
        return frozenset(i.argval for i in dis.get_instructions(function) if i.opname == "IMPORT_FROM")
    except TypeError:
        return frozenset()
