"""Debug modes: a compiled plan run kernel by kernel under a checker (`tfjit.config`).

- check_numerics: the first kernel whose floating-point result holds a NaN or inf fails the
  run with an InvalidArgumentError naming the op, the node, the user's line and the pass the
  node belongs to (forward, backward: under a `gradients` name scope, or optimizer update:
  under an `update_<var>` scope). A fused kernel is narrowed to the first member of its body
  that produces a NaN or inf, found by replaying the body on the reference backend. Values
  inside a fused kernel are seen only through the kernel's results (as the plan computes
  them); optimization level 1 (no fusion) checks every value.
- differential (numba backend only): each kernel's results, and the variables it assigns,
  are compared with the reference backend's on the same inputs; the first kernel that differs
  beyond tolerance fails the run with a KernelMismatchError (a fused kernel is compared as a
  whole, against its body run on the reference backend).

`config.compile_graph` wraps an executable only while a mode is on, so normal runs keep the
generated step function and pay nothing for the modes.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Sequence

import numpy as np

from tfjit.errors import InvalidArgumentError, OpError, where
from tfjit.ir.graph import Graph, Node, Value
from tfjit.ir.types import TensorType, as_dtype
from tfjit.ops.registry import get_op
from tfjit.runtime.state import RuntimeState

from . import reference

Call = Callable[[], tuple[Any, ...]]
Visit = Callable[[Node, list[np.ndarray], Call], tuple[Any, ...]]

# (rtol, atol) of the differential check: |kernel - reference| <= atol + rtol * |reference|.
TOLERANCES = {np.dtype(np.float16): (4e-3, 1e-3),  # a few float16 ulps (numba computes in float32)
              np.dtype(np.float32): (1e-4, 1e-5),
              np.dtype(np.float64): (1e-10, 1e-10)}
_BACKWARD_SCOPE = re.compile(r"gradients(_\d+)?")  # tf.gradients' default scope, uniquified
_WRITES = frozenset({"assign", "assign_add", "assign_sub"})
# Stateful ops that may run a second time on a scratch copy of the variables (no draws, no queues).
_REPLAYABLE = _WRITES | {"variable", "is_variable_initialized", "no_op"}


class KernelMismatchError(OpError):
    """A kernel's results differ from the reference backend's: a bug in the compiled backend."""


def with_checks(executable: Any, numerics: bool, differential: bool) -> Any:
    """`executable` under the checks that apply to it, or itself when none does."""
    differential = differential and hasattr(executable, "run_each")  # the reference is its own oracle
    if not (numerics or differential):
        return executable
    return CheckedExecutable(executable, numerics, differential)


class CheckedExecutable:
    """Runs an executable's plan node by node, checking every node's results as it goes."""

    def __init__(self, inner: Any, numerics: bool, differential: bool):
        self.inner = inner
        self.graph: Graph = inner.graph
        self.numerics = numerics
        self.differential = differential
        # Per node: does it assign variables, may it run again on scratch state (walks bodies once).
        self._facts = {node: (_writes(node), _replayable(node)) for node in self.graph.nodes}

    def run(self, args: Sequence[np.ndarray], state: RuntimeState) -> list[np.ndarray]:
        if self.numerics:
            _check_feeds(self.graph, args)
        visit = functools.partial(self._visit, state=state)
        if hasattr(self.inner, "run_each"):
            return self.inner.run_each(args, state, visit)
        return run_each(self.graph, args, state, visit)

    def _visit(self, node: Node, inputs: list[np.ndarray], call: Call, state: RuntimeState) -> tuple[Any, ...]:
        writes, replayable = self._facts[node]
        before = dict(state.variables) if writes else state.variables  # the variables as the node finds them
        compare = self.differential and replayable
        scratch = _scratch_state(before) if compare else None
        expected = _replay(node, inputs, scratch) if scratch is not None else None
        outputs = _named_errors(node, call)
        if compare:
            _compare(node, outputs, expected, state, scratch if writes else None)
        if self.numerics:
            _check_numerics(node, inputs, outputs, before, state if writes else None)
        return outputs


def run_each(graph: Graph, args: Sequence[np.ndarray], state: RuntimeState, visit: Visit) -> list[np.ndarray]:
    """Run `graph` node by node on the reference backend, each node through `visit`."""
    env: dict[Value, Any] = dict(zip(graph.params, args))
    for node in graph.nodes:
        inputs = [env[v] for v in node.inputs]
        outputs = visit(node, inputs, functools.partial(reference._call, node, get_op(node.op), inputs, state))
        env.update(zip(node.outputs, outputs))
    return [env[v] for v in graph.results]


def phase(node: Node) -> str:
    """Which pass of a training step `node` belongs to, read from its name scopes."""
    scopes = (node.name or "").split("/")
    if any(_BACKWARD_SCOPE.fullmatch(s) for s in scopes):
        return "backward"
    if any(s.startswith("update_") for s in scopes[:-1]):
        return "optimizer update"
    return "forward"


def kernel_phase(node: Node) -> str:
    """A fused kernel's passes are its members' (one kernel may hold forward and backward code)."""
    if node.op != "fused":
        return phase(node)
    return " and ".join(dict.fromkeys(phase(m) for m in node.attr("body").nodes)) or phase(node)


# -- running nodes

def _named_errors(node: Node, call: Call) -> tuple[Any, ...]:
    """Run `call`, naming the node and the user's line in any error (as the step function does)."""
    try:
        return call()
    except OpError as e:
        if e.node_def is not None:
            raise
        raise type(e)(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e.message}") from None
    except AssertionError:  # a tfjit bug (the reference backend's type checks): keep it loud
        raise
    except Exception as e:
        raise InvalidArgumentError(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e}") from e


