"""SSA IR: immutable nodes producing typed values, and graphs (functions) that order them.

A `Node` is one op application. Its results are `Value`s (node, index). Nodes never
change after construction; a rewrite builds new nodes. Source location, device and the
TF-style name are typed fields, so every rewrite carries them over explicitly.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from .types import TensorType


@dataclass(frozen=True)
class Loc:
    """The user's source line that created a node."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def short(self) -> str:
        """`file.py:12` without the directories, as the IR text shows it."""
        return f"{os.path.basename(self.file)}:{self.line}"


_ids = itertools.count()


@dataclass(frozen=True, eq=False)
class Node:
    """One op application. Identity (not structure) is equality; passes key structure themselves."""

    op: str
    inputs: tuple["Value", ...]
    attrs: tuple[tuple[str, Any], ...]
    types: tuple[TensorType, ...]
    device: str | None = None
    loc: Loc | None = None
    name: str | None = None
    control_inputs: tuple["Node", ...] = ()
    # Planned buffer of each result (memory planning); None until planned.
    buffers: tuple[int, ...] | None = None
    uid: int = field(default_factory=lambda: next(_ids), compare=False)

    @property
    def outputs(self) -> tuple["Value", ...]:
        return tuple(Value(self, i) for i in range(len(self.types)))

    @property
    def out(self) -> "Value":
        """The single result of a one-result node."""
        if len(self.types) != 1:
            raise ValueError(f"{self.op} has {len(self.types)} results, not one")
        return Value(self, 0)

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    def evolve(self, **changes: Any) -> "Node":
        """A new node with some fields replaced (a fresh uid); used by rewrites."""
        changes.setdefault("uid", next(_ids))
        return replace(self, **changes)

    def __repr__(self) -> str:
        return f"<Node {self.op} {self.name or ''}#{self.uid}>"


@dataclass(frozen=True)
class Value:
    """Result `index` of `node`; equal when they name the same result of the same node."""

    node: Node
    index: int

    @property
    def type(self) -> TensorType:
        return self.node.types[self.index]

    def __repr__(self) -> str:
        return f"<Value {self.node.op}#{self.node.uid}:{self.index} {self.type}>"


def freeze_attrs(attrs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Attributes as a sorted tuple of hashable items (lists become tuples)."""
    return tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    return v


@dataclass
class Graph:
    """A function: parameters (values of `param` nodes), nodes in a valid order, results."""

    name: str
    params: list[Value]
    nodes: list[Node]
    results: list[Value]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def all_nodes(self) -> Iterable[Node]:
        """Parameter nodes followed by body nodes."""
        return itertools.chain((p.node for p in self.params), self.nodes)

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)
