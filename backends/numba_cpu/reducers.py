"""The source of each reduction op's accumulator: its start value, its update, its result.

Row kernels keep accumulators in local scalars, column kernels in arrays indexed along the
kept axis; both ask this module for the lines, passing the accumulator's name (`acc_3` or
`acc_3[i]`). Semantics are the reference's (`tfjit/ops/reduction.py`): an empty max is the
lowest value, NaN propagates through max/min, argmax/argmin return the first extreme (the
first NaN if any), integer means truncate towards zero, integer sums wrap in their dtype.
"""
from __future__ import annotations

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

OPS = {"sum", "mean", "max", "min", "prod", "any", "all", "argmax", "argmin"}
ARG_OPS = {"argmax", "argmin"}


def axes(node: Node) -> tuple[int, ...]:
    """The reduced axes of `node`, normalised (argmax/argmin name one `axis`)."""
    rank = len(node.inputs[0].type.shape)
    if node.op in ARG_OPS:
        return (node.attr("axis") % rank,)
    chosen = node.attr("axes")
    return tuple(range(rank)) if chosen is None else tuple(sorted({a % rank for a in chosen}))


def _extreme(node: Node, lowest: bool) -> str:
    dtype = node.inputs[0].type.dtype
    if dtype.is_floating:
        return f"_{dtype.short}({'-' if lowest else ''}np.inf)"
    info = np.iinfo(dtype.np_dtype)
    return f"_{dtype.short}({info.min if lowest else info.max})"


def acc_dtype(node: Node) -> str:
    """Integer means sum in int64 (as the reference does) before dividing."""
    dtype = node.inputs[0].type.dtype
    return "i64" if node.op == "mean" and not dtype.is_floating else dtype.short


def start(node: Node) -> str:
    """The accumulator's start value (of the value accumulator, for argmax/argmin)."""
    op = node.op
    if op in ("sum", "mean"):
        return f"_{acc_dtype(node)}(0)"
    if op == "prod":
        return f"_{node.types[0].dtype.short}(1)"
    if op in ("any", "all"):
        return str(op == "all")
    return _extreme(node, lowest=op in ("max", "argmax"))


def start_value(node: Node) -> np.generic:
    """`start(node)` as a NumPy scalar of the accumulator's dtype, for accumulators filled
    before the kernel runs."""
    op, dtype = node.op, node.inputs[0].type.dtype.np_dtype
    if op in ("sum", "mean"):
        return np.int64(0) if acc_dtype(node) == "i64" and dtype != np.int64 else dtype.type(0)
    if op == "prod":
        return node.types[0].dtype.np_dtype.type(1)
    if op in ("any", "all"):
        return np.bool_(op == "all")
    lowest = op in ("max", "argmax")
    if dtype.kind == "f":
        return dtype.type(-np.inf if lowest else np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.min if lowest else info.max)


def combine(node: Node, acc: str, value: str) -> str | None:
    """`value` folded into `acc`, as one expression (None for argmax/argmin, which also
    track the position)."""
    forms = {"sum": "{a} + {v}", "mean": "{a} + {v}", "prod": "{a} * {v}", "any": "{a} | {v}",
             "all": "{a} & {v}", "max": "_maximum({a}, {v})", "min": "_minimum({a}, {v})"}
    form = forms.get(node.op)
    return None if form is None else form.format(a=acc, v=value)


def init(node: Node, acc: str, idx: str) -> list[str]:
    lines = [f"{acc} = {start(node)}"]
    return lines + [f"{idx} = 0"] if node.op in ARG_OPS else lines


def update(node: Node, acc: str, idx: str, value: str, position: str) -> list[str]:
    """Fold `value` (at `position` along the reduced axis) into the accumulator."""
    folded = combine(node, acc, value)
    if folded is not None:
        return [f"{acc} = {folded}"]
    better = ">" if node.op == "argmax" else "<"
    # The first NaN wins and stays; otherwise a strictly better value (so the first of equals).
    return [f"if {acc} == {acc} and ({value} {better} {acc} or {value} != {value}):",
            f"    {acc} = {value}",
            f"    {idx} = {position}"]


def result(node: Node, acc: str, idx: str, count: str) -> str:
    """The reduction's value from its final accumulator, in the node's dtype; `count` is the
    kernel's variable holding the number of reduced elements."""
    out = node.types[0].dtype.short
    if node.op in ARG_OPS:
        return f"_{out}({idx})"
    if node.op == "mean":
        if node.types[0].dtype.is_floating:
            return f"({acc} / _{out}({count}))"
        return f"_{out}(np.sign({acc}) * (abs({acc}) // max({count}, 1)))"
    if node.op in ("any", "all"):
        return acc
    return f"_{out}({acc})"


def values(body: Graph) -> list[Value]:
    return list(body.params) + [v for n in body.nodes for v in n.outputs]


def phases(body: Graph, early: frozenset[Node] = frozenset()) -> dict[Value, int]:
    """The pass over the data in which each value is computed: a reduction's result is ready
    one pass after its input (`early` reductions are done before the first pass)."""
    phase: dict[Value, int] = {p: 0 for p in body.params}
    for node in body.nodes:
        ready = max((phase[v] for v in node.inputs), default=0)
        if node in early:
            phase[node.out] = 0
        elif node.op in OPS:
            phase[node.out] = ready + 1
        else:
            for v in node.outputs:
                phase[v] = ready
    return phase
