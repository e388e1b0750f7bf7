"""Structured control flow ops holding sub-graphs: `cond` and `while`.

    %r = cond[](%pred, %a, %b)             then_branch / else_branch: (a, b) -> results
    %v, %ys = while[carried=1](%v0, %c)    cond: (v, c) -> bool[];  body: (v, c) -> (v', y)

A branch or body takes the node's operands as its parameters (for a cond, every operand
but the predicate; tensors of the enclosing graph that a branch used are captured as
operands). A while body returns the new value of each of the first `carried` operands (the
loop variables; the rest are loop invariants), then any number of per-iteration values that
the node returns stacked along a new leading axis of the iteration count. Gradients use those
stacked values to keep the forward iterations (tfjit/autodiff/rules_control_flow.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import OpTypeError
from ..ir.graph import Graph, Node
from ..ir.types import Dim, TensorType, bool_, dims_compatible
from ..runtime.state import RuntimeState
from .registry import Fusion, register


def admits(declared: TensorType, actual: TensorType) -> bool:
    """Whether a value of type `actual` may bind a parameter declared as `declared`."""
    if declared.dtype != actual.dtype:
        return False
    if declared.shape is None:
        return True
    if actual.shape is None:
        return False
    return len(declared.shape) == len(actual.shape) and all(
        d is None or dims_compatible(d, a) for d, a in zip(declared.shape, actual.shape))


def merge_types(a: TensorType, b: TensorType) -> TensorType:
    """The most specific type both `a` and `b` are instances of (a cond's result)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return TensorType(a.dtype, None)
    return TensorType(a.dtype, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))


def _types(types: Any) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


def _check_params(graph: Graph, operands: tuple[TensorType, ...], what: str) -> None:
    params = tuple(p.type for p in graph.params)
    if len(params) != len(operands) or not all(admits(p, o) for p, o in zip(params, operands)):
        raise OpTypeError(f"{what} @{graph.name} takes {_types(params)} but is given {_types(operands)}")


# -- cond ----------------------------------------------------------------------------------------
def _cond_rule(in_types: tuple[TensorType, ...], then_branch: Graph, else_branch: Graph) -> tuple[TensorType, ...]:
    if not in_types:
        raise OpTypeError("cond needs a predicate")
    pred = in_types[0]
    if pred.dtype != bool_ or pred.shape not in ((), None):
        raise OpTypeError(f"cond's predicate must be a bool scalar, got {pred}")
    for branch, what in ((then_branch, "then branch"), (else_branch, "else branch")):
        _check_params(branch, in_types[1:], f"cond's {what}")
    then_types = [r.type for r in then_branch.results]
    else_types = [r.type for r in else_branch.results]
    if len(then_types) != len(else_types) or any(a.dtype != b.dtype for a, b in zip(then_types, else_types)):
        raise OpTypeError(f"cond's branches return different types: {_types(then_types)} and {_types(else_types)}")
    return tuple(merge_types(a, b) for a, b in zip(then_types, else_types))


def _cond(pred: np.ndarray, *operands: np.ndarray, then_branch: Graph, else_branch: Graph,
          state: RuntimeState | None = None) -> tuple[np.ndarray, ...]:
    from tfjit.backends.reference import compile_graph

    branch = then_branch if bool(pred) else else_branch
    return tuple(compile_graph(branch).run(list(operands), state or RuntimeState()))


# Stateful so that it gets the runtime state for its branches; passes decide its effects from
# the branches (passes/effects.py), so a pure cond is still folded, merged and dropped.
register("cond", _cond_rule, _cond, Fusion.OPAQUE, stateful=True,
         doc="runs then_branch or else_branch on the operands, as the predicate says")


# -- while ---------------------------------------------------------------------------------------
def stacked_type(t: TensorType) -> TensorType:
    """The type of per-iteration values of type `t` stacked along a new leading axis."""
    return TensorType(t.dtype, None if t.shape is None else (None, *t.shape))


def _while_rule(in_types: tuple[TensorType, ...], cond: Graph, body: Graph, carried: int) -> tuple[TensorType, ...]:
    if not 0 <= carried <= len(in_types):
        raise OpTypeError(f"while carries {carried} loop variables but has {len(in_types)} operands")
    _check_params(body, in_types, "while's body")
    _check_params(cond, tuple(p.type for p in body.params), "while's condition")
    test = [r.type for r in cond.results]
    if len(test) != 1 or test[0].dtype != bool_ or test[0].shape not in ((), None):
        raise OpTypeError(f"while's condition must return one bool scalar, got {_types(test)}")
    variables = tuple(p.type for p in body.params[:carried])
    results = [r.type for r in body.results]
    if len(results) < carried or not all(admits(v, r) for v, r in zip(variables, results)):
        raise OpTypeError(f"while's body must return its loop variables {_types(variables)} first, "
                          f"got {_types(results)}")
    return variables + tuple(stacked_type(t) for t in results[carried:])


def _while(*operands: np.ndarray, cond: Graph, body: Graph, carried: int,
           state: RuntimeState | None = None) -> tuple[np.ndarray, ...]:
    from tfjit.backends.reference import compile_graph

    state = state or RuntimeState()
    test, step = compile_graph(cond), compile_graph(body)
    variables, invariants = list(operands[:carried]), list(operands[carried:])
    per_iteration: list[list[np.ndarray]] = [[] for _ in body.results[carried:]]
    while bool(test.run(variables + invariants, state)[0]):
        out = step.run(variables + invariants, state)
        variables = out[:carried]
        for values, value in zip(per_iteration, out[carried:]):
            values.append(value)
    stacked = [_stack(values, r.type) for values, r in zip(per_iteration, body.results[carried:])]
    return (*variables, *stacked)


def _stack(values: list[np.ndarray], t: TensorType) -> np.ndarray:
    if values:
        return np.stack(values)
    dims: tuple[Dim, ...] = t.shape if t.shape is not None else ()
    return np.zeros((0, *(d if isinstance(d, int) else 0 for d in dims)), t.dtype.np_dtype)


register("while", _while_rule, _while, Fusion.OPAQUE, stateful=True,
         doc="runs body while cond holds; returns the loop variables and the stacked per-iteration values")


# -- dropping unused results -------------------------------------------------------------------
def droppable(node: Node) -> range:
    """Indices of results a pass may drop when nothing uses them: any of a cond's, a while's
    stacked ones (its loop variables are needed by the next iteration)."""
    if node.op == "cond":
        return range(len(node.types))
    if node.op == "while":
        return range(node.attr("carried"), len(node.types))
    return range(0)


def keep_results(node: Node, keep: list[int]) -> Node:
    """`node` returning only its results `keep` (in order), its sub-graphs cut to match."""
    offset = 0 if node.op == "cond" else node.attr("carried")
    attrs = []
    for key, value in node.attrs:
        if isinstance(value, Graph) and not (node.op == "while" and key == "cond"):
            kept = list(value.results[:offset]) + [value.results[i] for i in keep if i >= offset]
            value = Graph(value.name, value.params, value.nodes, kept)
        attrs.append((key, value))
    return node.evolve(attrs=tuple(attrs), types=tuple(node.types[i] for i in keep))
