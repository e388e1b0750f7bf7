"""A matmul, its epilogue, a split of the result along its columns and the elementwise math
on the pieces, as one kernel run in column blocks, one block per core.

An RNN cell is `gates = h @ W + xW + b`, `split(gates, 4, axis=1)` and elementwise gate math
on the four (batch, hidden) pieces. Run as three kernels, the product is threaded by
OpenBLAS and the gate math (a fifth of the cell) runs on one core. Here hidden columns
j0:j1 are one block: the product's columns j0:j1 of each piece (a single-threaded GEMM per
piece, on the block's fixed share of W, which stays in that core's cache across the steps),
then the epilogue and the gate math for those columns while they are in cache, each result
written once. The blocks run on the calling thread and blas's pool helpers (`blas.run_blocks`).

Covered: a float32/float64 2-D matmul; elementwise epilogues whose inputs are the product's
shape, a row or column of it, or one element; a split along the last axis into equal pieces;
elementwise math at the pieces' shape, inputs likewise, results at that shape. Anything else
is declined (`build` returns None) and the body runs node by node.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from . import blas
from .buffers import POOL
from .codegen import ElementWriter, Lines, supported
from .compile import compile_kernel

FULL, ROW, COLUMN, SCALAR = "full", "row", "column", "scalar"
_IDENTITY = ("identity", "stop_gradient")  # the only re-indexing ops allowed in the bodies


class SplitContractionKernel:
    """`kernel(*arrays, into=()) -> results` for a body matmul -> epilogue -> split -> elementwise."""

    returns_tuple = True

    def __init__(self, plan: "_Plan", name: str):
        body, matmul, split = plan.body, plan.matmul, plan.split
        self.name = name
        self.transpose = (bool(matmul.attr("transpose_a")), bool(matmul.attr("transpose_b")))
        self.product_shape = tuple(matmul.types[0].shape)
        self.dtype = matmul.types[0].dtype.np_dtype
        # with a packed weight (sink_splits) the product reads it, the body's last param
        self._operands = [body.params.index(matmul.inputs[0]),
                          len(body.params) - 1 if plan.block_width else body.params.index(matmul.inputs[1])]
        self._inputs = [(body.params.index(v), kind) for v, (kind, _) in plan.kinds.items()]
        self._out_types = [(tuple(r.type.shape), r.type.dtype.np_dtype) for r in body.results]
        self.source = f"# {name}: product columns through BLAS, then the math on them\n" + plan.source
        self._kernel = compile_kernel(plan.source, "kernel", prelude="from tfjit.backends.numba_cpu.gemm import matmul\n")
        a = matmul.inputs[0].type.shape
        m, k = a[::-1] if self.transpose[0] else a
        width = split.types[0].shape[-1]
        flops = 2.0 * m * k * self.product_shape[1]
        self._blocks = ([(j0, j0 + plan.block_width) for j0 in range(0, width, plan.block_width)] if plan.block_width
                        else blas.column_blocks(width, flops))
        key = ("split", *self.product_shape, k, self.transpose, tuple(self._blocks))
        self._chooser = blas.chooser(key, self.dtype.char, flops) if len(self._blocks) > 1 else None

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        a, b = (args[i] for i in self._operands)
        a = a.T if self.transpose[0] else a
        b = b.T if self.transpose[1] else b
        arrays = [_view(np.asarray(args[i]), kind) for i, kind in self._inputs]
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(shape, dtype) for i, (shape, dtype) in enumerate(self._out_types)]
        acc = POOL.empty(self.product_shape, self.dtype)
        call = functools.partial(self._kernel, a, b, *arrays, acc, *outs)
        way = self._chooser.pick() if self._chooser else "blocks"
        start = time.perf_counter()
        if way == "threaded":  # the whole product on NumPy's threaded BLAS, then the math block by block
            np.matmul(a, b, out=acc)
            for j0, j1 in self._blocks:
                call(j0, j1, False)
        else:
            blas.run_blocks([functools.partial(call, j0, j1, True) for j0, j1 in self._blocks])
        if self._chooser:
            self._chooser.record(way, time.perf_counter() - start)
        return tuple(outs)


def _view(a: np.ndarray, kind: str) -> np.ndarray:
    """An input as the kernel reads it: 2-D with contiguous rows, a 1-D row, a column, or 0-d."""
    if kind == SCALAR:
        return a.reshape(())
    if kind == ROW:
        return np.ascontiguousarray(a.reshape(-1))
    if kind == COLUMN:
        return a.reshape(-1, 1)
    return a if a.strides[-1] == a.itemsize else np.ascontiguousarray(a)


@dataclass(frozen=True)
class _Plan:
    body: Graph
    matmul: Node
    split: Node
    kinds: dict[Value, tuple[str, tuple[int, int]]]  # each input the math reads: how, in which space
    source: str
    block_width: int | None  # the blocks of a packed weight (sink_splits), or None


def build(body: Graph, name: str, block_width: int | None = None) -> SplitContractionKernel | None:
    """The kernel for a contraction body of this form (see the module docstring), or None.
    `block_width`: the body's last param is the weight packed for blocks of that many columns."""
    found = plan(body, block_width)
    return None if found is None else SplitContractionKernel(found, name)


