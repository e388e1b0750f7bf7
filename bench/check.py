"""The correctness gate: every result is compared with the float64 NumPy oracle before
anything is timed, and a wrong answer is reported as wrong, never timed.

The error of an output is its max abs difference scaled by the reference's max abs
value. For a training step the updated weights are compared as *updates* (new - old):
the update is ~1e-4 of the weight, so comparing the weights themselves would pass
even with a wrong gradient.
"""
from __future__ import annotations

import math

import numpy as np

from .workloads import Inputs

TOLERANCE = 1e-3          # outputs and losses, float32 vs the float64 oracle
# A float32 weight rounds its update to ulp(weight) ~ 6e-8 |w|, which can be a few
# 1e-4 of a small update, so updates get a looser bound; a wrong gradient is O(1) off.
UPDATE_TOLERANCE = 2e-2


def error(got: np.ndarray, ref: np.ndarray) -> float:
    """max|got - ref| / max|ref|; inf for a missing, misshapen or non-finite result."""
    got = np.asarray(got, dtype=np.float64)
    if got.size != ref.size:
        return math.inf
    diff = np.abs(got.reshape(ref.shape) - ref).max(initial=0.0)
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-30)
    value = float(diff / scale)
    return value if math.isfinite(value) else math.inf


def compare(got: dict[str, np.ndarray], ref: Inputs, init: Inputs,
            params: tuple[str, ...]) -> dict[str, float]:
    """The error of every reference output (and updated parameter) in `got`."""
    errors = {}
    for name, expected in ref.items():
        if name not in got:
            errors[name] = math.inf
        elif name in params:
            start = init[name].astype(np.float64)
            errors[name] = error(np.asarray(got[name], np.float64) - start, expected - start)
        else:
            errors[name] = error(got[name], expected)
    return errors


def passes(errors: dict[str, float], params: tuple[str, ...]) -> bool:
    return all(err <= (UPDATE_TOLERANCE if name in params else TOLERANCE)
               for name, err in errors.items())
