"""One measuring process: one system, one or more workloads, one round.

Per workload: set up, make the first call (set-up plus first call = time to first
result, which includes tracing and compiling), check the result against the oracle,
then warm up and time each of `repeat` calls alone. Records are rewritten to the
output file after every workload, so a crash or a timeout keeps what was measured.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from . import check, load
from .systems import SYSTEMS, Prepared, System
from .workloads import WORKLOADS, Inputs, Workload

Record = dict[str, Any]
# What an adapter raises for a feature its system lacks (tfjit's TF-style error is
# UnimplementedError): reported as unsupported, not as an error.
UNSUPPORTED = (ImportError, NotImplementedError, AttributeError)


def classify(exc: BaseException) -> tuple[str, str]:
    unsupported = isinstance(exc, UNSUPPORTED) or type(exc).__name__ == "UnimplementedError"
    lines = str(exc).strip().splitlines() or [""]
    return ("unsupported" if unsupported else "error"), f"{type(exc).__name__}: {lines[0]}"[:300]


def fail(rec: Record, exc: BaseException) -> Record:
    rec["status"], rec["reason"] = classify(exc)
    if rec["status"] == "error":
        rec["traceback"] = traceback.format_exc(limit=-8)
    return rec


def load_arrays(path: Path) -> Inputs:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def time_calls(step: Callable[[], Any], repeat: int, warmup: int) -> tuple[list[float], float]:
    """Milliseconds of each of `repeat` calls after `warmup` untimed ones, and the share
    of the CPUs other processes took meanwhile."""
    for _ in range(warmup):
        step()
    gc.collect()
    samples, before = [], load.sample()
    for _ in range(repeat):
        start = time.perf_counter_ns()
        step()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples, load.foreign_share(before, load.sample())


def first_call(mod: ModuleType, system: System, w: Workload, inputs: Inputs,
               size: dict, device: str, rec: Record) -> tuple[Prepared, Any]:
    """Set up and make the first call; returns the set-up workload and its result."""
    copies = {k: v.copy() for k, v in inputs.items()}   # adapters may update in place
    start = time.perf_counter()
    prepared = mod.prepare(w, copies, size, device, **system.options)
    ready = time.perf_counter()
    out = prepared.step()
    done = time.perf_counter()
    rec.update(setup_s=ready - start, first_step_s=done - ready, first_call_s=done - start)
    return prepared, out


def measure(mod: ModuleType, system: System, w: Workload, args: argparse.Namespace,
            rec: Record) -> Record:
    if not system.implements(w.name) or w.name not in mod.BUILDERS:
        return {**rec, "status": "n/a", "reason": "no adapter for this workload"}
    inputs = load_arrays(args.data / f"{w.name}.inputs.npz")
    ref = load_arrays(args.data / f"{w.name}.ref.npz")
    size, params = w.sizes[args.preset], w.params(inputs)
    try:
        prepared, out = first_call(mod, system, w, inputs, size, args.device, rec)
        rec["errors"] = check.compare(prepared.fetch(out), ref, inputs, params)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return fail(rec, exc)
    if not check.passes(rec["errors"], params):
        return {**rec, "status": "wrong", "reason": "result differs from the NumPy oracle"}
    try:
        rec["samples_ms"], rec["foreign_load"] = time_calls(prepared.step, args.repeat,
                                                             args.warmup)
    except Exception as exc:  # noqa: BLE001
        return fail(rec, exc)
    return {**rec, "status": "ok"}


def import_system(system: System) -> tuple[ModuleType | None, dict]:
    start = time.perf_counter()
    try:
        mod = importlib.import_module(f"{__package__}.systems.{system.module}")
    except Exception as exc:  # noqa: BLE001 - a broken install is a result too
        status, reason = classify(exc)
        return None, {"status": status, "reason": reason, "traceback": traceback.format_exc()}
    return mod, {"import_s": time.perf_counter() - start, "version": mod.VERSION}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    p.add_argument("--workloads", required=True, help="comma-separated")
    p.add_argument("--preset", default="full")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    system = SYSTEMS[args.system]
    mod, info = import_system(system)
    records: list[Record] = []
    for i, name in enumerate(args.workloads.split(",")):
        rec = {"system": system.name, "workload": name, "device": args.device,
               "round": args.round, "fresh_process": i == 0, **info}
        if mod is not None:
            rec = measure(mod, system, WORKLOADS[name], args, rec)
        records.append(rec)
        args.out.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
