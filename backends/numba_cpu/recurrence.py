"""An unrolled RNN layer's cells as one kernel: every step's product and gate math in one
parallel region, each thread doing a block of the hidden units.

A static RNN (TF1's `for x in unstack(inputs)`) leaves one `split_contraction` cell per time
step, each `gates = h @ W + xW_t`, split into pieces, elementwise gate math. Run cell by
cell, the product went to NumPy's threaded OpenBLAS (215-228 us for the LSTM benchmark's
64x256x1024) while the gate loop (40 us) ran on one core; numba's threads cannot be woken
per cell cheaply (~60 us with `OMP_WAIT_POLICY=passive`). Here the threads are woken once
for the whole run of cells, and the step holding it keeps its other products off NumPy's
threaded BLAS, whose threads would spin on the cores meanwhile (blas.blocks_only). Step by step, each thread claims a column block of every piece,
computes those product columns (microgemm.tile, W packed once) and the gate math for the
same hidden units, and counts the block done; a thread starts the next step once every
block of this one is done, as the next product reads all of this step's state. Blocks are
claimed in order through an atomic counter, so one thread alone (or a region given fewer
threads) still runs every block; a waiting thread spins, yielding now and then
(atomics.wait_for). The LSTM benchmark's cell: ~190-200 us against ~260.

`fuse_recurrences` finds the runs: consecutive contraction nodes with the same cell body
(`split_contraction.plan`), whose product's left operand is an output of the cell before,
and whose weight is one value. Each other input is the same value in every cell, or an
output of the cell before, or a value from outside the run (an LSTM's hoisted `xW` rows).
Every output of every cell is still an output (the hidden states feed the next layer).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from . import microgemm, split_contraction
from .buffers import POOL, scratch_maker
from .compile import FASTMATH, compile_kernel
from .sink_concats import rebuilt
from .split_contraction import FULL

MAX_LEFT_BYTES = 512 * 1024  # the product's left operand, re-read per panel, stays in L2
SHARED, STEP = "shared", "step"


def fuse_recurrences(graph: Graph) -> Graph:
    """`graph` with each run of two or more chained RNN cells (see the module docstring) as
    one `fused` node of kind `recurrence`."""
    controlled = {c for node in graph.nodes for c in node.control_inputs}
    keys = {node: _cell_key(node, controlled) for node in graph.nodes}
    runs: list[list[Node]] = []
    run: list[Node] = []
    for node in graph.nodes:
        if keys[node] is None:
            run = []
            continue
        if run and keys[run[0]] == keys[node] and _chained(run, node, keys[node]):
            run.append(node)
        else:
            run = [node]
            runs.append(run)
    runs = [r for r in runs if len(r) >= 2]
    if not runs:
        return graph
    return rebuilt(graph, {r[0]: _fused(r) for r in runs}, {n for r in runs for n in r[1:]},
                   {r[0]: [v for cell in r for v in cell.outputs] for r in runs})


def _cell_key(node: Node, controlled: set[Node]) -> tuple[Any, ...] | None:
    """What two cells must share to be steps of one run; None where `node` is no cell this
    kernel runs."""
    if node.op != "fused" or node.attr("kind") != "contraction" or node.control_inputs or node in controlled:
        return None
    body: Graph = node.attr("body")
    found = split_contraction.plan(body)
    if found is None:
        return None
    matmul = found.matmul
    dtype = matmul.types[0].dtype.np_dtype
    m, n = matmul.types[0].shape
    k = matmul.inputs[0].type.shape[1]
    width = found.split.types[0].shape[-1]
    if matmul.attr("transpose_a") or dtype.name not in ("float32", "float64") \
            or width % microgemm.panel_width(dtype) or m * k * dtype.itemsize > MAX_LEFT_BYTES \
            or any(r.type.dtype.np_dtype != dtype for r in body.results):
        return None
    left, weight = (body.params.index(v) for v in matmul.inputs)
    return (found.source, tuple(p.type for p in body.params), tuple(r.type for r in body.results), left, weight,
            bool(matmul.attr("transpose_b")))


def _chained(run: list[Node], node: Node, key: tuple[Any, ...]) -> bool:
    """Whether `node` (its `_cell_key`: `key`) continues `run`: its product's left operand is
    an output of the cell before, its weight the same value, and each input plays the role
    it played so far."""
    previous = run[-1]
    roles = [_role(previous, node, i) for i in range(len(node.inputs))]
    left, weight = key[3], key[4]
    if not isinstance(roles[left], int) or roles[weight] != SHARED:
        return False
    outputs = {v for cell in run for v in cell.outputs}
    if any(role == STEP and v in outputs for role, v in zip(roles, node.inputs)):
        return False  # an output of an earlier cell, not the one before: not a recurrence
    return len(run) == 1 or roles == [_role(run[-2], previous, i) for i in range(len(node.inputs))]


def _role(previous: Node, node: Node, i: int) -> str | int:
    """Input `i` of `node`: SHARED with `previous`, the index of `previous`'s output it is,
    or STEP (a value of its own)."""
    v = node.inputs[i]
    if v == previous.inputs[i]:
        return SHARED
    return previous.outputs.index(v) if v in previous.outputs else STEP


def _fused(run: list[Node]) -> Node:
    """One node for the run: its inputs every value the cells read from outside the run; its
    outputs every cell's outputs, step by step; attr `sources`: per step, each cell input as
    ("input", index) or ("output", step, index)."""
    inputs: list[Value] = []
    position: dict[Value, tuple[Any, ...]] = {}
    sources = []
    for step, cell in enumerate(run):
        for q, v in enumerate(cell.outputs):
            position[v] = ("output", step, q)
        row = []
        for v in cell.inputs:
            if v not in position:
                position[v] = ("input", len(inputs))
                inputs.append(v)
            row.append(position[v])
        sources.append(tuple(row))
    first = run[0]
    return Node("fused", tuple(inputs),
                (("body", first.attr("body")), ("kind", "recurrence"), ("sources", tuple(sources))),
                tuple(t for cell in run for t in cell.types), device=first.device, loc=first.loc, name=first.name)


class RecurrenceKernel:
    """`kernel(*arrays, into=()) -> every step's results`, for a `recurrence` node."""

    returns_tuple = True

    def __init__(self, node: Node):
        body: Graph = node.attr("body")
        plan = split_contraction.plan(body)
        assert plan is not None, "fuse_recurrences made a recurrence of a body split_contraction declines"
        self.sources: tuple[tuple[tuple[Any, ...], ...], ...] = node.attr("sources")
        self.steps = len(self.sources)
        matmul = plan.matmul
        self._left, self._weight = (body.params.index(v) for v in matmul.inputs)
        self._transpose_b = bool(matmul.attr("transpose_b"))
        self._addend = None if plan.fold is None else \
            body.params.index(next(v for v in plan.fold.inputs if v != matmul.out))
        self._reads = [(body.params.index(v), kind) for v, (kind, _) in plan.kinds.items()]
        self._outputs = len(body.results)
        self._types = [(tuple(t.shape), t.dtype.np_dtype) for t in node.types]
        self.dtype = matmul.types[0].dtype.np_dtype
        m, n = matmul.types[0].shape
        k = matmul.inputs[0].type.shape[1]
        self._acc = scratch_maker((m, n), self.dtype)
        self._packed = scratch_maker(microgemm.packed_shape(k, n, self.dtype), self.dtype)  # W, packed in the kernel
        self._zeros = np.zeros((m, n), self.dtype) if self._addend is None else None
        first = self.sources[0]
        self._shared = {i for i in range(len(first)) if all(row[i] == first[i] for row in self.sources)}
        self._panels = plan.split.types[0].shape[-1] // microgemm.panel_width(self.dtype)  # per piece
        layer = _layer_source(self, plan)
        cell = plan.source.replace("def kernel(", "def cell(", 1)
        self.source = f"# {node.name or 'recurrence'}: {self.steps} steps of\n{layer}\n{_CELL_DECORATOR}{cell}"
        self._kernel = compile_kernel(layer + "\n\n" + _CELL_DECORATOR + cell, "layer", parallel=True,
                                      prelude=_PRELUDE)

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(shape, dtype) for i, (shape, dtype) in enumerate(self._types)]
        # none strided from this backend's step; were one given, the kernel writes a copy
        written = [o if o.flags.c_contiguous else POOL.empty(o.shape, o.dtype) for o in outs]
        at_output = [o.ctypes.data for o in written]
        count = self._outputs
        held = []  # inputs copied to be read as the kernel reads them: alive through the call

        def address(where: tuple[Any, ...], kind: str) -> int:
            if where[0] == "output":
                return at_output[where[1] * count + where[2]]
            held.append(_prepared(args[where[1]], kind))
            return held[-1].ctypes.data

        def gathered(i: int, kind: str) -> Any:
            """Input `i` as the kernel takes it: the one array where every step shares it,
            else every step's address."""
            if i in self._shared:
                return _prepared(args[self.sources[0][i][1]], kind)
            return np.array([address(row[i], kind) for row in self.sources], np.intp)

        weight = args[self.sources[0][self._weight][1]]
        src = self._zeros if self._addend is None else gathered(self._addend, FULL)
        results = [np.array(at_output[q::count], np.intp) for q in range(count)]
        threads = min(numba.get_num_threads(), self._panels)
        counters = np.zeros(2 * self.steps + 2, np.int64)
        self._kernel(weight.T if self._transpose_b else weight, self._packed(), gathered(self._left, FULL), src,
                     *[gathered(i, kind) for i, kind in self._reads], *results, self._acc(), counters, threads)
        for o, w in zip(outs, written):
            if o is not w:
                np.copyto(o, w)
        return tuple(outs)


