"""Orchestration: write the inputs and the oracle's results once, measure the machine,
then run every (system, workload) in its own fresh process, interleaved in rounds so
machine drift hits every system alike.

Round 1 starts each system with empty on-disk caches (tfjit's kernel cache, numba's,
JAX's compilation cache, TorchInductor's), so its first call is the cold one; later
rounds reuse them, so theirs is the warm one. Processes run one at a time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .load import wait_for_quiet
from .machine import describe
from .numpy_models import reference
from .systems import SYSTEMS
from .workloads import WORKLOADS, make_inputs, min_bytes

BENCH_DIR = Path(__file__).resolve().parent
# Workers load this folder as a private top-level package instead of `tfjit.bench`,
# so measuring JAX never imports tfjit (nor pays for it, nor breaks with it).
BOOT = ("import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('_tfjit_bench', {init!r}, "
        "submodule_search_locations=[{dir!r}]); "
        "pkg = importlib.util.module_from_spec(spec); sys.modules['_tfjit_bench'] = pkg; "
        "spec.loader.exec_module(pkg); "
        "from _tfjit_bench.{module} import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class Config:
    preset: str = "full"
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS))
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    repeat: int = 20
    warmup: int = 3
    rounds: int = 2
    seed: int = 0
    one_process_per_system: bool = False   # quick mode: all workloads in one process
    timeout_s: float = 900.0
    quiet_load: float = 0.25               # wait while others take more of the CPUs ...
    max_wait_s: float = 0.0                # ... but at most this long per process
    out: Path = BENCH_DIR / "results"
    command: str = "tfjit bench"


@dataclass
class Task:
    round: int
    system: str
    device: str
    workloads: list[str]

    @property
    def label(self) -> str:
        what = self.workloads[0] if len(self.workloads) == 1 else "all"
        return f"r{self.round}-{self.device}-{self.system}-{what}"


def worker_command(module: str, args: list[str]) -> list[str]:
    boot = BOOT.format(init=str(BENCH_DIR / "__init__.py"), dir=str(BENCH_DIR), module=module)
    return [sys.executable, "-c", boot, *args]


def worker_env(system: str, run_dir: Path) -> dict[str, str]:
    """Per-system cache folders (so one system cannot warm another's) and its env."""
    cache = run_dir / "cache" / system
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", BENCH_CACHE_DIR=str(cache / "jax"),
               NUMBA_CACHE_DIR=str(cache / "numba"), TFJIT_CACHE_DIR=str(cache / "tfjit"),
               TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"))
    env.update(SYSTEMS[system].env if system in SYSTEMS else {"OMP_WAIT_POLICY": "passive"})
    return env


def run_process(cmd: list[str], env: dict[str, str], log: Path, timeout_s: float) -> str:
    """Run one worker in its own process group; '' on success, else why it failed."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)    # the worker and any compile helpers
            proc.wait()
            return f"timed out after {timeout_s:.0f} s"
    return "" if code == 0 else f"worker exited with code {code}"


# --- set-up ---------------------------------------------------------------------------

def write_data(config: Config, data_dir: Path) -> dict[str, dict[str, Any]]:
    """Save every workload's inputs and oracle results; return sizes, FLOPs and bytes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    info = {}
    for name in config.workloads:
        w = WORKLOADS[name]
        size = w.sizes[config.preset]
        inputs = make_inputs(w, config.preset, config.seed)
        ref = reference(name, inputs, size, w.params(inputs))
        np.savez(data_dir / f"{name}.inputs.npz", **inputs)
        np.savez(data_dir / f"{name}.ref.npz", **ref)
        out32 = {k: v.astype(np.float32) for k, v in ref.items()}
        info[name] = {"kind": w.kind, "summary": w.summary, "size": dict(size),
                      "flops": w.flops(size), "bytes": min_bytes(w, inputs, out32)}
    return info


def measure_machine(config: Config, run_dir: Path, when: str) -> dict[str, Any]:
    out = run_dir / "raw" / f"machine-{when}.json"
    cmd = worker_command("machine", ["--preset", config.preset, "--out", str(out)])
    why = run_process(cmd, worker_env("machine", run_dir),
                      run_dir / "logs" / f"machine-{when}.log", config.timeout_s)
    return json.loads(out.read_text()) if not why else {"error": why}


def best_limits(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The machine's limits are the best it showed: measured at the start and the end
    of the run, since load from other processes can only lower them."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"runs": runs}
    best = {k: max(r[k] for r in good) for k in ("copy_gbs", "triad_gbs", "bandwidth_gbs",
                                                 "peak_gflops")}
    return {**good[0], **best, "runs": runs}


# --- the plan -------------------------------------------------------------------------

def rotated(items: list[str], by: int) -> list[str]:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def plan(config: Config, runnable: list[str]) -> list[Task]:
    """Rounds of tasks; within a round the system order rotates per workload."""
    tasks = []
    for r in range(1, config.rounds + 1):
        for device in config.devices:
            systems = [s for s in runnable if device in SYSTEMS[s].devices]
            if config.one_process_per_system:
                for s in rotated(systems, r - 1):
                    todo = [w for w in config.workloads if SYSTEMS[s].implements(w)]
                    tasks += [Task(r, s, device, todo)] if todo else []
                continue
            for i, w in enumerate(config.workloads):
                tasks += [Task(r, s, device, [w]) for s in rotated(systems, r - 1 + i)
                          if SYSTEMS[s].implements(w)]
    return tasks


def static_records(config: Config) -> list[dict[str, Any]]:
    """Results known without running anything: absent systems, missing adapters."""
    records = []
    for s in config.systems:
        system = SYSTEMS[s]
        for device in config.devices:
            for w in config.workloads:
                if not system.installed():
                    status, why = "absent", f"{system.package} is not installed"
                elif device not in system.devices:
                    status, why = "n/a", f"no {device} variant"
                elif not system.implements(w):
                    status, why = "n/a", "no adapter for this workload"
                else:
                    continue
                records.append({"system": s, "workload": w, "device": device, "round": 1,
                                "status": status, "reason": why})
    return records


# --- running --------------------------------------------------------------------------

def run_task(task: Task, config: Config, run_dir: Path) -> list[dict[str, Any]]:
    out = run_dir / "raw" / f"{task.label}.json"
    args = ["--system", task.system, "--workloads", ",".join(task.workloads),
            "--preset", config.preset, "--device", task.device, "--repeat", str(config.repeat),
            "--warmup", str(config.warmup), "--round", str(task.round),
            "--data", str(run_dir / "data"), "--out", str(out)]
    waited = wait_for_quiet(config.quiet_load, config.max_wait_s)
    why = run_process(worker_command("worker", args), worker_env(task.system, run_dir),
                      run_dir / "logs" / f"{task.label}.log", config.timeout_s)
    records = json.loads(out.read_text()) if out.exists() else []
    done = {r["workload"] for r in records}
    for w in task.workloads:
        if w not in done:
            records.append({"system": task.system, "workload": w, "device": task.device,
                            "round": task.round, "status": "error",
                            "reason": f"{why or 'no result'} (see logs/{task.label}.log)"})
    for r in records:
        r["waited_for_quiet_s"] = waited
    return records


def progress_line(i: int, n: int, started: float, task: Task, recs: list[dict]) -> str:
    elapsed = time.monotonic() - started
    left = elapsed / i * (n - i)
    parts = []
    for r in recs:
        if r["status"] == "ok":
            median = float(np.median(r["samples_ms"]))
            parts.append(f"{r['workload']} {median:.3g} ms (first {r['first_call_s']:.2f} s)")
        else:
            parts.append(f"{r['workload']} {r['status']}")
    load = max((r.get("foreign_load", 0.0) for r in recs), default=0.0)
    busy = f"  [other processes took {load:.0%} of the CPUs]" if load > 0.05 else ""
    return (f"[{i:3d}/{n}  {elapsed / 60:4.1f} min, ~{left / 60:.1f} left] round {task.round} "
            f"{task.device} {task.system:<14} " + "; ".join(parts) + busy)


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None when there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0] if out.returncode == 0 and names else None


def meta(config: Config, records: list[dict[str, Any]]) -> dict[str, Any]:
    versions = {"numpy": np.__version__}
    for r in records:
        if r.get("version"):
            versions.setdefault(SYSTEMS[r["system"]].package, r["version"])
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": config.command, "preset": config.preset, "repeat": config.repeat,
            "warmup": config.warmup, "rounds": config.rounds, "seed": config.seed,
            "devices": config.devices, "systems": config.systems,
            "workloads": config.workloads,
            "one_process_per_system": config.one_process_per_system,
            "machine": {**describe(), "gpu": gpu_name()}, "versions": versions}


