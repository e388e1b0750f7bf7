"""A matmul, its epilogue, a split of the result along its columns and the elementwise math
on the pieces, as one kernel: the product through BLAS, then one loop doing the rest.

An RNN cell is `gates = h @ W + xW + b`, `split(gates, 4, axis=1)` and elementwise gate math
on the four (batch, hidden) pieces. Fusion keeps these apart (a split has several results,
and the gate math runs at the pieces' shape): a contraction kernel (product, then a loop
adding xW and b), the split, a loop kernel for the gates. Here one loop reads each element
of the four pieces straight from the product, adds the epilogue's terms and computes the
gates: one pass over the product instead of two, one kernel call per cell instead of three
(the LSTM benchmark's cell: 277 us against 298 us, measured on an idle machine).

Running the cell in column blocks on two threads instead (each block's product, epilogue
and gates on one core) lost: a pool thread woke 20-30 us late, and in a fifth of the calls
not before the caller had done both blocks, and NumPy's OpenBLAS threads, still spinning
after the step's large threaded products, took its core (measured 480-600 us a cell).
recurrence.py runs a whole run of such cells that way, its threads woken once.

An add of the product and an input of its shape (an LSTM's `xW + h @ W`, xW hoisted out of
the time loop) is BLAS's: the product accumulates onto a copy of that input (beta = 1), or
onto the input itself where the step gives it up (`donate`: a dead piece of the hoisted
product, executable._donated), and the loop reads the sum (`_folded_add`).

Covered: a float32/float64 2-D matmul; elementwise epilogues whose inputs are the product's
shape, a row or column of it, or one element; a split along the last axis into equal pieces;
elementwise math at the pieces' shape, inputs likewise, results at that shape. Anything else
is declined (`build` returns None) and the body runs node by node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from .blas import Product
from .buffers import POOL, scratch_maker
from .codegen import INDEX_ONLY, ElementWriter, Lines, supported
from .compile import compile_kernel
from .contraction import covered

FULL, ROW, COLUMN, SCALAR = "full", "row", "column", "scalar"
_IDENTITY = ("identity", "stop_gradient")  # the only re-indexing ops allowed in the bodies


class SplitContractionKernel:
    """`kernel(*arrays, into=()) -> results` for a body matmul -> epilogue -> split -> elementwise."""

    returns_tuple = True

    def __init__(self, plan: "_Plan", name: str):
        body, matmul = plan.body, plan.matmul
        self.name = name
        self.transpose = (bool(matmul.attr("transpose_a")), bool(matmul.attr("transpose_b")))
        self.product_shape = tuple(matmul.types[0].shape)
        self.dtype = matmul.types[0].dtype.np_dtype
        self._a, self._b = (body.params.index(v) for v in matmul.inputs)
        self._addend = None if plan.fold is None else \
            body.params.index(next(v for v in plan.fold.inputs if v != matmul.out))
        self._inputs = [(body.params.index(v), kind) for v, (kind, _) in plan.kinds.items()]
        self._out_types = [(tuple(r.type.shape), r.type.dtype.np_dtype) for r in body.results]
        self.width = plan.split.types[0].shape[-1]
        # The product's BLAS way resolved once here, not per call (product() -> matmul_into
        # took ~4 us of Python a call, measured)
        m, n = self.product_shape
        k = matmul.inputs[0].type.shape[0 if self.transpose[0] else 1]
        self._product = Product(m, k, n, self.dtype, self.transpose)
        self._acc = scratch_maker(self.product_shape, self.dtype)
        acc = "matmul(a, b)" if plan.fold is None else f"in{self._addend} + matmul(a, b)"
        self.source = f"# {name}: acc = {acc} through BLAS, then:\n" + plan.source
        self._kernel = compile_kernel(plan.source, "kernel", scalar=True)  # element by element: no rewrites

    @property
    def addend(self) -> int | None:
        """The input BLAS accumulates the product onto where the caller may give it up
        (`donate`): one read by nothing else in the kernel, or None."""
        others = {self._a, self._b, *(i for i, _ in self._inputs)}
        return None if self._addend is None or self._addend in others else self._addend

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = (),
                 donate: bool = False) -> tuple[np.ndarray, ...]:
        """`donate`: the addend is dead after this call and shares its memory with no live
        value (the step's `_donated` proves it): BLAS accumulates onto it in place instead of
        onto a copy (the LSTM benchmark's cell: 295 us against 324, medians)."""
        if donate:
            acc = args[self._addend]
        else:
            acc = self._acc()
            if self._addend is not None:
                np.copyto(acc, args[self._addend])
        self._product(args[self._a], args[self._b], acc, self._addend is not None)
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(shape, dtype) for i, (shape, dtype) in enumerate(self._out_types)]
        self._kernel(*[_view(np.asarray(args[i]), kind) for i, kind in self._inputs], acc, *outs, 0, acc.shape[0],
                     0, self.width)
        return tuple(outs)


def _view(a: np.ndarray, kind: str) -> np.ndarray:
    """An input as the kernel reads it: 2-D with contiguous rows, a 1-D row, a column, or one
    element as a 1-D array (a 0-d array passed into a parallel region arrives there as a
    scalar: recurrence.py)."""
    if kind == SCALAR:
        return a.reshape(1)
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
    fold: Node | None  # the add of the product and an addend that BLAS computes (`_folded_add`)
    source: str


def build(body: Graph, name: str) -> SplitContractionKernel | None:
    """The kernel for a contraction body of this form (see the module docstring), or None."""
    found = plan(body)
    return None if found is None else SplitContractionKernel(found, name)


def plan(body: Graph) -> _Plan | None:
    """How the kernel would run `body` (its source included, not compiled), or None where
    the body is not of the covered form."""
    matmuls = [n for n in body.nodes if n.op == "matmul"]
    splits = [n for n in body.nodes if n.op == "split"]
    if len(matmuls) != 1 or len(splits) != 1:
        return None
    matmul, split = matmuls[0], splits[0]
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
    if not supported(rest) or any(x.op in INDEX_ONLY and x.op not in _IDENTITY for x in rest.nodes):
        return None
    spaces = [((m, n), before), ((m, width), after)]
    if any(len(t.shape) != 2 and int(np.prod(t.shape)) != 1 or len(t.shape) == 2 and tuple(t.shape) != space
           for space, nodes in spaces for x in nodes for t in x.types):
        return None
    if not _reads_only(before, {matmul.out}) or not _reads_only(after, set(split.outputs)) \
            or not (split.inputs[0] == matmul.out or split.inputs[0].node in before):
        return None
    fold = _folded_add(before, matmul)
    if fold is not None:  # its addend is not read by the loop (unless other math reads it too)
        spaces[0] = ((m, n), [x for x in before if x is not fold])
    kinds: dict[Value, tuple[str, tuple[int, int]]] = {}
    for space, nodes in spaces:
        for v in (v for x in nodes for v in x.inputs if v.node.op == "param"):
            kind = _kind(v.type.shape, space)
            seen = kinds.setdefault(v, (kind, space)) if kind is not None else None
            if seen is None or seen != (kind, space) and not (kind == seen[0] == SCALAR):
                return None  # read differently before and after the split: only one element can be
    try:
        return _Plan(body, matmul, split, kinds, fold, _source(body, matmul, split, kinds, fold))
    except NotImplementedError:  # an op without an element form at this dtype
        return None


def _folded_add(before: list[Node], matmul: Node) -> Node | None:
    """The add of the product and a param of the product's shape and dtype (an RNN cell's
    `xW + h @ W`, xW hoisted out of the time loop), where nothing else reads the product:
    BLAS computes that sum, accumulating the product onto a copy of the addend (beta = 1),
    and the loop reads one array less (the LSTM benchmark's step: 26.7 ms against 28.5,
    medians of steps interleaved in one process, loaded machine). BLAS adds its finished sum over k to the
    addend, as the reference adds the product (split over k in blocks, at larger k than
    an RNN's, the sum rounds as a reordered sum)."""
    readers = [x for x in before if matmul.out in x.inputs]
    if len(readers) != 1 or readers[0].op != "add":
        return None
    others = [v for v in readers[0].inputs if v != matmul.out]
    if len(others) != 1 or others[0].node.op != "param" or others[0].type != matmul.out.type:
        return None
    return readers[0]


def _reads_only(nodes: list[Node], values: set[Value]) -> bool:
    """Whether `nodes` read nothing but `values`, params, constants and each other's results
    (the math before the split reads the product, the math after it the pieces)."""
    inside = set(values) | {v for x in nodes for v in x.outputs}
    return all(v in inside or v.node.op in ("param", "constant") for x in nodes for v in x.inputs)


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
            fold: Node | None) -> str:
    """The loop over the pieces' elements (`acc`: the product, or with `fold` the sum it is
    the addend of). Each array is read through contiguous 1-D slices
    indexed from 0 (one per piece for the math before the split): so indexed, numba knows no
    index is negative and the loop vectorises (an offset index such as `j + 256` did not, and
    ran the gate math 5-10x slower, measured)."""
    lines = Lines()
    inputs = {v: f"q{i}" for i, v in enumerate(kinds)}
    outs = [f"o{i}" for i in range(len(body.results))]
    width = split.types[0].shape[-1]
    starts = range(0, len(split.outputs) * width, width)  # each piece's first column
    lines.add(f"def kernel({''.join(q + ', ' for q in inputs.values())}acc, {', '.join(outs)}, i0, i1, j0, j1):")
    lines.indent()

    def offsets(v: Value) -> Sequence[int]:  # an input read before the split: at each piece
        return starts if kinds[v][1][1] != width else [0]

    for v, q in inputs.items():
        kind = kinds[v][0]
        if kind == SCALAR:
            lines.add(f"{q}s = {q}[0]")
        elif kind == ROW:
            for at in offsets(v):
                lines.add(f"{q}_{at} = _contiguous_row({q}[{at} + j0:{at} + j1])")
    lines.add("for i in range(i0, i1):")
    lines.indent()
    for at in starts:
        lines.add(f"acc_{at} = _contiguous_row(acc[i, {at} + j0:{at} + j1])")
    for v, q in inputs.items():
        kind = kinds[v][0]
        if kind == FULL:
            for at in offsets(v):
                lines.add(f"{q}_{at} = _contiguous_row({q}[i, {at} + j0:{at} + j1])")
        elif kind == COLUMN:
            lines.add(f"{q}s = {q}[i, 0]")
    for o in outs:
        lines.add(f"{o}r = {o}[i, j0:j1]")
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
    for at, piece in zip(starts, split.outputs):
        writer = ElementWriter(lines, loader(at), prefix=f"e{at}_")
        writer.names[matmul.out if fold is None else fold.out] = f"acc_{at}v"
        lines.add(f"acc_{at}v = acc_{at}[j]")
        values[piece] = writer.value(split.inputs[0])
    writer = ElementWriter(lines, loader(0), prefix="g")
    writer.names.update(values)
    for o, r in zip(outs, body.results):
        lines.add(f"{o}r[j] = {writer.value(r)}")
    return lines.source()
