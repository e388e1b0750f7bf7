"""Gradient rules of `cond` and `while`: control flow over replayed, differentiated sub-graphs.

Both replay the forward sub-graph inside a new branch or loop body and differentiate the
replay there with `gradients`, so the gradient is IR like any other (and differentiable
again). Stateful nodes are not replayed: their recorded results stand in for them.

- cond: a cond on the same predicate whose branches are the gradients of the branches.
- while: a loop running the iterations backwards. The forward loop stacked each iteration's
  loop variables (and stateful results); iteration t of the backward loop replays forward
  iteration N-1-t from them and carries the loop variables' gradients back, summing the
  gradients of the loop invariants.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..compat.array_ops import shape, zeros_like
from ..compat.cond_while import _cond, capture, loop
from ..compat.layout_ops import gather
from ..compat.math_ops import add, greater_equal, subtract
from ..ir.graph import Graph as IRGraph
from ..ir.graph import Value
from ..ops.registry import set_gradient
from ..trace.graph import get_default_graph
from ..trace.tensor import Operation, Tensor
from .driver import gradients


def replay(graph: IRGraph, bound: dict[Value, Tensor]) -> dict[Value, Tensor]:
    """Emit `graph`'s nodes into the default graph, its values in `bound` taken as given;
    returns every value of `graph` as a tensor there."""
    from ..passes.effects import is_pure

    target = get_default_graph()
    env = dict(bound)
    for node in graph.nodes:
        if not node.types or all(v in env for v in node.outputs):
            continue
        if not is_pure(node):
            raise ValueError(f"cannot differentiate through {node.op} ({node.name}): its result was not "
                             "recorded by the forward pass")
        inputs = [env[v].value for v in node.inputs]
        name = node.name.rsplit("/", 1)[-1] if node.name else node.op
        op = target.emit(node.op, inputs, node.attr_dict, name=name)
        env.update(zip(node.outputs, op.outputs))
    return env


def _vjp(results: list[Tensor], grads: list[Tensor | None], xs: list[Tensor]) -> list[Tensor]:
    """Σ grads·∂results/∂xs, with zeros where xs are unconnected."""
    pairs = [(y, g) for y, g in zip(results, grads) if g is not None and y.dtype.is_floating]
    found = gradients([y for y, _ in pairs], xs, [g for _, g in pairs]) if pairs else [None] * len(xs)
    return [g if g is not None else zeros_like(x) for g, x in zip(found, xs)]


def _floating(tensors: Sequence[Tensor]) -> list[int]:
    return [i for i, t in enumerate(tensors) if t.dtype.is_floating]


def _scatter(indices: list[int], values: Sequence[Any], size: int) -> list[Any]:
    out: list[Any] = [None] * size
    for i, v in zip(indices, values):
        out[i] = v
    return out


# -- cond ----------------------------------------------------------------------------------------
@set_gradient("cond")
def _cond_grad(op: Operation, *dys: Tensor | None) -> tuple[Any, ...]:
    pred, operands = op.inputs[0], op.inputs[1:]
    wrt = _floating(operands)
    if not wrt:
        return (None,) * len(op.inputs)

    def branch_gradient(branch: IRGraph) -> Any:
        def fn() -> list[Tensor]:
            xs = [capture(x) for x in operands]
            bound = dict(zip(branch.params, xs))
            env = replay(branch, bound | _recorded(branch, op.outputs))
            grads = [capture(g) if g is not None else None for g in dys]
            return _vjp([env[r] for r in branch.results], grads, [xs[i] for i in wrt])
        return fn

    graph = get_default_graph()
    with graph.name_scope("cond") as scope:
        _, grads = _cond(graph, scope, pred, branch_gradient(op.get_attr("then_branch")),
                         branch_gradient(op.get_attr("else_branch")))
    return (None, *_scatter(wrt, grads, len(operands)))


def _recorded(graph: IRGraph, outputs: Sequence[Tensor]) -> dict[Value, Tensor]:
    """Results of stateful nodes, bound to the node outputs that returned them."""
    from ..passes.effects import is_pure

    return {r: capture(t) for r, t in zip(graph.results, outputs)
            if r.node.op != "param" and not is_pure(r.node)}


# -- while ---------------------------------------------------------------------------------------
@set_gradient("while")
def _while_grad(op: Operation, *dys: Tensor | None) -> tuple[Any, ...]:
    body: IRGraph = op.get_attr("body")
    carried = op.get_attr("carried")
    operands = op.inputs
    stacked = op.outputs[carried:]
    kept = _kept(body, carried, stacked)
    missing = [i for i, p in enumerate(body.params[:carried]) if p not in kept]
    if missing:
        raise ValueError(f"cannot differentiate {op.name}: it was built with back_prop=False "
                         f"(loop variable {missing[0]} was not kept)")
    carried_f = _floating(operands[:carried])
    invariant_f = [i for i in _floating(operands) if i >= carried]
    if not carried_f and not invariant_f:
        return (None,) * len(operands)
    steps = shape(kept[body.params[0]])[0]
    start = subtract(steps, 1)
    d_final = [dys[i] if dys[i] is not None else zeros_like(op.outputs[i]) for i in carried_f]
    d_invariants = [zeros_like(operands[i]) for i in invariant_f]

    def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
        t, d_carried = values[0], values[1:1 + len(carried_f)]
        d_inv = values[1 + len(carried_f):]
        bound = {v: gather(capture(h), t) for v, h in kept.items()}
        bound.update({p: capture(x) for p, x in zip(body.params[carried:], operands[carried:])})
        env = replay(body, bound)
        results = [env[r] for r in body.results]
        grads = _scatter(carried_f, d_carried, carried) + [
            gather(capture(g), t) if g is not None else None for g in dys[carried:]]
        xs = [bound[body.params[i]] for i in carried_f + invariant_f]
        found = _vjp(results, grads, xs)
        sums = [add(a, b) for a, b in zip(d_inv, found[len(carried_f):])]
        return [subtract(t, 1), *found[:len(carried_f)], *sums], []

    init = [start, *d_final, *d_invariants]
    types = [start.type] + [body.params[i].type for i in carried_f] + [t.type for t in d_invariants]
    graph = get_default_graph()
    with graph.name_scope("while") as scope:
        final, _ = loop(lambda v: greater_equal(v[0], 0), step, init, types, True, scope)
    return tuple(_scatter(carried_f + invariant_f, final[1:], len(operands)))


def _kept(body: IRGraph, carried: int, stacked: Sequence[Tensor]) -> dict[Value, Tensor]:
    """Body values the forward loop stacked per iteration: loop variables and stateful results."""
    from ..passes.effects import is_pure

    kept: dict[Value, Tensor] = {}
    for r, t in zip(body.results[carried:], stacked):
        if r in body.params[:carried] or (r.node.op != "param" and not is_pure(r.node)):
            kept.setdefault(r, t)
    return kept
