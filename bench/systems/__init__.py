"""The systems compared, and the small interface every adapter implements.

An adapter module exposes `prepare(workload, inputs, size, device, **options)`
returning a `Prepared`, and `BUILDERS`, the workloads it implements. Adapter modules
import their framework at the top, so only the worker process measuring a system ever
imports it; the parent reads this registry alone.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Prepared:
    """A workload set up on one system.

    `step()` runs one call and returns only once its result is ready (synchronised),
    in the system's native form; `fetch(result)` turns that result, plus a training
    step's current parameters, into NumPy arrays for the check. Fetching is never timed.
    """

    step: Callable[[], Any]
    fetch: Callable[[Any], dict[str, np.ndarray]]


@dataclass(frozen=True)
class System:
    name: str
    module: str                           # adapter module in this package
    package: str                          # import name whose presence enables it
    devices: tuple[str, ...] = ("cpu",)
    workloads: tuple[str, ...] | None = None   # None: every workload
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def implements(self, workload: str) -> bool:
        return self.workloads is None or workload in self.workloads


# numba's OpenMP threads spin-wait by default, which makes back-to-back kernels slow
# (DESIGN.md); tfjit runs numba kernels too.
_PASSIVE = {"OMP_WAIT_POLICY": "passive"}
# tfjit is measured on its compiled (numba) backend unless TFJIT_BACKEND says otherwise.
_TFJIT = {**_PASSIVE, "TFJIT_BACKEND": os.environ.get("TFJIT_BACKEND", "numba")}
ELEMENTWISE = ("gelu_chain", "softmax_rows", "layernorm")

SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("tfjit_session", "tfjit_adapter", "tfjit", ("cpu", "gpu"),
           options={"style": "session"}, env=_TFJIT),
    System("tfjit_function", "tfjit_adapter", "tfjit", ("cpu", "gpu"),
           options={"style": "function"}, env=_TFJIT),
    System("numpy", "numpy_eager", "numpy"),
    System("numba", "numba_kernels", "numba", workloads=ELEMENTWISE,
           env=_PASSIVE),
    System("jax", "jax_jit", "jax", ("cpu", "gpu")),
    System("tf_function", "tensorflow_adapter", "tensorflow",
           ("cpu", "gpu"), options={"jit_compile": False}),
    System("tf_xla", "tensorflow_adapter", "tensorflow",
           ("cpu", "gpu"), options={"jit_compile": True}),
    System("torch", "torch_adapter", "torch", ("cpu", "gpu"),
           options={"compile": False}),
    System("torch_compile", "torch_adapter", "torch", ("cpu", "gpu"),
           options={"compile": True}),
]}

TFJIT_SYSTEMS = ("tfjit_session", "tfjit_function")


def numpy_fetch(params: dict[str, np.ndarray], names: tuple[str, ...]
                ) -> Callable[[dict[str, Any]], dict[str, np.ndarray]]:
    """A fetch for adapters whose results and parameters are NumPy-convertible."""
    def fetch(out: dict[str, Any]) -> dict[str, np.ndarray]:
        got = {k: np.array(v, dtype=np.float32) for k, v in out.items()}
        got.update({k: np.array(params[k], dtype=np.float32) for k in names})
        return got
    return fetch
