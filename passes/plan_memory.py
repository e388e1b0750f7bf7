"""Memory planning: liveness over the scheduled nodes, buffer reuse and in-place updates.

Intermediates are the results of body nodes that are neither constants, variable reads, nor
graph results (those the runtime owns or hands to the user). Each gets a buffer id; a buffer
is reused once every value in it is dead, and an elementwise kernel writes in place over an
input that dies at that kernel. Values of unknown size are left unplanned.
"""
from __future__ import annotations

from dataclasses import dataclass

from tfjit.ir.graph import Graph, Node, Value

from .rewrite import Rewriter

_NOT_INTERMEDIATE = {"constant", "variable", "param"}
_IN_PLACE_KINDS = {"loop"}
_IN_PLACE_OPS_CLASSES = {"elementwise", "broadcast"}


@dataclass
class MemoryPlan:
    buffer_of: dict[Value, int]
    buffer_bytes: list[int]
    intermediate_bytes: int  # every intermediate in its own buffer
    in_place: int            # values written over a dying input

    @property
    def planned_bytes(self) -> int:
        """The arena the plan needs: the sum of its distinct buffers."""
        return sum(self.buffer_bytes)


def _bytes(v: Value) -> int | None:
    n = v.type.num_elements
    return None if n is None else n * v.type.dtype.np_dtype.itemsize


def _can_write_in_place(node: Node) -> bool:
    from tfjit.ops.registry import get_op

    if node.op == "fused":
        return node.attr("kind") in _IN_PLACE_KINDS
    return get_op(node.op).fusion.value in _IN_PLACE_OPS_CLASSES


def plan(graph: Graph) -> MemoryPlan:
    last_use: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v] = i
    results = set(graph.results)
    buffer_of: dict[Value, int] = {}
    sizes: list[int] = []
    free: list[int] = []
    total = 0
    in_place = 0
    for i, node in enumerate(graph.nodes):
        dying = [v for v in node.inputs if last_use.get(v) == i and v in buffer_of]
        for v in node.outputs:
            size = _bytes(v)
            if node.op in _NOT_INTERMEDIATE or v in results or size is None or v not in last_use:
                continue
            total += size
            reuse = next((d for d in dying if sizes[buffer_of[d]] == size and _can_write_in_place(node)), None)
            if reuse is not None:
                buffer_of[v] = buffer_of[reuse]
                dying.remove(reuse)
                in_place += 1
                continue
            fits = [b for b in free if sizes[b] >= size]
            if fits:
                best = min(fits, key=sizes.__getitem__)
                free.remove(best)
                buffer_of[v] = best
            else:
                buffer_of[v] = len(sizes)
                sizes.append(size)
        for v in dying:  # buffers whose last reader was this node
            if all(last_use.get(w, -1) <= i for w, b in buffer_of.items() if b == buffer_of[v]):
                free.append(buffer_of[v])
    return MemoryPlan(buffer_of, sizes, total, in_place)


def plan_memory(graph: Graph) -> Graph:
    """Stamp each node with the buffers its results were planned into (-1: not planned)."""
    memory = plan(graph)
    rw = Rewriter(graph)
    for node in graph.nodes:
        buffers = tuple(memory.buffer_of.get(v, -1) for v in node.outputs)
        planned = buffers if any(b >= 0 for b in buffers) else None
        rw.emit(node, node.evolve(inputs=rw.inputs(node), control_inputs=rw.controls(node), buffers=planned))
    return rw.finish()
