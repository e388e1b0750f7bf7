"""Where a tfjit step spends its time: each kernel of the compiled plan timed alone.

    python -m bench.profile cnn_train_step [--size full] [--runs 20] [--top 25]

Builds the workload in session style (as `tfjit bench` does), runs it a few times to
compile and warm up, then runs the plan kernel by kernel (`run_each`) and prints, per
kernel, its median time, its share of the summed kernel time, the op (the fused body's
ops for a fused kernel) and its output shapes. Kernel-by-kernel timing adds a little
per-kernel overhead and loses overlap between kernels, so the sum exceeds the step's
own time somewhat; the step's median is printed alongside for scale.
"""
from __future__ import annotations

import argparse
import functools
import time
from collections import Counter
from typing import Any

import numpy as np

from tfjit.ir.graph import Node

from .systems import tfjit_adapter
from .workloads import WORKLOADS, make_inputs


def describe(node: Node) -> str:
    if node.op != "fused":
        return node.op
    ops = Counter(n.op for n in node.attr("body").nodes if n.op not in ("param", "constant"))
    body = " ".join(f"{op}x{k}" if k > 1 else op for op, k in ops.most_common(6))
    return f"fused:{node.attr('kind')} [{body}]"


def plans_of(prepared: Any) -> list[Any]:
    """Every compiled plan of the workload's session."""
    session = next(c.cell_contents for c in prepared.step.__closure__ or ()
                   if type(c.cell_contents).__name__ == "Session")
    return [exe for exe, _ in session._cache.values() if hasattr(exe, "run_each")]


def profile(workload: str, size: str, runs: int) -> tuple[list[tuple[float, Node]], float]:
    """Per kernel of the plans a step runs: its median milliseconds; and the step's median."""
    w = WORKLOADS[workload]
    inputs = make_inputs(w, size, 0)
    prepared = tfjit_adapter.prepare(w, inputs, w.sizes[size], "cpu", style="session")
    for _ in range(3):
        prepared.step()
    step_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        prepared.step()
        step_ms.append((time.perf_counter() - start) * 1e3)
    times: dict[Node, list[float]] = {}

    def visit(node: Node, inputs: list[np.ndarray], call: Any) -> tuple[Any, ...]:
        start = time.perf_counter()
        out = call()
        times.setdefault(node, []).append((time.perf_counter() - start) * 1e3)
        return out

    plans = plans_of(prepared)
    for exe in plans:  # an instance attribute shadows the method while profiling
        exe.run = functools.partial(exe.run_each, visit=visit)
    try:
        for _ in range(runs):
            prepared.step()
    finally:
        for exe in plans:
            del exe.run
    rows = [(float(np.median(t)), n) for n, t in times.items()]
    return sorted(rows, key=lambda r: -r[0]), float(np.median(step_ms))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--size", default="full")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    rows, step = profile(args.workload, args.size, args.runs)
    total = sum(t for t, _ in rows)
    print(f"{args.workload}: step median {step:.3f} ms; {len(rows)} kernels summing to {total:.3f} ms")
    for t, node in rows[:args.top]:
        shapes = " ".join(str(tuple(ty.shape)) for ty in node.types)
        print(f"{t:9.3f} ms {100 * t / total:5.1f}%  {describe(node)[:90]}  -> {shapes}")


if __name__ == "__main__":
    main()
