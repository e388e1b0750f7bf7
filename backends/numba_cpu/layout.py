"""`split` with static shapes: the pieces' index ranges are worked out once, at build.

The op's reference recomputes the sizes and cuts (cumsum, array_split) on every call, which
costs more than copying the pieces of a small tensor: an unrolled LSTM splits every cell's
gates. Each piece is still a fresh contiguous copy, as the reference gives.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Node
from tfjit.ops.registry import get_op


class SplitKernel:
    returns_tuple = True

    def __init__(self, node: Node):
        shape = node.inputs[0].type.shape
        axis = node.attr("axis") % len(shape)
        self.shape = tuple(shape)
        self.slices = []
        start = 0
        for t in node.types:
            stop = start + t.shape[axis]
            self.slices.append((slice(None),) * axis + (slice(start, stop),))
            start = stop
        self.fallback: Callable[..., Any] = functools.partial(get_op("split").reference, **node.attr_dict)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        if x.shape != self.shape:  # never for a verified plan; the reference then says what is wrong
            return self.fallback(x)
        return tuple(x[s].copy() for s in self.slices)


def build(node: Node) -> SplitKernel | None:
    if node.op != "split" or not node.inputs[0].type.is_fully_defined or not all(t.is_fully_defined for t in node.types):
        return None
    return SplitKernel(node)
