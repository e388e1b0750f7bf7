"""Decomposition: ops spelled as the simpler steps the kernels fuse.

Softmax, log_softmax and softmax cross-entropy (dense labels) become the max/exp/sum/divide
steps they stand for, so fusion can make each one (with its producers and consumers) a single
row kernel. The steps are exactly the reference's (`tfjit/ops/nn.py`): shift by the max,
exponentiate, sum, divide (or subtract the log of the sum). float16 keeps the primitive, whose
reference computes in float32; so do nodes whose rank is unknown.

A reduction over axes that are not one block (size-1 dims aside), such as axes (0, 2) of a
rank-3 tensor, becomes a chain of reductions over one block each, innermost first: a row or
column kernel runs each step instead of the whole reduction falling back to NumPy. Only where
the chain gives the same result: max, min, any and all always; sum and prod of floats (one
more rounding per element of the intermediate) and of ints (wrapping is associative); mean of
floats (every intermediate mean averages equally many elements). float16 stays whole, since its
reference sums in float32.
"""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op
from tfjit.ops.shapes import normalize_axes

from .rewrite import Rewriter

_DECOMPOSED = {"softmax", "log_softmax", "softmax_cross_entropy_with_logits"}
_SPLIT_ANY_DTYPE = {"max", "min", "any", "all"}
_SPLIT_NUMERIC = {"sum", "prod"}  # floats but float16, and ints
_SPLIT_FLOAT = {"mean"}


def decompose(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        x = rw.value(node.inputs[0]) if node.inputs else None
        if x is None or node.control_inputs:
            rw.keep(node)
        elif node.op in _DECOMPOSED and _decomposable(x):
            rw.replace(node, [_expand(node, x, rw)])
        elif (blocks := _scattered_blocks(node, x)) is not None:
            rw.replace(node, [_chain(node, x, blocks, rw)])
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


def _scattered_blocks(node: Node, x: Value) -> list[tuple[int, ...]] | None:
    """The reduced axes of `node` as blocks of adjacent dims (size-1 dims join the block
    before them), when there are several and splitting keeps the result; else None."""
    dtype, shape = x.type.dtype, x.type.shape
    splits = (node.op in _SPLIT_ANY_DTYPE
              or (node.op in _SPLIT_NUMERIC and dtype.short != "f16")
              or (node.op in _SPLIT_FLOAT and dtype.short in ("f32", "f64")))
    if not splits or shape is None:
        return None
    axes = normalize_axes(node.attr("axes", None), len(shape))
    if axes is None:
        return None
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


def _chain(node: Node, x: Value, blocks: list[tuple[int, ...]], rw: Rewriter) -> Value:
    """Reduce the innermost block first: removing later dims leaves earlier axes' numbers alone."""
    keepdims = bool(node.attr("keepdims", False))
    for k, block in enumerate(reversed(blocks)):
        suffix = node.op.capitalize() if k == 0 else f"{node.op.capitalize()}_{k}"
        x = _step(node, rw, node.op, [x], suffix, axes=block, keepdims=keepdims)
    return x


def _decomposable(x: Value) -> bool:
    return x.type.shape is not None and x.type.dtype.short in ("f32", "f64")


def _expand(node: Node, x: Value, rw: Rewriter) -> Value:
    rank = len(x.type.shape)
    axes = (node.attr("axis", -1) % rank,)

    def step(op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
        return _step(node, rw, op, inputs, suffix, **attrs)

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