def _sub_nodes(node: Node) -> list[Node]:
    """`node` and every node in the sub-graphs it holds (fused bodies, cond branches, loop bodies)."""
    found = [node]
    for _, value in node.attrs:
        if isinstance(value, Graph):
            found += [m for n in value.nodes for m in _sub_nodes(n)]
    return found


def _writes(node: Node) -> bool:
    return any(n.op in _WRITES for n in _sub_nodes(node))


def _replayable(node: Node) -> bool:
    """Nodes that may run again on scratch state: random draws and host objects may not."""
    return all(not get_op(n.op).stateful or n.op in _REPLAYABLE or n.op in ("fused", "cond", "while")
               for n in _sub_nodes(node))


def _scratch_state(variables: dict[str, np.ndarray]) -> RuntimeState:
    """A state holding `variables` whose assignments leave the real state alone (both stores
    reference each array, so neither updates it in place: runtime/state.py)."""
    scratch = RuntimeState()
    scratch.variables = dict(variables)
    return scratch


def _replay(node: Node, inputs: list[np.ndarray], scratch: RuntimeState) -> tuple[Any, ...] | Exception:
    """The reference backend's results for `node`, or what it raised."""
    try:
        return reference._call(node, get_op(node.op), inputs, scratch)
    except Exception as e:
        return e


# -- check_numerics

def _bad_counts(value: Any) -> tuple[int, int] | None:
    """(NaN count, inf count) of a floating-point value with any of them, else None."""
    a = np.asarray(value)
    if a.dtype.kind not in "fc" or np.isfinite(a).all():
        return None
    return int(np.count_nonzero(np.isnan(a))), int(np.count_nonzero(np.isinf(a)))


def _first_bad(outputs: Sequence[Any]) -> tuple[int, tuple[int, int]] | None:
    for index, value in enumerate(outputs):
        counts = _bad_counts(value)
        if counts is not None:
            return index, counts
    return None


def _check_feeds(graph: Graph, args: Sequence[np.ndarray]) -> None:
    for param, value in zip(graph.params, args):
        counts = _bad_counts(value)
        if counts is not None:
            node = param.node
            raise InvalidArgumentError(node, node.op, f"check_numerics: the value fed for {node.name}:0 "
                                                      f"({where(node.op, node.loc)}): {_had(counts, param.type)}")


def _check_numerics(node: Node, inputs: list[np.ndarray], outputs: tuple[Any, ...],
                    before: dict[str, np.ndarray], state: RuntimeState | None) -> None:
    """The node's results, and the variables it assigned (`state` after a writing node: an
    update kernel that also computes the gradient returns nothing), must be finite."""
    bad = _first_bad(outputs)
    assigned = _assigned(node, state) if bad is None and state is not None else []
    bad_var = _first_bad([value for _, value in assigned])
    if bad is None and bad_var is None:
        return
    member = _bad_member(node, inputs, before) if node.op == "fused" else None
    if member is None and bad is None:
        var, value = assigned[bad_var[0]]
        raise InvalidArgumentError(node, node.op, f"check_numerics: {where(node.op, node.loc)} ({node.name}), "
                                                  f"{kernel_phase(node)} pass: variable {var} "
                                                  f"{_had(bad_var[1], TensorType(as_dtype(value.dtype), value.shape))}")
    culprit, (index, counts) = member or (node, bad)
    inside = f" in kernel {node.name}" if culprit is not node else ""
    raise InvalidArgumentError(culprit, culprit.op,
                               f"check_numerics: {where(culprit.op, culprit.loc)} ({culprit.name}{inside}), "
                               f"{kernel_phase(culprit)} pass: output {index} {_had(counts, culprit.types[index])}")


