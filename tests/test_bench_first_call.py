"""bench/first_call.py: its phases add up to the whole, and every function it times exists."""
from __future__ import annotations

import itertools

import pytest

from tfjit.bench import first_call


def test_a_phase_excludes_the_time_of_phases_nested_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.count()  # each reading of the clock one second later
    monkeypatch.setattr(first_call.time, "perf_counter", lambda: float(next(clock)))
    timer = first_call.Timer()
    timer.enter("outer")      # t=0
    timer.enter("inner")      # t=1: outer 1
    timer.leave()             # t=2: inner 1
    timer.enter("inner")      # t=3: outer 2
    timer.leave()             # t=4: inner 2
    timer.leave()             # t=5: outer 3
    assert timer.seconds == {"outer": 3.0, "inner": 2.0}


def test_every_timed_function_exists() -> None:
    missing = [f"{m}:{q}" for m, q, _ in first_call.PHASES if first_call.resolve(m, q) is None]
    assert not missing, f"rename these in bench/first_call.py's PHASES: {missing}"
