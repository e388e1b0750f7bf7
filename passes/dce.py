"""Dead-code elimination: keep what the results need and every node that writes state."""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node
from .effects import writes_state
from .rewrite import Rewriter


def live_nodes(graph: Graph) -> set[Node]:
    """Nodes reachable (by data or control edges) from the results and the state writers."""
    roots = [r.node for r in graph.results] + [n for n in graph.nodes if writes_state(n)]
    live: set[Node] = set()
    stack = roots
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        stack.extend(v.node for v in node.inputs)
        stack.extend(node.control_inputs)
    return live


def dce(graph: Graph) -> Graph:
    live = live_nodes(graph)
    rw = Rewriter(graph)
    for node in graph.nodes:
        if node in live:
            rw.keep(node)
        else:
            rw.drop(node)
    return rw.finish()
