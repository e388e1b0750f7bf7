"""Decomposition: softmax, log_softmax and softmax cross-entropy (dense labels) become the
max/exp/sum/divide steps they stand for, so fusion can make each one (with its producers and
consumers) a single row kernel.

The steps are exactly the reference's (`tfjit/ops/nn.py`): shift by the max, exponentiate,
sum, divide (or subtract the log of the sum). float16 keeps the primitive, whose reference
computes in float32; so do nodes whose rank is unknown.
"""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op

from .rewrite import Rewriter

_DECOMPOSED = {"softmax", "log_softmax", "softmax_cross_entropy_with_logits"}


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
    rank = len(x.type.shape)
    axes = (node.attr("axis", -1) % rank,)

    def step(op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
        opdef = get_op(op)
        frozen = tuple(sorted(attrs.items()))
        types = opdef.infer(tuple(v.type for v in inputs), dict(frozen))
        new = Node(op, tuple(inputs), frozen, types, device=node.device, loc=node.loc,
                   name=f"{node.name}/{suffix}")
        rw.emit(None, new)
        return new.out

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