def plan(body: Graph, block_width: int | None = None) -> _Plan | None:
    """How the kernel would run `body` (its source included, not compiled), or None where
    the body is not of the covered form."""
    matmuls = [n for n in body.nodes if n.op == "matmul"]
    splits = [n for n in body.nodes if n.op == "split"]
    if len(matmuls) != 1 or len(splits) != 1:
        return None
    matmul, split = matmuls[0], splits[0]
    from .contraction import covered

    if not covered(matmul) or len(matmul.types[0].shape) != 2 or any(len(v.type.shape) != 2 for v in matmul.inputs):
        return None
    m, n = matmul.types[0].shape
    width = split.types[0].shape[-1] if split.types[0].shape else 0
    if split.attr("axis") % 2 != 1 or len(split.inputs) != 1 or width * len(split.outputs) != n \
            or any(tuple(t.shape) != (m, width) for t in split.types):
        return None
    order = body.nodes.index(split)
    before = [x for x in body.nodes[:order] if x is not matmul]
    after = body.nodes[order + 1:]
    if body.nodes.index(matmul) > order or not all(r.node in after for r in body.results) or not after:
        return None
    rest = Graph(body.name, body.params, before + after, [])
    if not supported(rest) or any(x.op in _INDEX_ONLY_OPS and x.op not in _IDENTITY for x in rest.nodes):
        return None
    spaces = [((m, n), before), ((m, width), after)]
    if any(len(t.shape) != 2 and int(np.prod(t.shape)) != 1 or len(t.shape) == 2 and tuple(t.shape) != space
           for space, nodes in spaces for x in nodes for t in x.types):
        return None
    if any(split in (v.node for v in x.inputs) for x in before) or matmul.out in (v for x in after for v in x.inputs):
        return None  # the pieces feed the math after the split only; the product the math before it only
    kinds: dict[Value, tuple[str, tuple[int, int]]] = {}
    for space, nodes in spaces:
        for v in (v for x in nodes for v in x.inputs if v.node.op == "param"):
            kind = _kind(v.type.shape, space)
            seen = kinds.setdefault(v, (kind, space)) if kind is not None else None
            if seen is None or seen != (kind, space) and not (kind == seen[0] == SCALAR):
                return None  # read differently before and after the split: only one element can be
    try:
        return _Plan(body, matmul, split, kinds, _source(body, matmul, split, kinds, block_width is not None),
                     block_width)
    except NotImplementedError:  # an op without an element form at this dtype
        return None


_INDEX_ONLY_OPS = {"broadcast_to", "expand_dims", "squeeze", "reshape", "unreduce", "identity", "stop_gradient"}


def _kind(shape: tuple[int, ...], space: tuple[int, int]) -> str | None:
    """How an input of `shape` broadcasts against a 2-D space, or None."""
    if int(np.prod(shape)) == 1:
        return SCALAR
    if tuple(shape) == space:
        return FULL
    if tuple(shape) in ((space[1],), (1, space[1])):
        return ROW
    if tuple(shape) == (space[0], 1):
        return COLUMN
    return None


