"""Where a first call's time goes: set-up plus first step of one workload in a fresh process,
split into phases (tfjit's tracing and passes, numba's typing and lowering, LLVM's passes and
code generation, numba's start-up, cache reads and writes, BLAS).

    python -m bench.first_call mlp_train_step [--style function] [--warm] [--runs 3] [--profile F]

Each run is a new process with the benchmark's environment (tfjit_adapter, full size). Cold
runs start on empty caches (tfjit's kernel cache and numba's, in a temporary folder); `--warm`
fills them with one unmeasured run first. A phase is the time inside the named functions
minus the time in nested phases, so the phases add up to the whole; the names are numba's
and llvmlite's internals (numba 0.68), and a phase whose function is missing stays empty.
`--profile F` writes a cProfile of the (last) measured run to F.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

# (module, qualified name, phase): innermost wins; several functions may share a phase.
PHASES = [
    ("tfjit.compat.session", "Session._compile", "tfjit: passes and plan"),
    ("tfjit.config", "optimize", "tfjit: passes and plan"),
    ("tfjit.config", "compile_graph", "tfjit: passes and plan"),
    ("tfjit.trace.function", "Function._trace", "tfjit: trace (function style)"),
    ("numba.core.dispatcher", "Dispatcher._compile_for_args", "numba: dispatch"),
    ("tfjit.backends.kernel_cache", "KernelCache._load_module", "kernel cache: write and import source"),
    ("numba.core.compiler_machinery", "PassManager.run", "numba: IR passes"),
    ("numba.core.typed_passes", "type_inference_stage", "numba: typing"),
    ("numba.core.lowering", "Lower.lower_normal_function", "numba: lowering"),
    ("numba.core.callwrapper", "PyCallWrapper.build", "numba: lowering"),
    ("numba.core.codegen", "CPUCodeLibrary.add_ir_module", "llvm: parse and link"),
    ("numba.core.codegen", "CPUCodeLibrary._optimize_functions", "llvm: function passes"),
    ("numba.core.codegen", "CPUCodeLibrary._optimize_final_module", "llvm: module passes"),
    ("numba.core.codegen", "CPUCodeLibrary._finalize_final_module", "llvm: code generation"),
    ("numba.core.caching", "Cache.save_overload", "numba: cache write"),
    ("tfjit.backends.kernel_cache", "_load_without_refresh", "numba: cache read"),
    ("tfjit.backends.kernel_cache", "_initialize_runtime", "numba: runtime (NRT)"),
    ("numba.core.base", "BaseContext.refresh", "numba: start-up (registries)"),
    ("numba.core.typing.context", "BaseContext.refresh", "numba: start-up (registries)"),
    ("numba.core.entrypoints", "init_all", "numba: start-up (extensions)"),
    ("tfjit.backends.numba_startup", "before_first_compile", "numba: start-up (imports)"),
    ("tfjit.backends.numba_cpu.blas", "_gemm", "BLAS"),
]


class Timer:
    """Exclusive wall time per phase of the wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list[Any]] = []

    def enter(self, phase: str) -> None:
        now = time.perf_counter()
        if self._stack:
            self._charge(now)
        self._stack.append([phase, now])

    def leave(self) -> None:
        now = time.perf_counter()
        self._charge(now)
        self._stack.pop()
        if self._stack:
            self._stack[-1][1] = now

    def _charge(self, now: float) -> None:
        phase, since = self._stack[-1]
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - since

    def wrap(self, module: str, qualname: str, phase: str) -> bool:
        """Time the function `qualname` of `module` as `phase`; False where it is missing."""
        found = resolve(module, qualname)
        if found is None:
            return False
        owner, name, inner = found

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(phase)
            try:
                return inner(*args, **kwargs)
            finally:
                self.leave()
        setattr(owner, name, timed)
        return True


def resolve(module: str, qualname: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute name, function) of `qualname` in `module`, or None where it is missing."""
    try:
        owner: Any = importlib.import_module(module)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        return owner, name, getattr(owner, name)
    except (ImportError, AttributeError):
        return None


def child(workload: str, style: str, profile: str | None) -> dict[str, Any]:
    """One first call in this process; the phases' seconds."""
    from .systems import tfjit_adapter
    from .workloads import WORKLOADS, make_inputs

    timer = Timer()
    for module, qualname, phase in PHASES:
        timer.wrap(module, qualname, phase)
    w = WORKLOADS[workload]
    inputs = make_inputs(w, "full", 0)
    run: Callable[[], Any] = lambda: tfjit_adapter.prepare(w, inputs, w.sizes["full"], "cpu", style).step()  # noqa: E731
    timer.enter("other (graph building, the step's Python)")
    start = time.perf_counter()
    if profile:
        import cProfile
        cProfile.runctx("run()", globals(), {"run": run}, profile)
    else:
        run()
    total = time.perf_counter() - start
    timer.leave()
    return {"total": total, "phases": timer.seconds}


def measure(workload: str, style: str, warm: bool, profile: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tfjit-first-call-") as tmp:
        env = dict(os.environ, TFJIT_BACKEND=os.environ.get("TFJIT_BACKEND", "numba"), OMP_WAIT_POLICY="passive",
                   TFJIT_CACHE_DIR=os.path.join(tmp, "tfjit"), NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))
        module = __spec__.name if __spec__ else "bench.first_call"
        cmd = [sys.executable, "-m", module, workload, "--style", style, "--child"]
        for i in range(2 if warm else 1):
            last = i == (1 if warm else 0)
            done = subprocess.run(cmd + (["--profile", profile] if profile and last else []), env=env,
                                  capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload")
    p.add_argument("--style", choices=["session", "function"], default="session")
    p.add_argument("--warm", action="store_true", help="measure with the caches filled by an earlier process")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile", help="write a cProfile of the last run to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.workload, args.style, args.profile)))
        return 0
    runs = [measure(args.workload, args.style, args.warm, args.profile) for _ in range(args.runs)]
    runs.sort(key=lambda r: r["total"])
    median = runs[len(runs) // 2]
    print(f"{args.workload}, {args.style} style, {'warm' if args.warm else 'cold'} first call: "
          f"median {median['total']:.3f} s of {[round(r['total'], 3) for r in runs]} (phases of the median run)")
    for phase, seconds in sorted(median["phases"].items(), key=lambda kv: -kv[1]):
        print(f"  {1e3 * seconds:7.1f} ms  {phase}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
