"""Observers of compilation: `tfjit dump` registers one to print every program as it is built."""
from __future__ import annotations

from typing import Callable

from ..ir.graph import Graph

ON_COMPILE: list[Callable[[Graph], None]] = []


def notify_compiled(graph: Graph) -> None:
    for hook in ON_COMPILE:
        hook(graph)
