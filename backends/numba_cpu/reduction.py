"""Row kernels: reductions over trailing axes with their elementwise prologue and epilogue.

A fused reduction body is viewed as rows: `O` rows (the kept dims) of `R` elements (the
reduced trailing dims). For each row the kernel runs phases; phase `p` is one loop over the
row's elements that computes the full-shape values whose inputs are ready and accumulates the
reductions over them. A reduction's result is a per-row scalar ready for phase `p + 1`, so
softmax (max, then sum of exp, then divide) and layer norm are one kernel with a few passes
over a row that stays in cache. A full-shape value a later phase needs is kept in a row-sized
scratch buffer instead of being recomputed. A max or min straight over an input is taken
before the first pass with several accumulators (it vectorises, and leaves the row in cache).
Rows narrower than one vector (a classifier's ten logits) cannot vectorise: their kernels take
maxima in a plain loop and call libm's float32 exp & co., and so need none of the helpers that
cost 0.15-0.3 s each to compile in a fresh process (measured); per-row scalars (the log of a
softmax's sum) call libm in every kernel.
Big kernels run blocks of rows in parallel. Reductions over leading or middle axes become
column kernels (column.py); `build` picks the kind from the reduced axes.
A row kernel may also take column sums: sums or means over the leading axes (the ones its rows
run along) of full values it computes, as a bias gradient sums a softmax cross-entropy's
gradient (passes/fuse.py). Each accumulates row by row in a row-sized scratch (one per parallel
block, added up at the end), and after the last row the kernel computes them and the math on
them at their shape: one kernel fewer to compile, and the summed values are not read back.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from . import reducers
from .buffers import POOL, scratch_maker
from .column import ColumnKernel, filled
from .codegen import INDEX_ONLY, ElementWriter, Lines, supported
from .compile import compile_kernel
from .loop import PARALLEL_MIN_ELEMENTS, VECTOR_LANES
from .reducing_epilogue import after_reductions


FULL, ROW, COLUMN, SCALAR = "full", "row", "column", "scalar"  # value kinds in row space
# Rows of a big kernel run in parallel blocks (a few per thread, so a slow thread is waited
# for less); a small kernel stays serial (a parallel call costs 16-33 us more, DESIGN.md).
PARALLEL_BLOCKS = 16
# A max/min of computed values is taken over a row-sized scratch they are written to, with
# several accumulators: in the element loop, one NaN-propagating accumulator is a serial
# chain (measured: softmax of x * a + b, 6.6 ms against 3 ms for softmax of x).
_VIA_ROW = {"max", "min"}


class RowKernel:
    """A compiled row kernel for one fused reduction body; `kernel(*arrays) -> outputs`."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str, full: tuple[int, ...], rows: int, cols: int,
                 columns: tuple[Node, ...] = ()):
        self.body = body
        self.name = name
        self.rows, self.cols = rows, cols
        # Column sums and the values computed from them: ready after the last row.
        self.columns = list(columns)
        self.after = after_reductions(body, self.columns)
        self.column_values = {v for n in self.columns + self.after for v in n.outputs}
        self.kinds = _kinds(body, full, rows, cols, self.column_values)
        self._check_after()
        # A max/min straight over an input runs before the row's first pass, with several
        # accumulators (one NaN-propagating accumulator does not vectorise); it also brings
        # the row into cache for that pass.
        self.early = [n for n in body.nodes if n.op in ("max", "min") and n.inputs[0] in body.params
                          and self.kinds[n.inputs[0]] == FULL]
        self.phase = reducers.phases(body, frozenset(self.early))
        self._index = {n: i for i, n in enumerate(body.nodes)}  # stable names in the source
        self.parallel = rows >= 2 and rows * cols >= PARALLEL_MIN_ELEMENTS
        self.narrow = cols < VECTOR_LANES
        self.blocks = min(rows, PARALLEL_BLOCKS)
        self.scratch = self._scratch()
        self._sizes = (rows,) if self.narrow else (rows, cols)
        # One row scratch per parallel block; a serial kernel takes its one row as a 1-D array
        # (a view made in the kernel costs its compile more than the argument does).
        shape = (self.blocks, cols) if self.parallel else (cols,)
        starts = {f"cacc_{self._index[n]}": reducers.start_value(n) for n in self.columns}
        self._make_scratch = [functools.partial(filled, scratch_maker(shape, dtype), starts[name]) if name in starts
                              else scratch_maker(shape, dtype) for name, dtype in self.scratch.items()]
        self.source = self._source()
        self._kernel = compile_kernel(self.source, "kernel", parallel=self.parallel, scalar=True)

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        """The results, in recycled buffers or in `into`'s C-contiguous arrays (result index, array)."""
        arrays = [_as_2d(a, self.kinds[p], self.rows, self.cols) if self.kinds[p] != SCALAR else a.reshape(())[()]
                  for a, p in zip(args, self.body.params)]
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(r.type.shape, r.type.dtype.np_dtype)
                for i, r in enumerate(self.body.results)]
        views = [_as_2d(o, self.kinds[r], self.rows, self.cols) for o, r in zip(outs, self.body.results)]
        scratch = [make() for make in self._make_scratch]
        self._kernel(*arrays, *views, *scratch, *self._sizes)
        return tuple(outs)

    def _scratch(self) -> dict[str, np.dtype]:
        """Row-sized scratch rows, one per parallel block, by the name the kernel gives a block's
        row: full values kept for a later phase, and rows a max/min is taken over. The caller
        passes them (as column.py's `_scratch` says why)."""
        scratch = {f"t{i}": v.type.dtype.np_dtype for i, v in enumerate(self._stored_values())}
        for n in self.body.nodes:
            if n.op in _VIA_ROW and n not in self.early:
                scratch[f"row_{self._index[n]}"] = n.types[0].dtype.np_dtype
        for n in self.columns:  # filled with the sum's start value by the caller
            scratch[f"cacc_{self._index[n]}"] = n.inputs[0].type.dtype.np_dtype
        return scratch

    def _check_after(self) -> None:
        """NotImplementedError unless every value computed after the last row is at the column
        sums' shape and reads only them, inputs of that shape or scalars, and math on those."""
        for v in self.column_values:
            if v.type.num_elements != self.cols:
                raise NotImplementedError(f"a value of shape {v.type.shape} computed from column sums")
        for n in self.after:
            for v in n.inputs:
                if v not in self.column_values and not self._recomputable(v):
                    raise NotImplementedError(f"a value of shape {v.type.shape} of the rows read after the last row")

    def _recomputable(self, v: Value) -> bool:
        """Whether code after the rows' loop can compute `v` from the kernel's inputs."""
        node = v.node
        if node.op == "param":
            return self.kinds[v] in (SCALAR, COLUMN) or (self.kinds[v] == FULL and self.rows == 1)
        if node.op in reducers.OPS or self.kinds[v] not in (SCALAR, COLUMN):
            return False
        return all(self._recomputable(u) for u in node.inputs)

    # -- source ------------------------------------------------------------------------------
    def _source(self) -> str:
        lines = Lines()
        params, results = self.body.params, self.body.results
        ins = [f"in{i}" for i in range(len(params))]
        outs = [f"out{i}" for i in range(len(results))]
        # The sizes are arguments, not constants, as in column.py's kernels (and for the same
        # reason), but for a narrow row: its length as a constant lets LLVM unroll the row's
        # loops instead of vectorising them for rows they never run on, which halved such a
        # kernel's compile (a softmax gradient over ten logits: 0.25 s to 0.13 s, measured).
        scratch = [f"{name}s" if self.parallel else name for name in self.scratch]
        args = ins + outs + scratch + ["ROWS"] + ([] if self.narrow else ["COLS"])
        lines.add(f"def kernel({', '.join(args)}):", self.name)
        lines.indent()
        if self.narrow:
            lines.add(f"COLS = {self.cols}")
        stored = self._stored_values()
        if self.parallel:  # contiguous blocks of rows, one row scratch per block
            lines.add(f"for b in prange({self.blocks}):")
            lines.indent()
            for name in self.scratch:
                lines.add(f"{name} = {name}s[b]")
        store_name = {v: f"t{i}" for i, v in enumerate(stored)}
        if self.parallel:
            lines.add(f"for r in range(b * ROWS // {self.blocks}, (b + 1) * ROWS // {self.blocks}):")
        else:
            lines.add("for r in range(ROWS):")
        lines.indent()
        row_names: dict[Value, str] = {}
        for i, p in enumerate(params):
            if self.kinds[p] in (ROW, SCALAR):  # a scalar input comes as a NumPy scalar
                row_names[p] = f"in{i}[r, 0]" if self.kinds[p] == ROW else f"in{i}"
        for n in self.early:
            k = self._index[n]
            self._extreme(lines, n, f"red_{k}", f"in{params.index(n.inputs[0])}[r]", f"in{params.index(n.inputs[0])}[r, {{}}]")
            row_names[n.out] = f"red_{k}"
        last_phase = max((p for v, p in self.phase.items() if v not in self.column_values), default=0)
        for phase in range(last_phase + 1):
            self._row_values(lines, row_names, phase)
            self._phase_loop(lines, phase, row_names, store_name, ins)
        self._row_values(lines, row_names, last_phase + 1)
        for o, r in zip(outs, results):
            if self.kinds[r] in (ROW, SCALAR):
                lines.add(f"{o}[r, 0] = {row_names[r]}")
        for _ in range(2 if self.parallel else 1):  # out of the rows' (and blocks') loop
            lines.dedent()
        self._after_rows(lines)
        return lines.source()

    def _after_rows(self, lines: Lines) -> None:
        """After the last row: the column sums (their blocks' sums added up in block order),
        the values computed from them, and the results at their shape."""
        results = [(i, r) for i, r in enumerate(self.body.results) if self.kinds[r] == COLUMN]
        if not results:
            return
        position = {p: i for i, p in enumerate(self.body.params)}

        def load(v: Value) -> str:
            return f"in{position[v]}" if self.kinds[v] == SCALAR else f"in{position[v]}[0, j]"

        lines.add("for j in range(COLS):")
        lines.indent()
        writer = ElementWriter(lines, load, prefix="c_", vector=False)  # once per call: no vector helpers
        for n in self.columns:
            k = self._index[n]
            total = f"cacc_{k}[j]"
            if self.parallel:
                total = f"cacc_{k}_t"
                lines.add(f"{total} = {reducers.start(n)}")
                lines.add(f"for b in range({self.blocks}): {total} = {reducers.combine(n, total, f'cacc_{k}s[b, j]')}")
            lines.add(f"red_{k} = {reducers.result(n, total, '', 'ROWS')}", n.loc.short if n.loc else None)
            writer.names[n.out] = f"red_{k}"
        for i, r in results:
            lines.add(f"out{i}[0, j] = {writer.value(r)}")
        lines.dedent()

    def _extreme(self, lines: Lines, node: Node, name: str, row: str, element: str) -> None:
        """`name` = the max or min of the row `row` (`element` formats one of its elements):
        scalar_lib's several-accumulator function, or for a narrow row a plain loop."""
        comment = node.loc.short if node.loc else None
        if not self.narrow:
            lines.add(f"{name} = _row_{node.op}({row})", comment)
            return
        lines.add(f"{name} = {element.format(0)}", comment)
        lines.add("for j in range(1, COLS):")
        # NaN-propagating, as scalar_lib's _maximum/_minimum, written out: numba inlines a
        # helper at each call site at some cost to the compile
        better = ">" if node.op == "max" else "<"
        lines.add(f"    {name}_x = {element.format('j')}")
        lines.add(f"    {name} = {name} if ({name} {better} {name}_x or {name} != {name}) else {name}_x")

    def _stored_values(self) -> list[Value]:
        """Full values computed in one phase and read in a later one (not broadcasts of a
        per-row value: a later phase reads that value itself)."""
        out = []
        for node in self.body.nodes:
            for v in node.inputs:
                if self.kinds.get(v) == FULL and v.node.op != "param" and self.phase[v] < self.phase.get(node.out, 0) \
                        and v not in out and node.op not in reducers.OPS and not self._broadcast_row(v):
                    out.append(v)
        return out

    def _broadcast_row(self, v: Value) -> bool:
        """Whether full value `v` only re-indexes a per-row or scalar value."""
        while v.node.op in INDEX_ONLY:
            v = v.node.inputs[0]
        return self.kinds[v] in (ROW, SCALAR)

    def _row_values(self, lines: Lines, names: dict[Value, str], phase: int) -> None:
        """Per-row scalars whose inputs are ready before phase `phase`'s loop."""
        writer = ElementWriter(lines, lambda v: names[v], prefix=f"w{phase}_", vector=False)
        writer.names.update(names)
        for node in self.body.nodes:
            v = node.out
            if self.kinds[v] in (ROW, SCALAR) and node.op not in reducers.OPS and v not in names \
                    and self.phase[v] <= phase:
                names[v] = writer.value(v)

    def _phase_loop(self, lines: Lines, phase: int, row_names: dict[Value, str],
                    store_name: dict[Value, str], ins: list[str]) -> None:
        reductions = [n for n in self.body.nodes if n.op in reducers.OPS and self.phase[n.inputs[0]] == phase
                      and n not in self.early and n not in self.columns]
        columns = [n for n in self.columns if self.phase[n.inputs[0]] == phase]
        fulls = [n for n in self.body.nodes if self.kinds[n.out] == FULL and self.phase[n.out] == phase]
        if not reductions and not fulls and not columns:
            return
        for n in reductions:
            k = self._index[n]
            for line in [] if n.op in _VIA_ROW else reducers.init(n, f"acc_{k}", f"idx_{k}"):
                lines.add(line, n.loc.short if n.loc else None)
        lines.add("for j in range(COLS):")
        lines.indent()
        position = {p: i for i, p in enumerate(self.body.params)}

        def load(v: Value) -> str:
            if v in row_names:
                return row_names[v]
            if v in store_name:
                return f"{store_name[v]}[j]"
            i = position[v]
            return f"in{i}[r, j]" if self.kinds[v] == FULL else f"in{i}[0, j]"

        writer = ElementWriter(lines, load, prefix=f"e{phase}_", vector=not self.narrow)
        writer.names.update(row_names)  # per-row scalars ready before this loop
        for v, buffer in store_name.items():
            if self.phase[v] < phase:
                writer.names[v] = f"{buffer}[j]"  # kept from an earlier phase's loop
        for n in fulls:
            name = writer.value(n.out)
            if n.out in store_name:
                lines.add(f"{store_name[n.out]}[j] = {name}")
        for i, r in enumerate(self.body.results):
            if self.kinds[r] == FULL and self.phase[r] == phase:
                lines.add(f"out{i}[r, j] = {writer.value(r)}")
        for n in reductions:
            k = self._index[n]
            if n.op in _VIA_ROW:
                lines.add(f"row_{k}[j] = {writer.value(n.inputs[0])}")
                continue
            for line in reducers.update(n, f"acc_{k}", f"idx_{k}", writer.value(n.inputs[0]), "j"):
                lines.add(line)
        for n in columns:
            acc = f"cacc_{self._index[n]}[j]"
            lines.add(f"{acc} = {reducers.combine(n, acc, writer.value(n.inputs[0]))}", n.loc.short if n.loc else None)
        lines.dedent()
        for n in reductions:
            k = self._index[n]
            row_names[n.out] = f"red_{k}"
            if n.op in _VIA_ROW:
                self._extreme(lines, n, f"red_{k}", f"row_{k}", f"row_{k}[{{}}]")
            else:
                lines.add(f"red_{k} = {reducers.result(n, f'acc_{k}', f'idx_{k}', 'COLS')}",
                          n.loc.short if n.loc else None)


