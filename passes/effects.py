"""What a node does besides computing its results, for passes that drop or merge nodes."""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node
from tfjit.ops.registry import get_op


def writes_state(node: Node) -> bool:
    """Assignments (also inside a fused update kernel) must run even when nothing reads them."""
    body = node.attr("body")
    if isinstance(body, Graph):
        return any(writes_state(n) for n in body.nodes)
    return get_op(node.op).writes_state


def is_pure(node: Node) -> bool:
    """Pure nodes may be merged, folded and reordered; reads, writes and random draws may not."""
    body = node.attr("body")
    if isinstance(body, Graph):
        return all(is_pure(n) for n in body.nodes)
    return not get_op(node.op).stateful
