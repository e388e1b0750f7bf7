"""Decomposition: softmax, log_softmax, softmax cross-entropy (dense labels) and
reduce_logsumexp become the max/exp/sum steps they stand for, so fusion can make each one
(with its producers and consumers) a single row kernel.

The steps are exactly the reference's (`tfjit/ops/nn.py`, `tfjit/ops/reduction.py`): shift by
the max (logsumexp: where it is finite), exponentiate, sum, divide (or subtract the log of the
sum; logsumexp adds the shift back). float16 keeps the primitive, whose reference computes in
float32; so do nodes whose rank is unknown.
"""
from __future__ import annotations

from typing import Callable

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.shapes import normalize_axes

from .rewrite import Rewriter

_DECOMPOSED = {"softmax", "log_softmax", "softmax_cross_entropy_with_logits", "logsumexp"}


def decompose(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        x = rw.value(node.inputs[0]) if node.inputs else None
        if node.op not in _DECOMPOSED or node.control_inputs or x is None or not _decomposable(x):
            rw.keep(node)
            continue
        rw.replace(node, [_expand(node, x, rw)])
    return rw.finish()


def _decomposable(x: Value) -> bool:
    return x.type.shape is not None and x.type.dtype.short in ("f32", "f64")


def _expand(node: Node, x: Value, rw: Rewriter) -> Value:
    def step(op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
        return rw.derive(node, op, inputs, suffix, **attrs)

    if node.op == "logsumexp":
        return _logsumexp(node, x, step)
    axes = (node.attr("axis", -1) % len(x.type.shape),)
    peak = step("max", [x], "Max", axes=axes, keepdims=True)
    shifted = step("subtract", [x, peak], "sub")
    exps = step("exp", [shifted], "Exp")
    total = step("sum", [exps], "Sum", axes=axes, keepdims=True)
    if node.op == "softmax":
        return step("divide", [exps, total], "truediv")
    log_total = step("log", [total], "Log")
    if node.op == "log_softmax":
        return step("subtract", [shifted, log_total], "sub_1")
    labels = rw.value(node.inputs[1])  # sum(labels * (logsumexp - shifted)), the reference's steps
    losses = step("multiply", [labels, step("subtract", [log_total, shifted], "sub_1")], "mul")
    return step("sum", [losses], "Sum_1", axes=axes, keepdims=False)


def _logsumexp(node: Node, x: Value, step: Callable[..., Value]) -> Value:
    """The reference's steps: a row of -inf (or with +inf) is shifted by 0, not by its max."""
    axes = normalize_axes(node.attr("axes", None), len(x.type.shape))
    if axes is None:
        axes = tuple(range(len(x.type.shape)))
    peak = step("max", [x], "Max", axes=axes, keepdims=True)
    shift = step("select", [step("is_finite", [peak], "IsFinite"), peak, step("zeros_like", [peak], "zeros_like")],
                 "Select")
    exps = step("exp", [step("subtract", [x, shift], "sub")], "Exp")
    total = step("sum", [exps], "Sum", axes=axes, keepdims=True)
    out = step("add", [step("log", [total], "Log"), shift], "add")
    return out if node.attr("keepdims", False) else step("squeeze", [out], "Squeeze", axis=axes)
