"""Runtime state that outlives one run: variable values and random-stream counters."""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from ..errors import FailedPreconditionError


class RuntimeState:
    """What a Session owns: each variable's current value, each random op's draw count and
    the host objects (queues, dataset iterators) its stateful host ops keep between runs.

    A variable placed on a device keeps its value there between runs (`device_variables`:
    backend objects with a `to_host()`); its host copy is made only when a host reader asks.
    """

    def __init__(self) -> None:
        self.variables: dict[str, np.ndarray] = {}
        self.device_variables: dict[str, Any] = {}
        self._draws: dict[tuple[int, int], int] = {}
        self.resources: dict[str, Any] = {}
        self._lock = threading.Lock()

    def read(self, name: str) -> np.ndarray:
        if name not in self.variables and name in self.device_variables:
            value = self.device_variables[name].to_host()
            value.setflags(write=False)
            self.variables[name] = value
        try:
            return self.variables[name]
        except KeyError:
            raise FailedPreconditionError(
                message=f"Attempting to use uninitialized value {name}. "
                        "Run tf.global_variables_initializer() (or the variable's initializer) first."
            ) from None

    def write(self, name: str, value: np.ndarray) -> np.ndarray:
        """Store `value` (which the caller hands over) read-only, so no reader can mutate it."""
        value.setflags(write=False)
        self.variables[name] = value
        self.device_variables.pop(name, None)
        return value

    def write_device(self, name: str, value: Any) -> None:
        """Make `value` (a device-resident value with `to_host()`) the variable's value."""
        self.device_variables[name] = value
        self.variables.pop(name, None)

    def resource(self, name: str, create: Callable[[], Any]) -> Any:
        """The host object named `name`, made by `create()` on first use (once, even when two
        threads ask at the same time)."""
        with self._lock:
            found = self.resources.get(name)
            if found is None:
                found = self.resources[name] = create()
            return found

    def cancel_resources(self) -> None:
        """Wake every op blocked on a host object (the session is closing): they fail."""
        for res in list(self.resources.values()):
            cancel = getattr(res, "cancel", None)
            if cancel is not None:
                cancel()

    def is_initialized(self, name: str) -> bool:
        return name in self.variables or name in self.device_variables

    def random_generator(self, seed: int, seed2: int) -> np.random.Generator:
        """A Philox stream for op (seed, seed2): the n-th run of the op gets the n-th block.

        Counter-based, so a stream depends only on (seed, seed2, n), never on other ops.
        """
        with self._lock:  # threads may run one random op at once: each draw its own block
            n = self._draws.get((seed, seed2), 0)
            self._draws[(seed, seed2)] = n + 1
        key = (int(seed) & 0xFFFFFFFF) << 32 | (int(seed2) & 0xFFFFFFFF)
        return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, 0, n]))
