"""Runtime state that outlives one run: variable values and random-stream counters."""
from __future__ import annotations

import numpy as np

from ..errors import FailedPreconditionError


class RuntimeState:
    """What a Session owns: each variable's current value and each random op's draw count."""

    def __init__(self) -> None:
        self.variables: dict[str, np.ndarray] = {}
        self._draws: dict[tuple[int, int], int] = {}

    def read(self, name: str) -> np.ndarray:
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
        return value

    def is_initialized(self, name: str) -> bool:
        return name in self.variables

    def random_generator(self, seed: int, seed2: int) -> np.random.Generator:
        """A Philox stream for op (seed, seed2): the n-th run of the op gets the n-th block.

        Counter-based, so a stream depends only on (seed, seed2, n), never on other ops.
        """
        n = self._draws.get((seed, seed2), 0)
        self._draws[(seed, seed2)] = n + 1
        key = (int(seed) & 0xFFFFFFFF) << 32 | (int(seed2) & 0xFFFFFFFF)
        return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, 0, n]))