def _source(body: Graph, matmul: Node, split: Node, kinds: dict[Value, tuple[str, tuple[int, int]]],
            packed: bool) -> str:
    """The kernel for columns j0:j1 of every piece. Each array is read through contiguous 1-D
    slices indexed from 0 (one per piece for the math before the split): indexed so, numba
    knows no index is negative and the loop vectorises (an offset index `j + 256` from an
    unknown start did not, and ran the gate math 5-10x slower, measured). With a `packed`
    weight, block j0:j1's columns of every piece are columns P*j0:P*j1 of it, and of `acc`."""
    lines = Lines()
    inputs = {v: f"q{i}" for i, v in enumerate(kinds)}
    outs = [f"o{i}" for i in range(len(body.results))]
    width = split.types[0].shape[-1]
    pieces = len(split.outputs)
    lines.add(f"def kernel(a, b, {''.join(q + ', ' for q in inputs.values())}acc, {', '.join(outs)}, j0, j1, product):")
    lines.indent()
    lines.add("if product:")  # else the caller computed the product
    lines.indent()
    if packed:
        lines.add(f"matmul(a, b[:, {pieces} * j0:{pieces} * j1], acc[:, {pieces} * j0:{pieces} * j1], 0.0)")
    else:
        lines.add(f"for p in range({pieces}):")
        lines.indent()
        lines.add(f"lo = p * {width} + j0")
        lines.add("matmul(a, b[:, lo:lo + j1 - j0], acc[:, lo:lo + j1 - j0], 0.0)")
        lines.dedent()
    lines.dedent()

    def offsets(v: Value) -> list[int]:  # where each piece's columns start in the input
        return [p * width for p in range(pieces)] if kinds[v][1][1] != width else [0]

    for v, q in inputs.items():
        kind = kinds[v][0]
        if kind == SCALAR:
            lines.add(f"{q}s = {q}[()]")
        elif kind == ROW:
            for at in offsets(v):
                lines.add(f"{q}_{at} = _contiguous_row({q}[{at} + j0:{at} + j1])")
    lines.add("for i in range(acc.shape[0]):")
    lines.indent()
    for p, at in enumerate(range(0, pieces * width, width)):
        cols = f"{pieces} * j0 + {p} * (j1 - j0):{pieces} * j0 + {p + 1} * (j1 - j0)" if packed else f"{at} + j0:{at} + j1"
        lines.add(f"acc_{at} = _contiguous_row(acc[i, {cols}])")
    for v, q in inputs.items():
        kind = kinds[v][0]
        if kind == FULL:
            for at in offsets(v):
                lines.add(f"{q}_{at} = _contiguous_row({q}[i, {at} + j0:{at} + j1])")
        elif kind == COLUMN:
            lines.add(f"{q}s = {q}[i, 0]")
    for o in outs:
        lines.add(f"{o}r = _contiguous_row({o}[i, j0:j1])")
    lines.add("for j in range(j1 - j0):")
    lines.indent()
    loaded: dict[tuple[int, Value], str] = {}

    def loader(at: int) -> Callable[[Value], str]:
        def load(v: Value) -> str:
            q, kind = inputs[v], kinds[v][0]
            if kind in (SCALAR, COLUMN):
                return f"{q}s"
            start = at if kinds[v][1][1] != width else 0
            if (start, v) not in loaded:
                loaded[start, v] = f"{q}_{start}v"
                lines.add(f"{q}_{start}v = {q}_{start}[j]")
            return loaded[start, v]
        return load

    values: dict[Value, str] = {}
    for p, piece in enumerate(split.outputs):
        at = p * width
        writer = ElementWriter(lines, loader(at), prefix=f"e{p}_")
        writer.names[matmul.out] = f"acc_{at}v"
        lines.add(f"acc_{at}v = acc_{at}[j]")
        values[piece] = writer.value(split.inputs[0])
    writer = ElementWriter(lines, loader(0), prefix="g")
    writer.names.update(values)
    for o, r in zip(outs, body.results):
        lines.add(f"{o}r[j] = {writer.value(r)}")
    return lines.source()
