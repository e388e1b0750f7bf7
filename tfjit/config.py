"""Process-wide compiler settings (`tfjit.config`): optimisation level and switched-off passes.

Levels: 0 runs only what execution needs (fastest compile), 1 adds the cleanup passes,
2 (the default) adds fusion. `TFJIT_OPT_LEVEL` sets the level for a whole process and
`TFJIT_BACKEND` (reference | numba) the backend.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


BACKENDS = ("reference", "numba")


@dataclass
class CompilerConfig:
    optimization_level: int = field(default_factory=lambda: int(os.environ.get("TFJIT_OPT_LEVEL", "2")))
    disabled_passes: set[str] = field(default_factory=set)
    backend: str = field(default_factory=lambda: os.environ.get("TFJIT_BACKEND", "reference"))


current = CompilerConfig()


def set_optimization_level(level: int) -> None:
    if level not in (0, 1, 2):
        raise ValueError(f"optimization level must be 0, 1 or 2, got {level}")
    current.optimization_level = level


def set_backend(name: str) -> None:
    """'reference' (NumPy, op by op: the oracle) or 'numba' (generated CPU kernels)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    current.backend = name


def compile_graph(graph):  # type: ignore[no-untyped-def]
    """An executable of `graph` on the current backend."""
    if current.backend == "numba":
        from .backends.numba_cpu.executable import compile_graph as numba_compile

        return numba_compile(graph)
    from .backends.reference import compile_graph as reference_compile

    return reference_compile(graph)


def disable_pass(name: str) -> None:
    current.disabled_passes.add(name)


def enable_pass(name: str) -> None:
    current.disabled_passes.discard(name)


def pass_manager(allow_soft_placement: bool = False):  # type: ignore[no-untyped-def]
    """A pass manager with the current settings (what Session and functions use)."""
    from .passes.manager import PassManager
    from .passes.place import Place

    return PassManager(level=current.optimization_level, disabled=frozenset(current.disabled_passes),
                       overrides={"place": Place(allow_soft_placement=allow_soft_placement)})


def optimize(graph):  # type: ignore[no-untyped-def]
    """Run the pass pipeline with the current settings."""
    return pass_manager().run(graph)