def run(config: Config, log: TextIO = sys.stderr) -> tuple[Path, dict[str, Any]]:
    """Run the whole benchmark; returns the run folder and every raw figure."""
    run_dir = config.out / time.strftime("%Y%m%d-%H%M%S")
    for sub in ("raw", "logs"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    print(f"tfjit bench: writing inputs and reference results to {run_dir}", file=log)
    info = write_data(config, run_dir / "data")
    print("measuring the machine's memory bandwidth and matmul peak ...", file=log)
    machine_runs = [measure_machine(config, run_dir, "start")]
    runnable = [s for s in config.systems if SYSTEMS[s].installed()]
    tasks, records = plan(config, runnable), static_records(config)
    started = time.monotonic()
    for i, task in enumerate(tasks, start=1):
        recs = run_task(task, config, run_dir)
        records += recs
        print(progress_line(i, len(tasks), started, task, recs), file=log, flush=True)
    print("measuring the machine again ...", file=log)
    machine = best_limits(machine_runs + [measure_machine(config, run_dir, "end")])
    for bulky in ("data", "cache"):                        # large, and reproducible
        shutil.rmtree(run_dir / bulky, ignore_errors=True)
    raw = {"meta": meta(config, records), "workloads": info, "machine": machine,
           "records": records}
    return run_dir, raw