def _kinds(body: Graph, full: tuple[int, ...], rows: int, cols: int, columns: set[Value]) -> dict[Value, str]:
    """Each value's kind; `columns` (column sums and the values computed from them) are column
    values. When rows == cols, a value of `rows` elements may be either a row or a column
    value: a param or constant is taken by its shape (a column, as NumPy broadcasts it), a
    computed value by how it was made (a reduction's result is a row value; an elementwise
    value has its inputs' kind)."""
    kinds: dict[Value, str] = {}
    for v in reducers.values(body):
        if v in columns:
            kinds[v] = COLUMN
            continue
        kind = _kind(v, full, rows, cols)
        if rows == cols and kind == COLUMN and v.node.op != "param":
            made = {kinds[u] for u in v.node.inputs} - {SCALAR}
            if v.node.op in reducers.OPS or made == {ROW}:
                kind = ROW
            elif made - {COLUMN}:
                raise NotImplementedError(f"value of shape {v.type.shape} from {sorted(made)} values "
                                          f"in a row kernel over {full}")
        kinds[v] = kind
    return kinds


def _kind(v: Value, full: tuple[int, ...], rows: int, cols: int) -> str:
    shape = v.type.shape
    n = v.type.num_elements
    if n == rows * cols and _nonunit(shape) == _nonunit(full):
        return FULL
    if n == 1:
        return SCALAR
    if n == rows and rows != cols:
        return ROW
    k = len(full) - len(_trailing(full, cols))
    if n == cols and _nonunit(shape) == _nonunit(full[k:]):
        return COLUMN
    raise NotImplementedError(f"value of shape {shape} in a row kernel over {full}")


