"""The machine's limits, measured in the same run as the workloads: sustained memory
bandwidth (parallel numba copy and triad, STREAM's byte counting) and peak float32
matmul throughput (NumPy's BLAS). Each workload's lower bound is
max(bytes / bandwidth, flops / peak). Runs in its own process, like a system.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

# preset -> (floats per stream array, matmul n)
SIZES = {"full": (2**25, 2048), "quick": (2**23, 1024), "tiny": (2**20, 256)}


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bandwidth(n: int, repeat: int) -> dict[str, float]:
    """GB/s of copy (2 streams) and triad (3 streams) on arrays far larger than cache."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def copy(a, b):
        for i in prange(a.shape[0]):
            a[i] = b[i]

    @njit(parallel=True, fastmath=True)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = (np.full(n, 1.0, dtype=np.float32) for _ in range(3))   # pages faulted in
    s = np.float32(3.0)
    copy_s = best_seconds(lambda: copy(a, b), repeat)
    triad_s = best_seconds(lambda: triad(a, b, c, s), repeat)
    return {"copy_gbs": 2 * a.nbytes / copy_s / 1e9, "triad_gbs": 3 * a.nbytes / triad_s / 1e9}


def peak_matmul(n: int, repeat: int) -> float:
    """GFLOP/s of an n x n x n float32 matmul into a reused output."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), dtype=np.float32)
    return 2.0 * n**3 / best_seconds(lambda: np.matmul(a, b, out=out), repeat) / 1e9


def measure(preset: str) -> dict[str, float]:
    n, m = SIZES[preset]
    peak = peak_matmul(m, repeat=10)     # first: BLAS threads before numba's exist
    limits = bandwidth(n, repeat=20)
    limits["bandwidth_gbs"] = max(limits["copy_gbs"], limits["triad_gbs"])
    limits["peak_gflops"] = peak
    limits.update(stream_floats=n, matmul_n=m)
    return limits


def describe() -> dict[str, object]:
    """The machine in words, for the report."""
    cpu = platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.startswith("model name"))
        mem = Path("/proc/meminfo").read_text().split()[1]
        mem_gib = round(int(mem) / 2**20, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        mem_gib = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "os": platform.platform(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="full", choices=sorted(SIZES))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.preset)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
