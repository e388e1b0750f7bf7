"""Layout ops as NumPy views: reshape, expand_dims, squeeze, identity, split, unstack, slices.

The op references copy every result (tfjit/ops/layout.py); here a result shares its input's
memory wherever NumPy gives a view (`OpDef.view`), so cutting an unrolled LSTM's merged input
projection into its 32 steps costs nothing. Views are safe in this backend because no kernel
writes into its inputs (but an RNN cell onto a piece of that projection no other node can
read any more: executable.py's `_donated`): kernels write into buffers from the pool, which hands a buffer out
again only once no view of it is left (buffers.py); a variable is updated in place only when
nothing else, no view either, references its array (tfjit/runtime/state.py); and what a run
hands back is made the caller's own (tfjit/runtime/results.py).

`split` and `unstack` with static shapes get their pieces' index ranges worked out once, at
build: the op's view recomputes the sizes and cuts on every call, which costs more than the
views themselves (an unrolled LSTM splits every cell's gates).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Node
from tfjit.ops.registry import get_op


class PiecesKernel:
    """`split` or `unstack` of a statically shaped input: one precomputed index per piece."""

    returns_tuple = True

    def __init__(self, node: Node):
        shape = node.inputs[0].type.shape
        axis = node.attr("axis") % len(shape)
        self.shape = tuple(shape)
        self.indices: list[tuple[Any, ...]] = []
        start = 0
        for i, t in enumerate(node.types):
            if node.op == "unstack":
                self.indices.append((slice(None),) * axis + (i, Ellipsis))  # the Ellipsis keeps 0-d pieces arrays
                continue
            stop = start + t.shape[axis]
            self.indices.append((slice(None),) * axis + (slice(start, stop),))
            start = stop
        self.fallback: Callable[..., Any] = functools.partial(get_op(node.op).view, **node.attr_dict)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        if x.shape != self.shape:  # never for a verified plan; the op then says what is wrong
            return self.fallback(x)
        return tuple(x[index] for index in self.indices)


def build(node: Node) -> Callable[..., Any] | None:
    """A kernel returning views for a layout op that has a view form, else None."""
    view = get_op(node.op).view
    if view is None:
        return None
    static = node.inputs[0].type.is_fully_defined and all(t.is_fully_defined for t in node.types)
    if node.op in ("split", "unstack") and static:
        return PiecesKernel(node)
    return functools.partial(view, **node.attr_dict) if node.attr_dict else view
