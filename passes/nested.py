"""Passes inside sub-graphs: a pass runs on the branches and loop bodies that nodes hold,
innermost first, and each such node is rebuilt around its optimised sub-graphs, without the
results nothing uses (a while loop's per-iteration values kept for a gradient not built).

Fused kernels are left alone: fusion formed their bodies, which are already optimised.
"""
from __future__ import annotations

from typing import Callable

from tfjit.ir.graph import Graph, Node
from tfjit.ops.control_flow import droppable, keep_results
from tfjit.ops.registry import get_op

from .effects import bodies
from .rewrite import Rewriter


def in_bodies(run: Callable[[Graph], Graph]) -> Callable[[Graph], Graph]:
    """`run` applied to every (non-fused) sub-graph, bottom-up, and then to the graph itself."""

    def apply(graph: Graph) -> Graph:
        return run(_rebuild_bodies(graph, apply))

    return apply


def _rebuild_bodies(graph: Graph, run: Callable[[Graph], Graph]) -> Graph:
    if not any(_holds_bodies(n) for n in graph.nodes):
        return graph
    used = {v for n in graph.nodes for v in n.inputs} | set(graph.results)
    rw = Rewriter(graph)
    for node in graph.nodes:
        if not _holds_bodies(node):
            rw.keep(node)
            continue
        keep = [i for i, v in enumerate(node.outputs) if v in used or i not in droppable(node)]
        pruned = keep_results(node, keep) if len(keep) < len(node.outputs) else node
        attrs = tuple((k, run(v) if isinstance(v, Graph) else v) for k, v in pruned.attrs)
        inputs = rw.inputs(node)
        types = get_op(node.op).infer(tuple(v.type for v in inputs), dict(attrs))
        new = pruned.evolve(inputs=inputs, control_inputs=rw.controls(node), attrs=attrs, types=types)
        rw.emit(node, new)
        if pruned is not node and new.outputs:  # results moved: map each used one to its new place
            position = dict(zip(keep, new.outputs))
            rw.replace(node, [position.get(i, new.outputs[0]) for i in range(len(node.outputs))])
    return rw.finish()


def _holds_bodies(node: Node) -> bool:
    return node.op != "fused" and bool(bodies(node))