def _assigned(node: Node, state: RuntimeState) -> list[tuple[str, np.ndarray]]:
    """The variables `node` assigns, as they are after it ran."""
    names = dict.fromkeys(n.attr("var") for n in _sub_nodes(node) if n.op in _WRITES)
    return [(var, state.variables[var]) for var in names if var in state.variables]


def _had(counts: tuple[int, int], ttype: TensorType) -> str:
    """TF's words ('Tensor had NaN values') with the counts."""
    nan, inf = counts
    kind = "Inf and NaN" if nan and inf else "NaN" if nan else "Inf"
    return f"({ttype}): Tensor had {kind} values ({nan} NaN, {inf} inf)"


class _Found(Exception):
    def __init__(self, node: Node, bad: tuple[int, tuple[int, int]]):
        super().__init__(node.name)
        self.node, self.bad = node, bad


def _bad_member(kernel: Node, inputs: list[np.ndarray], before: dict[str, np.ndarray]) -> tuple[Node, Any] | None:
    """The first node of a fused kernel's body whose result holds a NaN or inf on the reference
    backend (None when the body may not rerun or the reference has none: then the kernel is named)."""
    if not _replayable(kernel):
        return None

    def stop_at_bad(node: Node, args: list[np.ndarray], call: Call) -> tuple[Any, ...]:
        outputs = call()
        bad = _first_bad(outputs)
        if bad is not None:
            raise _Found(node, bad)
        return outputs

    try:
        run_each(kernel.attr("body"), inputs, _scratch_state(before), stop_at_bad)
    except _Found as found:
        return found.node, found.bad
    except Exception:  # the reference fails where the kernel did not: name the kernel itself
        return None
    return None


# -- differential

def _compare(node: Node, outputs: tuple[Any, ...], expected: Any, state: RuntimeState,
             assigned: RuntimeState | None) -> None:
    if isinstance(expected, Exception):
        _mismatch(node, f"the reference backend raised {type(expected).__name__}: {expected}; the kernel did not")
    for index, (got, want) in enumerate(zip(outputs, expected)):
        problem = _difference(np.asarray(got), np.asarray(want))
        if problem:
            _mismatch(node, f"output {index} ({node.types[index]}) {problem}")
    if assigned is not None:
        _compare_assigned(node, state, assigned)


def _compare_assigned(node: Node, state: RuntimeState, scratch: RuntimeState) -> None:
    """The variables an update kernel assigned must hold what the reference assigned."""
    for var in dict.fromkeys(n.attr("var") for n in _sub_nodes(node) if n.op in _WRITES):
        problem = _difference(state.variables[var], scratch.variables[var])
        if problem:
            _mismatch(node, f"variable {var} after the update {problem}")


def _mismatch(node: Node, what: str) -> None:
    raise KernelMismatchError(node, node.op, f"differential check: kernel {node.name} ({where(node.op, node.loc)}, "
                                             f"{kernel_phase(node)} pass) differs from the reference backend: {what}")


def _difference(got: np.ndarray, want: np.ndarray) -> str | None:
    """How `got` differs from `want` beyond the dtype's tolerance, or None."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"is {got.dtype}{list(got.shape)}, the reference gives {want.dtype}{list(want.shape)}"
    rtol, atol = TOLERANCES.get(want.dtype, (0.0, 0.0))
    if want.dtype.kind not in "fc":
        close = got == want
    else:
        close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    return _error_summary(got, want, close, rtol, atol)


def _error_summary(got: np.ndarray, want: np.ndarray, close: np.ndarray, rtol: float, atol: float) -> str:
    with np.errstate(all="ignore"):
        g, w = got.astype(np.float64), want.astype(np.float64)
        abs_err = np.where(close, 0.0, np.abs(g - w))
        rel_err = np.where(close, 0.0, abs_err / np.abs(w))
    worst = np.unravel_index(int(np.argmax(np.nan_to_num(abs_err, nan=np.inf))), got.shape)
    return (f"{int(np.count_nonzero(~close))} of {got.size} values differ; max abs error "
            f"{np.nanmax(abs_err):.3g}, max rel error {np.nanmax(rel_err):.3g} (at index {tuple(map(int, worst))}: "
            f"kernel {got[worst]!r}, reference {want[worst]!r}; rtol={rtol:g}, atol={atol:g})")
