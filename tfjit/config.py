"""Process-wide compiler settings (`tfjit.config`): optimisation level and switched-off passes.

Levels: 0 runs only what execution needs (fastest compile), 1 adds the cleanup passes,
2 (the default) adds fusion. `TFJIT_OPT_LEVEL` sets the level for a whole process and
`TFJIT_BACKEND` (numba, the default | reference | numba_cuda) the backend. The debug modes `check_numerics`
and `set_differential` (or `TFJIT_CHECK_NUMERICS=1`, `TFJIT_DIFFERENTIAL=1`) take effect at the
next run: Session and @tfjit.function recompile when a setting changes (`execution_key`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


BACKENDS = ("reference", "numba", "numba_cuda")  # numba_cuda: backends/numba_cuda (issue 8)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass
class CompilerConfig:
    optimization_level: int = field(default_factory=lambda: int(os.environ.get("TFJIT_OPT_LEVEL", "2")))
    disabled_passes: set[str] = field(default_factory=set)
    backend: str = field(default_factory=lambda: os.environ.get("TFJIT_BACKEND", "numba"))
    check_numerics: bool = field(default_factory=lambda: _env_flag("TFJIT_CHECK_NUMERICS"))
    differential: bool = field(default_factory=lambda: _env_flag("TFJIT_DIFFERENTIAL"))


current = CompilerConfig()


def set_optimization_level(level: int) -> None:
    if level not in (0, 1, 2):
        raise ValueError(f"optimization level must be 0, 1 or 2, got {level}")
    current.optimization_level = level


def execution_key() -> tuple[str, bool, bool, int, frozenset[str]]:
    """The settings a compiled program depends on: a cached program is reused only under the
    same ones (switching backend or a debug mode recompiles)."""
    return (current.backend, current.check_numerics, current.differential, current.optimization_level,
            frozenset(current.disabled_passes))


def set_backend(name: str) -> None:
    """'numba' (generated CPU kernels, the default), 'reference' (NumPy, op by op: the oracle
    and the debugging backend) or 'numba_cuda' (generated CUDA kernels on a GPU placement; the
    rest on the host)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    current.backend = name


def check_numerics(enabled: bool) -> None:
    """Run compiled programs kernel by kernel and fail at the first NaN or inf a kernel produces,
    naming its op, its user line and whether it is forward or backward (slow: debugging only)."""
    current.check_numerics = bool(enabled)


def set_differential(enabled: bool) -> None:
    """Run each numba kernel and the reference backend side by side and fail at the first
    kernel whose results differ beyond tolerance (slow: debugging only)."""
    current.differential = bool(enabled)


def compile_graph(graph):  # type: ignore[no-untyped-def]
    """An executable of `graph` on the current backend (wrapped in a checker only when a debug
    mode is on, so normal runs pay nothing for the modes)."""
    if current.backend == "numba":
        from .backends.numba_cpu.executable import compile_graph as numba_compile

        executable = numba_compile(graph)
    elif current.backend == "numba_cuda":  # issue 8; raises clearly without a GPU or the simulator
        from .backends.numba_cuda.executable import compile_graph as cuda_compile
        executable = cuda_compile(graph)
    else:
        from .backends.reference import compile_graph as reference_compile

        executable = reference_compile(graph)
    if current.check_numerics or current.differential:
        from .backends.debug_modes import with_checks

        return with_checks(executable, numerics=current.check_numerics, differential=current.differential)
    return executable


def disable_pass(name: str) -> None:
    current.disabled_passes.add(name)


def enable_pass(name: str) -> None:
    current.disabled_passes.discard(name)


def pass_manager(allow_soft_placement: bool = False):  # type: ignore[no-untyped-def]
    """A pass manager with the current settings (what Session and functions use)."""
    from .passes.manager import PassManager

    return PassManager(level=current.optimization_level, disabled=frozenset(current.disabled_passes),
                       overrides={"place": placement(allow_soft_placement)})


def placement(allow_soft_placement: bool = False):  # type: ignore[no-untyped-def]
    """The placement pass for the current backend: with numba_cuda and a GPU (or the CUDA
    simulator) there is a GPU device, and nodes without a scope go to it when it has a kernel."""
    from .passes.place import Place

    if current.backend != "numba_cuda":
        return Place(allow_soft_placement=allow_soft_placement,
                     no_device_hint=" (GPU devices need tfjit.config.set_backend('numba_cuda'))")
    from .backends.numba_cuda import placement as cuda

    if not cuda.gpu_available():
        return Place(allow_soft_placement=allow_soft_placement,
                     no_device_hint=" (numba.cuda.is_available() is False: no CUDA GPU or driver; "
                                    "NUMBA_ENABLE_CUDASIM=1 before numba is imported runs the simulator)")
    return cuda.gpu_placement(allow_soft_placement)


def optimize(graph):  # type: ignore[no-untyped-def]
    """Run the pass pipeline with the current settings."""
    return pass_manager().run(graph)
