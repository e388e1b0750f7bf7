"""Memory planning: liveness over the scheduled nodes and buffer reuse.

Intermediates are the results of body nodes that compute new arrays (`fresh`); each gets a
buffer, which a later intermediate reuses once the value in it is dead. A value is dead only
when every value that may share its memory is dead too: a node that is not `fresh` (a layout
view, a reference that may hand back its input, a control-flow op) is taken to return views
of all its inputs, so a split's pieces keep the product they were cut from alive. Left
unplanned (the runtime's own allocation): values of unknown or zero size, unused values, and
any value whose memory may reach a graph result (handed to the user) or a node that keeps
its inputs beyond the run (`retains_inputs`: a queue's enqueue).

Nothing is written in place over a dying input: a numba loop whose output is its input runs
scalar (LLVM's runtime alias check fails; measured 2.4x slower on a 64K-element float32 loop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import Fusion, get_op

from .rewrite import Rewriter

ALIGNMENT = 64  # bytes: a cache line, and an AVX-512 vector
_NOT_INTERMEDIATE = {"constant", "variable", "param"}
_FRESH_KINDS = {"loop", "reduction", "contraction"}
# Stateful ops that keep no input array: they keep a copy (tfjit/runtime/state.py), take no
# input, or only hold sub-graphs (which `retains_inputs` looks into).
_KEEP_NO_INPUT = {"assign", "assign_add", "assign_sub", "variable", "param", "placeholder", "no_op",
                  "is_variable_initialized", "fused", "while", "cond"}


@dataclass
class MemoryPlan:
    buffer_of: dict[Value, int]
    buffer_bytes: list[int]
    intermediate_bytes: int  # every intermediate (views too) in its own buffer, as unplanned

    @property
    def planned_bytes(self) -> int:
        """The sum of the plan's distinct buffers."""
        return sum(self.buffer_bytes)

    def offsets(self) -> tuple[list[int], int]:
        """Each buffer's offset in one arena, every one a multiple of ALIGNMENT; the arena's size."""
        offsets, end = [], 0
        for size in self.buffer_bytes:
            offsets.append(end)
            end += -(-size // ALIGNMENT) * ALIGNMENT
        return offsets, end


def _bytes(v: Value) -> int | None:
    n = v.type.num_elements
    return None if n is None else n * v.type.dtype.np_dtype.itemsize


def computes_fresh(node: Node) -> bool:
    """Whether the node's results are arrays it computes (not views, state or sub-graph results)."""
    if node.op == "fused":
        body: Graph = node.attr("body")
        return node.attr("kind") in _FRESH_KINDS and not any(get_op(n.op).stateful for n in body.nodes
                                                              if n.op != "param")
    opdef = get_op(node.op)
    return opdef.view is None and not opdef.stateful and node.op not in _NOT_INTERMEDIATE


def retains_inputs(node: Node) -> bool:
    """Whether the node (or a sub-graph it holds) may keep an input array beyond the run."""
    opdef = get_op(node.op)
    if opdef.stateful and node.op not in _KEEP_NO_INPUT and opdef.fusion is not Fusion.RANDOM:
        return True
    return any(retains_inputs(n) for _, g in node.attrs if isinstance(g, Graph) for n in g.nodes)


def plan(graph: Graph, fresh: Callable[[Node], bool] = computes_fresh,
         retains: Callable[[Node], bool] = retains_inputs, unplanned: Iterable[Value] = ()) -> MemoryPlan:
    """Buffers for the intermediates of `graph` in its order; `unplanned`: values the caller
    allocates itself."""
    last_use: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v] = i
    skip = set(graph.results) | set(unplanned)
    intermediates = [v for node in graph.nodes if node.op not in _NOT_INTERMEDIATE for v in node.outputs
                     if v not in skip and v in last_use]
    candidates: dict[Value, int] = {}  # value -> bytes
    shares: dict[Value, frozenset[Value]] = {}  # value -> the candidates whose memory it may view
    for node in graph.nodes:
        if fresh(node):
            for v in node.outputs:
                size = _bytes(v)
                if node.op not in _NOT_INTERMEDIATE and v not in skip and v in last_use and size:
                    candidates[v] = size
                    shares[v] = frozenset((v,))
        else:
            seen = frozenset().union(*(shares.get(v, frozenset()) for v in node.inputs))
            shares.update((v, seen) for v in node.outputs)
    escaping = [shares.get(v, frozenset()) for v in graph.results]
    escaping += [shares.get(v, frozenset()) for node in graph.nodes if retains(node) for v in node.inputs]
    for v in frozenset().union(*escaping):
        del candidates[v]
    end: dict[Value, int] = {}  # a candidate's last use, or its views' last
    for v, i in last_use.items():
        for c in shares.get(v, ()):
            end[c] = max(end.get(c, i), i)
    dies_at: dict[int, list[Value]] = {}
    for c in candidates:
        dies_at.setdefault(end[c], []).append(c)
    buffer_of: dict[Value, int] = {}
    sizes: list[int] = []
    free: list[int] = []
    for i, node in enumerate(graph.nodes):
        for v in node.outputs:
            size = candidates.get(v)
            if size is None:
                continue
            fits = [b for b in free if sizes[b] >= size]
            if fits:  # the smallest that fits; else the largest free one, grown
                best = min(fits, key=sizes.__getitem__)
            elif free:
                best = max(free, key=sizes.__getitem__)
                sizes[best] = size
            else:
                best = len(sizes)
                sizes.append(size)
                free.append(best)
            free.remove(best)
            buffer_of[v] = best
        free.extend(buffer_of[c] for c in dies_at.get(i, ()))
    return MemoryPlan(buffer_of, sizes, sum(_bytes(v) or 0 for v in intermediates))


def plan_memory(graph: Graph) -> Graph:
    """Stamp each node with the buffers its results were planned into (-1: not planned)."""
    memory = plan(graph)
    rw = Rewriter(graph)
    for node in graph.nodes:
        buffers = tuple(memory.buffer_of.get(v, -1) for v in node.outputs)
        planned = buffers if any(b >= 0 for b in buffers) else None
        rw.emit(node, node.evolve(inputs=rw.inputs(node), control_inputs=rw.controls(node), buffers=planned))
    return rw.finish()
