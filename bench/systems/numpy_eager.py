"""NumPy eager: the workloads as a user without a JIT writes them (numpy_models.py)."""
from __future__ import annotations

import numpy as np

from ..numpy_models import MODELS
from ..workloads import Inputs, Size, Workload
from . import Prepared, numpy_fetch

BUILDERS = MODELS
VERSION = np.__version__


def prepare(w: Workload, inputs: Inputs, size: Size, device: str) -> Prepared:
    state = {k: v.copy() for k, v in inputs.items()}
    model = MODELS[w.name]
    fetch = numpy_fetch(state, w.params(inputs))
    return Prepared(step=lambda: model(state, size), fetch=fetch)
