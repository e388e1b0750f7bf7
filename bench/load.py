"""How much of the machine other processes take: the caveat on every figure.

On a shared machine (a developer's box running tests, a CI runner) the benchmark's
timings are only as clean as the CPUs were free. The machine-wide busy time in
/proc/stat minus this process's own CPU time (and that of its reaped children) is what
others took; the harness records it for every timed section, and waits for a quieter
moment before each process when asked to.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

Sample = tuple[float, float, float]     # (wall, machine busy CPU-s, our CPU-s)


def our_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def sample() -> Sample:
    ours = our_cpu_seconds()
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:                                # not Linux: count as a quiet machine
        return time.monotonic(), ours, ours
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return time.monotonic(), busy, ours


def foreign_share(before: Sample, after: Sample) -> float:
    """Share of all CPUs' time between the samples that other processes used."""
    wall = max(after[0] - before[0], 1e-9)
    other = (after[1] - before[1]) - (after[2] - before[2])
    return min(max(other / (wall * (os.cpu_count() or 1)), 0.0), 1.0)


def wait_for_quiet(limit: float, max_wait_s: float) -> float:
    """Sleep until others use under `limit` of the CPUs (1 s samples), at most
    `max_wait_s`; returns the seconds waited."""
    waited = 0.0
    while waited < max_wait_s:
        before = sample()
        time.sleep(1.0)
        if foreign_share(before, sample()) < limit:
            break
        waited += 1.0
    return waited
