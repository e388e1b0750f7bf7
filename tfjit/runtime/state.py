"""Runtime state that outlives one run: variable values and random-stream counters.

Variables are updated in place when that is safe. A variable's array is stored read-only, so
any value derived from it (a read, a view through reshape or identity, an op's result that is
the input itself) is read-only too and `Session.run` hands the user a copy. An update writes
into the old array only when nothing but the store references it: a read still needed later
in the run (a fetched result, a value kept for a backward op), a view of it, a snapshot taken
by a checker or another thread's run in flight all hold a reference, and the update then
builds a fresh array instead, leaving theirs unchanged. Reads and updates take one lock, so
no thread reads an array while another writes into it.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Sequence

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
        self._variables_lock = threading.Lock()

    def read(self, name: str) -> np.ndarray:
        with self._variables_lock:
            return self._stored(name)

    def _stored(self, name: str) -> np.ndarray:
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
        with self._variables_lock:
            self.variables[name] = value
            self.device_variables.pop(name, None)
        return value

    def update(self, name: str, value: np.ndarray, combine: np.ufunc | None = None) -> np.ndarray:
        """Make `combine(old, value)` (or `value`, cast, when `combine` is None) the variable's
        value and return the stored array.

        The result goes into the old array when it has the old shape and nothing else holds
        the old array (see the module docstring), else into a fresh one. Shapes are checked
        before anything is written, so a failing update leaves the variable intact.
        """
        with self._variables_lock:
            old = self._stored(name)
            self.device_variables.pop(name, None)  # the host copy becomes the value
            shape = value.shape if combine is None or value.shape == old.shape else \
                np.broadcast_shapes(old.shape, value.shape)  # (3 us a call: not for the usual equal shapes)
            # References to `old`: the store's dict, this frame's local, getrefcount's argument.
            if shape == old.shape and old.base is None and sys.getrefcount(old) == _ONLY_THE_STORE:
                old.setflags(write=True)
                try:
                    _combine_into(old, old, value, combine)
                finally:
                    old.setflags(write=False)
                return old
            new = np.empty(shape, old.dtype)
            _combine_into(new, old, value, combine)
            new.setflags(write=False)
            self.variables[name] = new
            return new

    def update_together(self, names: Sequence[str], like: Sequence[tuple[tuple[int, ...], np.dtype]],
                        keep: Sequence[bool], write: Callable[[list[np.ndarray]], None]) -> list[np.ndarray] | None:
        """Apply `write(arrays)`, which writes each named variable's new value into its array
        (reading the old value there where `keep` says so), and return the stored arrays: a
        variable's old array when nothing else holds it (see the module docstring), else a
        fresh one (a copy of the old value where kept). None, with nothing written, when some
        variable is uninitialised or not a C-ordered array of its (shape, dtype) in `like`
        (the caller then updates them one by one, through `update` and `write`)."""
        with self._variables_lock:
            targets = []
            for name, (shape, dtype), kept in zip(names, like, keep):
                if not self.is_initialized(name):
                    return None
                old = self._stored(name)
                if old.shape != shape or old.dtype != dtype or not old.flags.c_contiguous:
                    return None
                # References to `old`: the store's dict, this frame's local, getrefcount's argument.
                alone = old.base is None and sys.getrefcount(old) == _ONLY_THE_STORE
                targets.append(old if alone else old.copy() if kept else np.empty_like(old))
            for name in names:
                self.device_variables.pop(name, None)  # the host copy becomes the value
            for t in targets:
                t.setflags(write=True)
            try:
                write(targets)
            finally:
                for t in targets:
                    t.setflags(write=False)
            self.variables.update(zip(names, targets))
            return targets

    def write_device(self, name: str, value: Any) -> None:
        """Make `value` (a device-resident value with `to_host()`) the variable's value."""
        with self._variables_lock:
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


_ONLY_THE_STORE = 3


def _combine_into(out: np.ndarray, old: np.ndarray, value: np.ndarray, combine: np.ufunc | None) -> None:
    """out = combine(old, value) (or value), computed as NumPy would and cast to out's dtype."""
    if combine is None:
        np.copyto(out, value, casting="unsafe")
    else:
        combine(old, value, out=out, casting="unsafe")
