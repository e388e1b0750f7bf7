"""Common-subexpression elimination: one node per (op, inputs, attributes, control inputs).

Stateful ops (variable reads, assignments, random draws) are never merged: two draws of
the same distribution are two different numbers.
"""
from __future__ import annotations

from typing import Any, Hashable

from tfjit.ir.graph import Graph, Node
from .effects import is_pure
from .rewrite import Rewriter


def attrs_key(node: Node) -> Hashable:
    """A hashable key of the attributes (nested graphs by their text)."""
    return tuple((k, _hashable(v)) for k, v in node.attrs)


def _hashable(v: Any) -> Hashable:
    if isinstance(v, Graph):
        from tfjit.ir.printer import print_graph

        return ("graph", print_graph(v))
    if isinstance(v, float) and v != v:
        return ("nan",)  # NaN != NaN, but two NaN attributes are the same attribute
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    return v


def cse(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    seen: dict[Hashable, Node] = {}
    for node in graph.nodes:
        if not is_pure(node):
            rw.keep(node)
            continue
        key = (node.op, rw.inputs(node), attrs_key(node), rw.controls(node), node.device, node.types)
        twin = seen.get(key)
        if twin is not None:
            rw.replace(node, twin.outputs)
        else:
            seen[key] = rw.keep(node)
    return rw.finish()
