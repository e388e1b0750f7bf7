"""Rebuilding a graph after a pass decided what to replace: the one place that remaps uses.

Nodes are immutable, so replacing a value means rebuilding every node downstream of it.
`Rewriter` walks the graph once in order; a pass calls `replace` / `keep` / `emit` for each
node, and the rewriter remaps inputs, control inputs and results consistently.
"""
from __future__ import annotations

from typing import Iterable

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op


class Rewriter:
    """Builds the new node list; `value(v)` is what an old value stands for now."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._values: dict[Value, Value] = {}
        self._nodes: dict[Node, Node | None] = {}
        self.body: list[Node] = []
        self.params: list[Value] = list(graph.params)

    def value(self, v: Value) -> Value:
        return self._values.get(v, v)

    def inputs(self, node: Node) -> tuple[Value, ...]:
        return tuple(self.value(v) for v in node.inputs)

    def controls(self, node: Node) -> tuple[Node, ...]:
        out: dict[Node, None] = {}
        for c in node.control_inputs:
            mapped = self._nodes.get(c, c)
            if mapped is not None:
                out[mapped] = None
        return tuple(out)

    def keep(self, node: Node) -> Node:
        """Keep `node`, rebuilt only if its inputs or control inputs changed. New inputs may
        have more precise types (a folded constant's shape), so the types are re-derived."""
        inputs, controls = self.inputs(node), self.controls(node)
        if inputs == node.inputs and controls == node.control_inputs:
            return self.emit(node, node)
        types = node.types
        if inputs != node.inputs:
            types = get_op(node.op).infer(tuple(v.type for v in inputs), node.attr_dict)
        return self.emit(node, node.evolve(inputs=inputs, control_inputs=controls, types=types))

    def emit(self, old: Node | None, new: Node) -> Node:
        """Append `new`, standing for `old` (their results correspond one to one)."""
        self.body.append(new)
        if old is not None:
            self._nodes[old] = new
            for a, b in zip(old.outputs, new.outputs):
                if a != b:
                    self._values[a] = b
        return new

    def derive(self, node: Node, op: str, inputs: list[Value], suffix: str, **attrs: object) -> Value:
        """Append one step of what `node` is spelled as: an `op` node at its device and source
        line, named after it; its result."""
        frozen = tuple(sorted(attrs.items()))
        types = get_op(op).infer(tuple(v.type for v in inputs), dict(frozen))
        new = Node(op, tuple(inputs), frozen, types, device=node.device, loc=node.loc, name=f"{node.name}/{suffix}")
        self.emit(None, new)
        return new.out

    def replace(self, node: Node, values: Iterable[Value]) -> None:
        """Drop `node`; its results are now `values` (already in the new graph). A control
        edge on `node` moves to the node producing its replacement."""
        mapped = [self.value(b) for b in values]
        for a, b in zip(node.outputs, mapped):
            self._values[a] = b
        self._nodes[node] = mapped[0].node if mapped else None  # type: ignore[assignment]

    def replace_param(self, index: int, param: Node) -> None:
        """Make `param` (a rebuilt `param` node) the graph's parameter `index`."""
        self.replace(self.graph.params[index].node, [param.out])
        self.params[index] = param.out

    def drop(self, node: Node) -> None:
        """Drop a node nothing needs any more (control edges on it vanish with it)."""
        self._nodes[node] = None  # type: ignore[assignment]

    def finish(self) -> Graph:
        results = [self.value(r) for r in self.graph.results]
        return Graph(self.graph.name, list(self.params), self.body, results)
