"""Decomposition: ops spelled as the simpler steps the kernels fuse.

Softmax, log_softmax and softmax cross-entropy (dense labels) become the max/exp/sum/divide
steps they stand for, so fusion can make each one (with its producers and consumers) a single
row kernel. The steps are exactly the reference's (`tfjit/ops/nn.py`): shift by the max,
exponentiate, sum, divide (or subtract the log of the sum). reduce_logsumexp likewise becomes
TF's steps (shift by the max where it is finite, exponentiate, sum, log, add the shift back).
float16 keeps the primitive, whose reference computes in float32; so do nodes whose rank is
unknown.

A reduction over axes that are not one block (size-1 dims aside), such as axes (0, 2) of a
rank-3 tensor, becomes a chain of reductions over one block each, innermost first: a row or
column kernel runs each step instead of the whole reduction falling back to NumPy. Only where
the chain gives the same result: max, min, any and all always; sum and prod of floats (one
more rounding per element of the intermediate) and of ints (wrapping is associative); mean of
floats (every intermediate mean averages equally many elements). float16 stays whole, since its
reference sums in float32.
"""
from __future__ import annotations

from typing import Callable

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op
from tfjit.ops.shapes import normalize_axes

from .rewrite import Rewriter

_DECOMPOSED = {"softmax", "log_softmax", "softmax_cross_entropy_with_logits", "logsumexp"}
_SPLIT_ANY_DTYPE = {"max", "min", "any", "all"}
_SPLIT_NUMERIC = {"sum", "prod"}  # floats but float16, and ints
_SPLIT_FLOAT = {"mean"}
_SPLITS = _SPLIT_ANY_DTYPE | _SPLIT_NUMERIC | _SPLIT_FLOAT


def decompose(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        x = rw.value(node.inputs[0]) if node.inputs else None
        if x is None or node.control_inputs:
            rw.keep(node)
        elif node.op in _DECOMPOSED and _decomposable(x):
            rw.replace(node, [_expand(node, x, rw)])
        elif node.op in _SPLITS and _scattered_blocks(node.op, x, node.attr("axes", None)) is not None:
            rw.replace(node, [_reduce(node, rw, node.op, x, "", node.attr("axes", None), node.attr("keepdims", False))])
        else:
            rw.keep(node)
    return rw.finish()


def _step(node: Node, rw: Rewriter, op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
    """Emit one step of `node`'s decomposition, at its device and source line."""
    frozen = tuple(sorted(attrs.items()))
    types = get_op(op).infer(tuple(v.type for v in inputs), dict(frozen))
    new = Node(op, tuple(inputs), frozen, types, device=node.device, loc=node.loc, name=f"{node.name}/{suffix}")
    rw.emit(None, new)
    return new.out


def _reduce(node: Node, rw: Rewriter, op: str, x: Value, suffix: str, axes: object, keepdims: bool) -> Value:
    """`op` over `axes`; scattered axes reduce block by block, innermost first (removing later
    dims leaves the numbers of earlier axes alone)."""
    name = suffix or op.capitalize()
    blocks = _scattered_blocks(op, x, axes) or [axes]
    for k, block in enumerate(reversed(blocks)):
        x = _step(node, rw, op, [x], name if k == 0 else f"{name}_{k}", axes=block, keepdims=bool(keepdims))
    return x


def _scattered_blocks(op: str, x: Value, axes: object) -> list[tuple[int, ...]] | None:
    """The reduced axes as blocks of adjacent dims (size-1 dims join the block before them),
    when there are several and reducing block by block keeps the result; else None."""
    dtype, shape = x.type.dtype, x.type.shape
    splits = (op in _SPLIT_ANY_DTYPE
              or (op in _SPLIT_NUMERIC and dtype.short != "f16")
              or (op in _SPLIT_FLOAT and dtype.short in ("f32", "f64")))
    if not splits or shape is None or axes is None:
        return None
    axes = normalize_axes(axes, len(shape))  # type: ignore[arg-type]
    blocks: list[list[int]] = []  # runs of reduced dims > 1 with no kept dim > 1 between
    ones: list[int] = []          # reduced size-1 dims before the first run
    kept_since = False
    for i, d in enumerate(shape):
        if i not in axes:
            kept_since = kept_since or d != 1
        elif d == 1:
            (blocks[-1] if blocks else ones).append(i)
        elif kept_since or not blocks:
            blocks.append([i])
            kept_since = False
        else:
            blocks[-1].append(i)
    if len(blocks) < 2:
        return None
    blocks[0][:0] = ones
    return [tuple(b) for b in blocks]


def _decomposable(x: Value) -> bool:
    return x.type.shape is not None and x.type.dtype.short in ("f32", "f64")


def _expand(node: Node, x: Value, rw: Rewriter) -> Value:
    def step(op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
        return _step(node, rw, op, inputs, suffix, **attrs)

    if node.op == "logsumexp":
        return _logsumexp(node, x, rw, step)
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


def _logsumexp(node: Node, x: Value, rw: Rewriter, step: Callable[..., Value]) -> Value:
    """The reference's steps: a row of -inf (or with +inf) is shifted by 0, not by its max."""
    axes = normalize_axes(node.attr("axes", None), len(x.type.shape)) or tuple(range(len(x.type.shape)))
    peak = _reduce(node, rw, "max", x, "Max", axes, True)
    shift = step("select", [step("is_finite", [peak], "IsFinite"), peak, step("zeros_like", [peak], "zeros_like")],
                 "Select")
    exps = step("exp", [step("subtract", [x, shift], "sub")], "Exp")
    total = _reduce(node, rw, "sum", exps, "Sum", axes, True)
    out = step("add", [step("log", [total], "Log"), shift], "add")
    return out if node.attr("keepdims", False) else step("squeeze", [out], "Squeeze", axis=axes)
