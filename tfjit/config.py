"""Process-wide compiler settings (`tfjit.config`): optimisation level and switched-off passes.

Levels: 0 runs only what execution needs (fastest compile), 1 adds the cleanup passes,
2 (the default) adds fusion. `TFJIT_OPT_LEVEL` sets the level for a whole process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class CompilerConfig:
    optimization_level: int = field(default_factory=lambda: int(os.environ.get("TFJIT_OPT_LEVEL", "2")))
    disabled_passes: set[str] = field(default_factory=set)


current = CompilerConfig()


def set_optimization_level(level: int) -> None:
    if level not in (0, 1, 2):
        raise ValueError(f"optimization level must be 0, 1 or 2, got {level}")
    current.optimization_level = level


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