def _nonunit(shape: Any) -> list[int]:
    return [d for d in shape if d != 1]


def _trailing(full: tuple[int, ...], cols: int) -> tuple[int, ...]:
    out: tuple[int, ...] = ()
    for d in reversed(full):
        if int(np.prod(out, dtype=np.int64)) == cols:
            break
        out = (d,) + out
    return out


def _as_2d(a: np.ndarray, kind: str, rows: int, cols: int) -> np.ndarray:
    if kind == FULL:
        return a.reshape(rows, cols)
    if kind == ROW:
        return a.reshape(rows, 1)
    if kind == COLUMN:
        return a.reshape(1, cols)
    return a.reshape(1, 1)


def build(node: Node) -> RowKernel | ColumnKernel | None:
    """A row or column kernel for a fused reduction node, or None when it does not fit one
    (reduced axes that are not one block, unknown or empty shapes, ops without an element
    form): the executable then runs the body node by node."""
    body: Graph = node.attr("body")
    reductions = [n for n in body.nodes if n.op in reducers.OPS or _is_reduction(n)]
    if not reductions or any(n.op not in reducers.OPS for n in reductions):
        return None
    others = Graph(body.name, body.params, [n for n in body.nodes if n.op not in reducers.OPS], [])
    if not supported(others) or any(not v.type.is_fully_defined for v in reducers.values(body)):
        return None
    space = _row_space(reductions)
    if space is None:
        return None
    full, axes, columns = space
    groups = _groups(full, axes)
    if groups is None or 0 in full:
        return None
    view = tuple(int(np.prod([d for d, g in zip(full, groups) if g == k], dtype=np.int64)) for k in "ori")
    try:
        if view[2] == 1 and view[1] > 1:
            return RowKernel(body, node.name or "row_kernel", full, view[0], view[1], columns)
        if columns:
            return None
        return ColumnKernel(body, node.name or "column_kernel", full, groups, view)  # type: ignore[arg-type]
    except NotImplementedError:
        return None


