"""Reductions over scattered axes, on the CPU, as a chain of reductions over one block each.

The numba backend's row and column kernels reduce one block of adjacent dims (size-1 dims
aside); a reduction over, say, axes (0, 2) of a rank-3 tensor would run its whole fused body
in NumPy. Reduced block by block, innermost first, each step is a generated kernel (the first
with the fused prologue). Only where the chain gives the same result: max, min, any and all
always; sum and prod of floats (one more rounding per element of the intermediate) and of ints
(wrapping is associative); mean of floats (every intermediate mean averages equally many
elements). float16 stays whole, since its reference sums in float32. The CUDA backend reduces
any axes in one kernel, so nodes placed on a GPU stay whole.
"""
from __future__ import annotations

from tfjit.compat.device import CPU0
from tfjit.ir.graph import Graph, Node
from tfjit.ops.shapes import normalize_axes

from .rewrite import Rewriter

_ANY_DTYPE = {"max", "min", "any", "all"}
_NUMERIC = {"sum", "prod"}  # floats but float16, and ints
_FLOAT = {"mean"}


def split_reductions(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        blocks = _scattered_blocks(node)
        if blocks is None:
            rw.keep(node)
            continue
        x, keepdims = rw.value(node.inputs[0]), bool(node.attr("keepdims", False))
        name = node.op.capitalize()
        for k, block in enumerate(reversed(blocks)):  # removing later dims keeps earlier axes' numbers
            x = rw.derive(node, node.op, [x], name if k == 0 else f"{name}_{k}", axes=block, keepdims=keepdims)
        rw.replace(node, [x])
    return rw.finish()


def _scattered_blocks(node: Node) -> list[tuple[int, ...]] | None:
    """`node`'s reduced axes as blocks of adjacent dims (size-1 dims join the block before
    them), when there are several and reducing block by block keeps its result; else None."""
    if node.control_inputs or node.device not in (None, CPU0) or len(node.inputs) != 1:
        return None
    x = node.inputs[0].type
    splits = (node.op in _ANY_DTYPE
              or (node.op in _NUMERIC and x.dtype.short != "f16")
              or (node.op in _FLOAT and x.dtype.short in ("f32", "f64")))
    axes = node.attr("axes", None)
    if not splits or x.shape is None or axes is None:
        return None
    axes = normalize_axes(axes, len(x.shape))
    blocks: list[list[int]] = []  # runs of reduced dims > 1 with no kept dim > 1 between
    ones: list[int] = []          # reduced size-1 dims before the first run
    kept_since = False
    for i, d in enumerate(x.shape):
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