def _prepared(x: np.ndarray, kind: str) -> np.ndarray:
    """An input as the kernel reads it (split_contraction._view), C-contiguous (a per-step one
    is read at its address as such): a copy only for others."""
    x = split_contraction._view(x, kind)
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


_PRELUDE = ("from tfjit.backends.numba_cpu.microgemm import MR, pack_panel, tile\n"
            "from tfjit.backends.numba_cpu.atomics import fetch_add, void_pointer, wait_for\n"
            "from numba import carray\n"
            "from tfjit.backends.numba_cpu.scalar_lib import _contiguous_row\n")
_CELL_DECORATOR = (f"@njit(cache=True, error_model='numpy', fastmath=set({sorted(FASTMATH)!r}), nogil=True, "
                   "no_cfunc_wrapper=True, no_rewrites=True)\n")


def _layer_source(kernel: RecurrenceKernel, plan: split_contraction._Plan) -> str:
    """The parallel region: W's panels packed (claimed one by one), then per step, one block
    of each piece's panels per thread (more, smaller blocks measured slower) claimed,
    computed and counted done, then a wait for the step's last block. A block's gate math
    runs MR rows at a time, right after their products, while they are in L1 (the LSTM
    benchmark's step: 187-199 us against 202-207)."""
    panels = kernel._panels
    width = microgemm.panel_width(kernel.dtype)
    m, n = plan.matmul.types[0].shape
    k = plan.matmul.inputs[0].type.shape[1]
    piece = plan.split.types[0].shape[-1]
    pieces = len(plan.split.outputs)
    shapes = [(i, _view_shape(kind, space)) for (i, kind), (_, space) in zip(kernel._reads, plan.kinds.values())]
    reads = [f"g{i}" for i, _ in kernel._reads]
    outs = [f"o{q}" for q in range(kernel._outputs)]

    def at(name: str, i: int | None, shape: tuple[int, ...]) -> str:
        """Input `i` at step `s`: the shared array, or the step's array at its address."""
        if i in kernel._shared:
            return name
        return f"carray(void_pointer({name}[s]), {shape}, np.{kernel.dtype.name})"

    addend = "src" if kernel._addend is None else at("src", kernel._addend, (m, n))
    return "\n".join([
        f"def layer(w, packed, left, src, {''.join(r + ', ' for r in reads)}{', '.join(outs)}, acc, counters, threads):",
        "    for thread in prange(threads):",
        "        while True:",
        "            panel = fetch_add(counters, 0, 1)",
        f"            if panel >= {panels * pieces}:",
        "                break",
        "            pack_panel(w, packed, panel)",
        "            fetch_add(counters, 1, 1)",
        f"        wait_for(counters, 1, {panels * pieces})",
        f"        for s in range({kernel.steps}):",
        f"            a = {at('left', kernel._left, (m, k))}",
        f"            b = {addend}",
        "            while True:",
        "                block = fetch_add(counters, 2 * s + 2, 1)",
        "                if block >= threads:",
        "                    break",
        f"                lo = block * {panels} // threads",
        f"                hi = (block + 1) * {panels} // threads",
        f"                for r in range(0, {m}, MR):",
        f"                    rows = min(MR, {m} - r)",
        f"                    for piece in range({pieces}):",
        f"                        for p in range(piece * {panels} + lo, piece * {panels} + hi):",
        "                            tile(a, packed, b, acc, r, rows, p)",
        f"                    cell({''.join(at(name, i, shape) + ', ' for name, (i, shape) in zip(reads, shapes))}acc, "
        f"{''.join(at(o, -1, (m, piece)) + ', ' for o in outs)}r, r + rows, lo * {width}, hi * {width})",
        "                fetch_add(counters, 2 * s + 3, 1)",
        "            wait_for(counters, 2 * s + 3, threads)",
    ]) + "\n"


def _view_shape(kind: str, space: tuple[int, int]) -> tuple[int, ...]:
    """The shape of an input as the cell reads it (split_contraction._view) in a 2-D space."""
    return {split_contraction.FULL: space, split_contraction.ROW: (space[1],),
            split_contraction.COLUMN: (space[0], 1), split_contraction.SCALAR: (1,)}[kind]


def build(node: Node) -> RecurrenceKernel:
    return RecurrenceKernel(node)