def _row_space(reductions: list[Node]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[Node, ...]] | None:
    """The reductions' input shape, their reduced axes, and the column sums among them: float
    sums and means of the same shape over the leading axes, where the others reduce the
    trailing ones (a row kernel then takes them). None for any other mix of spaces."""
    spaces = {(tuple(n.inputs[0].type.shape), reducers.axes(n)) for n in reductions}
    if len(spaces) == 1:
        full, axes = spaces.pop()
        return full, axes, ()
    if len(spaces) != 2 or len({full for full, _ in spaces}) != 1:
        return None
    (full, first), (_, second) = spaces
    rank = len(full)
    for axes, leading in ((first, second), (second, first)):
        kept = rank - len(axes)
        if kept >= 1 and axes == tuple(range(kept, rank)) and leading == tuple(range(kept)):
            columns = tuple(n for n in reductions if reducers.axes(n) == leading)
            if all(n.op in ("sum", "mean") and n.types[0].dtype.is_floating for n in columns):
                return full, axes, columns
    return None


def _groups(full: tuple[int, ...], axes: tuple[int, ...]) -> tuple[str, ...] | None:
    """Each dim's role: `o` kept before the reduced block, `r` reduced, `i` kept after it;
    None when the reduced dims (size-1 dims aside) are not one contiguous block."""
    big = [i for i, d in enumerate(full) if d != 1]
    reduced = [k for k, i in enumerate(big) if i in axes]
    if reduced and reduced[-1] - reduced[0] + 1 != len(reduced):
        return None
    first = big[reduced[0]] if reduced else 0  # nothing reduced: every kept dim is inner
    return tuple("r" if i in axes else ("o" if i < first else "i") for i in range(len(full)))


def _is_reduction(node: Node) -> bool:
    from tfjit.ops.registry import Fusion, get_op

    return get_op(node.op).fusion is Fusion.REDUCTION
