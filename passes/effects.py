"""What a node does besides computing its results, for passes that drop or merge nodes."""
from __future__ import annotations

from tfjit.ir.graph import Graph, Node
from tfjit.ops.registry import get_op


def bodies(node: Node) -> list[Graph]:
    """The sub-graphs a node holds (a fused kernel's body, a cond's branches, a loop's body)."""
    return [v for _, v in node.attrs if isinstance(v, Graph)]


def writes_state(node: Node) -> bool:
    """Assignments (also inside a kernel or a loop body) must run even when nothing reads them."""
    if bodies(node):
        return any(writes_state(n) for body in bodies(node) for n in body.nodes)
    return get_op(node.op).writes_state


def is_pure(node: Node) -> bool:
    """Pure nodes may be merged, folded and reordered; reads, writes and random draws may not."""
    if bodies(node):
        return all(is_pure(n) for body in bodies(node) for n in body.nodes)
    return not get_op(node.op).stateful
