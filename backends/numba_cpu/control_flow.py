"""`while` and `cond` on the numba backend: their sub-graphs compiled once, run as generated steps.

The ops' references (tfjit/ops/control_flow.py) compile their sub-graphs for the reference
backend on every call and run them node by node in NumPy, so a dynamic_rnn on this backend
ran no generated kernel at all. Here a loop's condition and body (and a cond's branches) are
fused and built into executables of this backend once, with the plan; the loop itself is a
plain Python loop calling their step functions, carrying the loop variables in a list, and
copying each per-iteration value into a preallocated [iterations, ...] buffer sized by the
previous call's trip count (doubling when a call runs longer), so no per-iteration list of
arrays is kept alive and stacked at the end.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Graph, Node
from tfjit.ir.types import TensorType
from tfjit.runtime.state import RuntimeState

FIRST_CAPACITY = 16  # iterations a loop's first call makes room for before growing


def build(node: Node, compile_graph: Callable[[Graph], Any]) -> Any:
    """The kernel running a `while` or `cond` node with its sub-graphs compiled by `compile_graph`."""
    if node.op == "while":
        return WhileKernel(node, compile_graph)
    return CondKernel(node, compile_graph)


def prepared(graph: Graph) -> Graph:
    """A sub-graph as the pipeline leaves top-level graphs: softmax decomposed, scattered
    reductions split, kernels fused. (The pipeline's other passes already ran inside bodies:
    passes/nested.py.)"""
    from tfjit.passes.decompose import decompose
    from tfjit.passes.fuse import fuse
    from tfjit.passes.split_reductions import split_reductions

    return fuse(split_reductions(decompose(graph)))


class WhileKernel:
    """Runs a `while` node: `kernel(*operands, state=...) -> (*loop variables, *stacked values)`."""

    needs_state = True
    returns_tuple = True

    def __init__(self, node: Node, compile_graph: Callable[[Graph], Any]):
        body: Graph = node.attr("body")
        self.carried: int = node.attr("carried")
        self.test = compile_graph(prepared(node.attr("cond")))
        self.body = compile_graph(prepared(body))
        self.stacked_types = [r.type for r in body.results[self.carried:]]
        self.inners = {"cond": self.test, "body": self.body}
        self._trips = FIRST_CAPACITY  # a hint only: the last call's trip count

    def __call__(self, *operands: np.ndarray, state: RuntimeState) -> tuple[np.ndarray, ...]:
        carried = self.carried
        variables, invariants = list(operands[:carried]), list(operands[carried:])
        test, body = self.test.run, self.body.run
        stacks = [_Stack(t, self._trips) for t in self.stacked_types]
        trips = 0
        while bool(test(variables + invariants, state)[0]):
            out = body(variables + invariants, state)
            variables = out[:carried]
            for stack, value in zip(stacks, out[carried:]):
                stack.append(value)
            trips += 1
        self._trips = max(trips, 1)
        return (*variables, *(s.result() for s in stacks))


class _Stack:
    """Per-iteration values of one type copied into a growing [n, ...] buffer."""

    def __init__(self, t: TensorType, capacity: int):
        self.type = t
        self.capacity = capacity
        self.buffer: np.ndarray | None = None
        self.count = 0

    def append(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if self.buffer is None:
            self.buffer = np.empty((self.capacity, *value.shape), value.dtype)
        elif value.shape != self.buffer.shape[1:]:
            raise ValueError(f"a while body's per-iteration value changed shape from {list(self.buffer.shape[1:])} "
                             f"to {list(value.shape)} at iteration {self.count}; they are stacked, so all "
                             f"iterations must give the same shape")
        if self.count == len(self.buffer):
            grown = np.empty((2 * len(self.buffer), *value.shape), value.dtype)
            grown[:self.count] = self.buffer
            self.buffer = grown
        self.buffer[self.count] = value
        self.count += 1

    def result(self) -> np.ndarray:
        if self.buffer is None:
            dims = self.type.shape if self.type.shape is not None else ()
            return np.zeros((0, *(d if isinstance(d, int) else 0 for d in dims)), self.type.dtype.np_dtype)
        return self.buffer if self.count == len(self.buffer) else self.buffer[:self.count]


class CondKernel:
    """Runs a `cond` node: `kernel(pred, *operands, state=...) -> the taken branch's results`."""

    needs_state = True
    returns_tuple = True

    def __init__(self, node: Node, compile_graph: Callable[[Graph], Any]):
        self.then = compile_graph(prepared(node.attr("then_branch")))
        self.otherwise = compile_graph(prepared(node.attr("else_branch")))
        self.inners = {"then_branch": self.then, "else_branch": self.otherwise}

    def __call__(self, pred: np.ndarray, *operands: np.ndarray, state: RuntimeState) -> tuple[np.ndarray, ...]:
        branch = self.then if bool(pred) else self.otherwise
        return tuple(branch.run(list(operands), state))
