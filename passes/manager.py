"""The pass manager: runs the pipeline, verifying, timing and dumping after each pass.

The pipeline is a flat list of named passes, each a pure `Graph -> Graph` with a one-line
reason and the lowest optimisation level that runs it (O0 keeps only what execution needs).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from tfjit.ir.graph import Graph
from tfjit.ir.printer import print_graph
from tfjit.ir.verifier import verify

from .cse import cse
from .dce import dce
from .decompose import decompose
from .fold_constants import fold_constants
from .fuse import fuse
from .merge_matmuls import merge_matmuls
from .nested import in_bodies
from .place import Place
from .plan_memory import plan_memory
from .simplify import simplify
from .split_reductions import split_reductions


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph], Graph]
    reason: str
    level: int = 1  # runs at this optimisation level and above


PIPELINE: tuple[Pass, ...] = (
    # in_bodies: these also run inside the branches and loop bodies of cond/while nodes.
    Pass("fold_constants", in_bodies(fold_constants),
         "compute what depends only on constants once, at compile time"),
    Pass("simplify", in_bodies(simplify),
         "drop exact no-ops (x*1, x+0, identity, double negation, same-dtype casts)"),
    Pass("cse", in_bodies(cse), "compute each pure expression once"),
    Pass("dce", in_bodies(dce), "drop what neither the results nor a state write needs", level=0),
    Pass("decompose", decompose, "spell softmax, log_softmax, softmax cross-entropy and logsumexp as max-exp-sum "
                                 "steps so they fuse into one row kernel", level=2),
    Pass("cse_decomposed", cse, "compute once what decompose spelled twice (a softmax cross-entropy and its "
                                "gradient share max, exp and sum), so both fuse into one row kernel", level=2),
    Pass("place", Place(), "give every node a device (after decompose: the steps are what runs); colocate "
                           "updates with variables; copy across devices", level=0),
    Pass("split_reductions", split_reductions, "reduce scattered axes on the CPU block by block, each block a "
                                               "row or column kernel", level=2),
    Pass("merge_matmuls", merge_matmuls, "run independent matmuls sharing their right operand (an unrolled RNN's "
                                         "input projections) as one large matmul", level=2),
    Pass("fuse", fuse, "turn chains of elementwise ops, reductions with their producers and consumers, "
                       "matmul epilogues and variable updates into single kernels", level=2),
    Pass("plan_memory", plan_memory, "reuse the buffers of dead intermediates and write in place", level=0),
)


class PassError(RuntimeError):
    """A pass failed; says which pass, what ran before it, and the node when known."""


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassManager:
    """Runs `PIPELINE` at `level`, minus `disabled`; `verify_each` checks the IR after each pass."""

    level: int = 2
    disabled: frozenset[str] = frozenset()
    # Configured replacements for pipeline passes by name, e.g. {"place": Place(allow_soft_placement=True)}.
    overrides: dict[str, Callable[[Graph], Graph]] = field(default_factory=dict)
    verify_each: bool = field(default_factory=lambda: os.environ.get("TFJIT_VERIFY", "") == "1")
    dump_after: frozenset[str] = field(default_factory=lambda: _dump_from_env())
    dump_to: TextIO | None = None  # default: sys.stderr at the time of the dump
    records: list[PassRecord] = field(default_factory=list)
    history: list[tuple[str, Graph]] = field(default_factory=list)

    def passes(self) -> list[Pass]:
        unknown = self.disabled - {p.name for p in PIPELINE}
        if unknown:
            raise ValueError(f"unknown pass(es) {sorted(unknown)}; the pipeline has {[p.name for p in PIPELINE]}")
        chosen = [p for p in PIPELINE if p.level <= self.level and p.name not in self.disabled]
        return [Pass(p.name, self.overrides.get(p.name, p.run), p.reason, p.level) for p in chosen]

    def run(self, graph: Graph) -> Graph:
        self.history = [("input", graph)]
        done: list[str] = []
        for p in self.passes():
            start = time.perf_counter()
            try:
                out = p.run(graph)
                if self.verify_each:
                    verify(out)
            except Exception as e:
                ran = ", ".join(done) or "none"
                raise PassError(f"pass `{p.name}` failed on @{graph.name} (passes before it: {ran}): {e}") from e
            self.records.append(PassRecord(p.name, time.perf_counter() - start, len(graph.nodes), len(out.nodes)))
            self.history.append((p.name, out))
            done.append(p.name)
            if p.name in self.dump_after or "all" in self.dump_after:
                print(f"// after {p.name}\n{print_graph(out)}", file=self.dump_to or sys.stderr)
            graph = out
        return graph


def _dump_from_env() -> frozenset[str]:
    """TFJIT_DUMP=after:fuse,after:dce (or after:all) dumps the IR after those passes."""
    spec = os.environ.get("TFJIT_DUMP", "")
    return frozenset(part.split(":", 1)[1] for part in spec.split(",") if part.startswith("after:"))


def optimize(graph: Graph, level: int = 2, disabled: frozenset[str] = frozenset()) -> Graph:
    return PassManager(level=level, disabled=disabled).run(graph)
