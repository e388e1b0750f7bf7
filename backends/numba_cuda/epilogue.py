"""Elementwise code at one element of an iteration space, with variable writes: the fused
epilogue of a contraction kernel and the body of an update kernel.

The body's values are computed for element `i` (a flat index into the space) with the
shared element expressions; each input is read through the index map `loop.py` finds (so
a bias `[N]` under an `[M, N]` space reads `in[i % N]`). Assignments to variables become
writes into the variable's own device array (`var0[i] = ...`): `assign_add`/`assign_sub`
read the old value first. Every value is computed before anything is stored, so an
element's old value is never read after its new value was written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from ..numba_cpu.codegen import INDEX_ONLY, ElementWriter, Lines, supported
from ..numba_cpu.loop import _prepare
from .loop import Access, _accesses, _index

WRITES = {"assign": None, "assign_add": "+", "assign_sub": "-"}


@dataclass
class Epilogue:
    """How a body's inputs are read at element `i` of `space`, and what it writes."""

    body: Graph
    space: tuple[int, ...]
    inputs: tuple[Value, ...]       # body values read from memory (loop.py's prepared inputs)
    accesses: tuple[Access, ...]    # their index maps
    params: tuple[int, ...]         # body params the kernel takes as arguments, in order
    targets: tuple[Node, ...]       # the assignments, in body order (one device array each)

    @property
    def size(self) -> int:
        return int(np.prod(self.space, dtype=np.int64))

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the targets assign, in the order a kernel takes their device arrays."""
        return tuple(t.attr("var") for t in self.targets)

    def array_dtypes(self, body: Graph, params: Sequence[int]) -> tuple[np.dtype, ...]:
        """The dtypes of a kernel's arrays: `body`'s `params` it reads, its results, then the
        targets' variables (the kernel's argument order)."""
        return tuple(body.params[p].type.dtype.np_dtype for p in params) + \
            tuple(r.type.dtype.np_dtype for r in body.results) + \
            tuple(t.out.type.dtype.np_dtype for t in self.targets)

    def write(self, lines: Lines, args: dict[int, str], given: dict[int, str], outs: Sequence[str],
              variables: Sequence[str]) -> None:
        """Lines computing every result at element `i` and storing them: `args` names the
        kernel argument of each read param, `given` the local holding a param's value (the
        contraction's accumulator), `outs` the result arrays, `variables` each target's array."""
        names = {v: given[a.param] for v, a in zip(self.inputs, self.accesses) if a.param in given}

        def load(v: Value) -> str:
            a = self.accesses[self.inputs.index(v)]
            name = f"x{len(names)}"
            names[v] = name
            lines.add(f"{name} = {args[a.param]}[{_index(a, self.space)}]")
            return name

        writer = _WritingWriter(lines, load, dict(zip(self.targets, variables)), set(self.inputs))
        writer.names.update(names)
        stores = [(o, writer.value(r), r) for o, r in zip(outs, self.body.results)]
        stores += [(variables[k], writer.value(t.out), t.out) for k, t in enumerate(self.targets)]
        for array, name, value in stores:
            if int(np.prod(value.type.shape, dtype=np.int64)) == self.size:
                lines.add(f"{array}[i] = {name}")
            else:  # a one-element result of a bigger space: stored once
                lines.add(f"if i == 0: {array}[0] = {name}")


class _WritingWriter(ElementWriter):
    """An element writer that also computes assignments' new values."""

    def __init__(self, lines: Lines, load, variables: dict[Node, str], reads: set[Value]):  # type: ignore[no-untyped-def]
        super().__init__(lines, load)
        self.variables = variables
        self.reads = reads  # values read from memory: an index-only op there is done by the read's index map

    def value(self, v: Value) -> str:
        if v in self.reads and v not in self.names:
            self.names[v] = self.load(v)
            return self.names[v]
        node = v.node
        if node.op not in WRITES or v in self.names:
            return super().value(v)
        new = self.value(node.inputs[0])
        sign = WRITES[node.op]
        if sign is not None:
            name = f"{self.prefix}{len(self.names)}"
            self.lines.add(f"{name} = {self.variables[node]}[i] {sign} {new}", node.loc.short if node.loc else None)
            new = name
        self.names[v] = new
        return new


def plan(body: Graph, space: tuple[int, ...], given: Sequence[int] = ()) -> Epilogue:
    """The epilogue of `body` over `space`; `given` params are supplied as locals (each must
    map one-to-one onto the space). NotImplementedError where the body does not fit."""
    size = int(np.prod(space, dtype=np.int64))
    if size == 0:
        raise NotImplementedError("an empty iteration space")
    targets = tuple(n for n in body.nodes if n.op in WRITES)
    plain = Graph(body.name, body.params, [n for n in body.nodes if n.op not in WRITES], [])
    if not supported(plain) or any(n.op in INDEX_ONLY and n.inputs[0].node in targets for n in body.nodes):
        raise NotImplementedError("an op without an element form")
    for t in targets:
        elements = int(np.prod(t.out.type.shape, dtype=np.int64))
        if t.attr("validate_shape", True) is False or t.out.type.shape != t.inputs[0].type.shape:
            raise NotImplementedError("an assignment that may change the variable's shape")
        if elements != size and size != 1:
            raise NotImplementedError("an assignment to fewer elements than the kernel's space")
    if len({t.attr("var") for t in targets}) != len(targets):
        raise NotImplementedError("two assignments to one variable in one kernel")
    for r in body.results:
        if int(np.prod(r.type.shape, dtype=np.int64)) not in (size, 1):
            raise NotImplementedError("a result that neither fills the space nor is one element")
    prepared = _prepare(body)
    shapes = [tuple(p.type.shape) for p in body.params]
    accesses = tuple(_accesses(body, prepared.steps, prepared.inputs, shapes, space, size))
    for a in accesses:
        if a.param in given and a.strides is not None and size != 1:
            raise NotImplementedError("a re-indexed contraction result in the epilogue")
    params = tuple(p for p in dict.fromkeys(a.param for a in accesses) if p not in given)
    return Epilogue(body, space, prepared.inputs, accesses, params, targets)


def with_param_for(body: Graph, node: Node) -> tuple[Graph, int]:
    """`body` without `node` (a contraction), whose result becomes one more param: the
    epilogue, and the index of that param."""
    index = len(body.params)
    param = Node("param", (), (("index", index),), (node.out.type,)).out
    mapping: dict[Value, Value] = {node.out: param}
    nodes = []
    for n in body.nodes:
        if n is node:
            continue
        new = n.evolve(inputs=tuple(mapping.get(v, v) for v in n.inputs))
        nodes.append(new)
        mapping.update(zip(n.outputs, new.outputs))
    results = [mapping.get(r, r) for r in body.results]
    return Graph(body.name, [*body.params, param], nodes, results), index
