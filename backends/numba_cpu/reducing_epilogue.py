"""A contraction epilogue that ends in sums or means of its elementwise values.

The fuse pass lets a contraction's kernel take in a sum or mean over its output's shape
(passes/fuse.py): the lecture's regression loss `mean(square(sigmoid(x @ W + b) - d))`, or a
bias gradient `sum(dz, axis=0)`. One loop over the product then computes the elementwise
results and accumulates the reductions, where a separate reduction kernel read the full
values back (the regression step's loss mean alone ran 23 us).

The product's shape `S` is viewed as rows: `ROWS = prod(S[:-1])` rows of `COLS = S[-1]`
elements. Each body value is a scalar, one value per row, one per column, or full; each
reduction is over every axis (a full sum), the leading axes (a sum per column) or the last
axis (a sum per row). A full sum adds up per-row partial sums (a vectorised inner loop, and
better rounding than one running sum). Values computed from the reductions' results at their
shape (a bias's step `b - lr * sum(dz, axis=0)`, a scaled loss) come after them: per row
after the row's loop, per column and scalar after the last row. Bodies outside this (other
broadcasts, other axes, a reduced value read at the product's shape) raise
NotImplementedError; contraction.py then runs a loop kernel and NumPy's reductions. Big
kernels run blocks of rows in parallel, each with its own partial sums.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from . import reducers
from .buffers import POOL, scratch_maker
from .codegen import INDEX_ONLY, ElementWriter, Lines
from .compile import compile_kernel
from .loop import PARALLEL_MIN_ELEMENTS

SCALAR, ROW, COL, FULL = "scalar", "row", "col", "full"  # what a value varies along in the row view
OPS = ("sum", "mean")
PARALLEL_BLOCKS = 16  # blocks of rows of a big kernel (a few per thread: a slow thread is waited for less)


class ReducingEpilogue:
    """`epilogue(acc, *args, into=()) -> results` for an epilogue body over the product `acc`
    (param 0) whose results include sums or means of its values, or values computed from
    those at their shape (`post`: a bias's new value `b - lr * sum(dz, axis=0)`)."""

    def __init__(self, body: Graph, name: str, space: tuple[int, ...]):
        self.body = body
        self.name = name
        self.space = space
        self.rows, self.cols = int(np.prod(space[:-1], dtype=np.int64)), int(space[-1])
        self.reductions = [n for n in body.nodes if n.op in OPS]
        self.reduced = {n: _reduced(n, space) for n in self.reductions}
        self.post = after_reductions(body, self.reductions)
        main = [n for n in body.nodes if n not in self.post and n not in self.reductions]
        self.kinds = _main_kinds(body, main, self.reductions, space)
        _post_kinds(self.kinds, self.post, self.reduced, self.rows, self.cols)
        _check(main, self.kinds)
        if any(self.kinds[r] != FULL for r in body.results if r.node in main or r in body.params):
            raise NotImplementedError("an elementwise result that does not fill the product's shape")
        read = {v for n in body.nodes for v in n.inputs} | set(body.results)
        self.inputs = [i for i, p in enumerate(body.params) if p in read]  # the params the kernel reads
        self.parallel = self.rows >= 2 and self.rows * self.cols >= PARALLEL_MIN_ELEMENTS
        self.blocks = min(self.rows, PARALLEL_BLOCKS) if self.parallel else 1
        self._shapes = [self._view(self.kinds[body.params[i]]) for i in self.inputs]
        self._out_shapes = [self._view(self.kinds[r]) if self.kinds[r] != SCALAR else (1,) for r in body.results]
        self._out_types = [(tuple(r.type.shape), r.type.dtype.np_dtype) for r in body.results]
        self._partials = [scratch_maker((self.blocks,) if self.reduced[n] == SCALAR else (self.blocks, self.cols),
                                        n.inputs[0].type.dtype.np_dtype)
                          for n in self.reductions if self.parallel and self.reduced[n] != ROW]
        self._partials += [scratch_maker((self.cols,), n.inputs[0].type.dtype.np_dtype)
                           for n in self._scratch_columns()]
        self._source = self._write()
        self._kernel = compile_kernel(self._source, "kernel", parallel=self.parallel, scalar=True)

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        """The results, in recycled buffers or in `into`'s C-contiguous arrays (result index, array)."""
        arrays = [np.asarray(args[i]).reshape(s) if s else np.asarray(args[i]).reshape(())[()]  # a NumPy scalar
                  for i, s in zip(self.inputs, self._shapes)]
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(shape, dtype) for i, (shape, dtype) in enumerate(self._out_types)]
        partials = [make() for make in self._partials]
        self._kernel(*arrays, *[o.reshape(s) for o, s in zip(outs, self._out_shapes)], *partials,
                     self.rows, self.cols)
        return tuple(outs)

    def _scratch_columns(self) -> list[Node]:
        """The serial column sums that are no result: they accumulate in a scratch row the
        caller passes (an `np.empty` in the kernel made numba compile its allocation, 90 of the
        190 ms this kernel's compile took in the MLP step, measured)."""
        results = set(self.body.results)
        return [n for n in self.reductions if not self.parallel and self.reduced[n] == COL and n.out not in results]

    def source(self) -> str:
        return f"# {self.name}\n{self._source}"

    def _view(self, kind: str) -> tuple[int, ...]:
        return {SCALAR: (), ROW: (self.rows,), COL: (self.cols,), FULL: (self.rows, self.cols)}[kind]

    # -- source ----------------------------------------------------------------------------------
    def _write(self) -> str:
        body, lines = self.body, Lines()
        ins = {body.params[i]: f"in{i}" for i in self.inputs}
        outs = {r: f"out{i}" for i, r in enumerate(body.results)}
        accs = {n: f"acc_{i}" for i, n in enumerate(self.reductions)}
        partials = [f"part_{i}" for i, n in enumerate(self.reductions) if self.parallel and self.reduced[n] != ROW]
        part_of = dict(zip([n for n in self.reductions if self.reduced[n] != ROW], partials))
        scratch = [accs[n] for n in self._scratch_columns()]
        lines.add(f"def kernel({', '.join([*ins.values(), *outs.values(), *partials, *scratch, 'ROWS', 'COLS'])}):")
        lines.indent()
        at = {SCALAR: "{}", ROW: "{}[r]", COL: "{}[j]", FULL: "{}[r, j]"}

        def load(v: Value) -> str:
            return at[self.kinds[v]].format(ins[v])

        names: dict[Value, str] = {}
        writers = {kind: ElementWriter(lines, load, prefix=prefix) for kind, prefix in
                   ((SCALAR, "h"), (ROW, "w"), (FULL, "v"), ("post " + SCALAR, "s"), ("post " + ROW, "q"),
                    ("post " + COL, "c"))}

        def compute(kind: str, post: bool = False) -> None:
            """The body values of this kind not yet written (COL with FULL, in the element loop;
            `post`: those computed from reductions' results)."""
            writer = writers[("post " if post else "") + kind]
            writer.names.update(names)
            for n in self.post if post else body.nodes:
                for v in n.outputs:
                    if v not in names and _level(self.kinds.get(v, "")) == _level(kind) and n.op not in OPS \
                            and (post or n not in self.post) and n.op not in INDEX_ONLY and n.op != "constant":
                        names[v] = writer.value(v)

        def value(v: Value, kind: str, post: bool = False) -> str:
            return names.get(v) or writers[("post " if post else "") + kind].value(v)

        compute(SCALAR)
        # A column sum accumulates in its output (serial; a scratch row if it is no result) or
        # in its block's row of partial sums (parallel): `column_accs` formats element j.
        column_accs = {n: (f"{part_of[n]}[b, {{}}]" if self.parallel else f"{outs.get(n.out, accs[n])}[{{}}]")
                       for n in self.reductions if self.reduced[n] == COL}
        if self.parallel:
            lines.add(f"for b in prange({self.blocks}):")
            lines.indent()
        for n, acc in column_accs.items():
            lines.add(f"for j in range(COLS): {acc.format('j')} = {reducers.start(n)}")
        for n in self.reductions:
            if self.reduced[n] == SCALAR:
                lines.add(f"{accs[n]} = {reducers.start(n)}")
        rows = f"range(b * ROWS // {self.blocks}, (b + 1) * ROWS // {self.blocks})" if self.parallel else "range(ROWS)"
        lines.add(f"for r in {rows}:")
        lines.indent()
        compute(ROW)
        for n in self.reductions:
            if self.reduced[n] != COL:
                lines.add(f"{accs[n]}_r = {reducers.start(n)}")
        lines.add("for j in range(COLS):")
        lines.indent()
        compute(FULL)
        for r, o in outs.items():
            if self.kinds[r] == FULL:
                lines.add(f"{o}[r, j] = {value(r, FULL)}")
        for n in self.reductions:
            acc = column_accs[n].format("j") if self.reduced[n] == COL else f"{accs[n]}_r"
            lines.add(f"{acc} = {reducers.combine(n, acc, value(n.inputs[0], FULL))}", n.loc.short if n.loc else None)
        lines.dedent()
        for n in self.reductions:
            if self.reduced[n] == SCALAR:
                lines.add(f"{accs[n]} = {reducers.combine(n, accs[n], f'{accs[n]}_r')}")
            elif self.reduced[n] == ROW:
                names[n.out] = f"red_{accs[n]}"
                lines.add(f"{names[n.out]} = {reducers.result(n, f'{accs[n]}_r', '', 'COLS')}")
        self._results(lines, ROW, outs, "[r]", compute, value)
        lines.dedent()
        for n in self.reductions:
            if self.reduced[n] == SCALAR and self.parallel:
                lines.add(f"{part_of[n]}[b] = {accs[n]}")
        if self.parallel:
            lines.dedent()
        self._finish(lines, outs, accs, part_of, column_accs, names, compute, value)
        return lines.source()

    def _results(self, lines: Lines, kind: str, outs: dict[Value, str], at: str, compute: Callable[..., None],
                 value: Callable[..., str]) -> None:
        """The values computed from reductions of this kind, and the results of this kind."""
        compute(kind, post=True)
        for r, o in outs.items():
            if self.kinds[r] == kind:
                lines.add(f"{o}{at} = {value(r, kind, post=True)}")

    def _finish(self, lines: Lines, outs: dict[Value, str], accs: dict[Node, str], part_of: dict[Node, str],
                column_accs: dict[Node, str], names: dict[Value, str], compute: Callable[..., None],
                value: Callable[..., str]) -> None:
        """The full and column reductions' results, from their (per-block) sums, and the values
        computed from them."""
        for n in self.reductions:
            if self.reduced[n] != SCALAR:
                continue
            total = f"{accs[n]}_t" if self.parallel else accs[n]  # not a name the parallel loop assigns
            if self.parallel:
                lines.add(f"{total} = {reducers.start(n)}")
                lines.add(f"for b in range({self.blocks}): {total} = {reducers.combine(n, total, f'{part_of[n]}[b]')}")
            names[n.out] = f"red_{accs[n]}"
            lines.add(f"{names[n.out]} = {reducers.result(n, total, '', 'ROWS * COLS')}")
        self._results(lines, SCALAR, outs, "[0]", compute, value)
        columns = [n for n in self.reductions if self.reduced[n] == COL]
        if not any(self.kinds[r] == COL for r in outs):
            return
        lines.add("for j in range(COLS):")
        lines.indent()
        for n in columns:
            if self.parallel:
                lines.add(f"{accs[n]}_t = {reducers.start(n)}")
                combined = reducers.combine(n, f"{accs[n]}_t", f"{part_of[n]}[b, j]")
                lines.add(f"for b in range({self.blocks}): {accs[n]}_t = {combined}")
                total = f"{accs[n]}_t"
            else:
                total = column_accs[n].format("j")
            names[n.out] = f"red_{accs[n]}"
            lines.add(f"{names[n.out]} = {reducers.result(n, total, '', 'ROWS')}")
        self._results(lines, COL, outs, "[j]", compute, value)


def after_reductions(body: Graph, reductions: list[Node]) -> list[Node]:
    """The body's nodes computed from the reductions' results, in order."""
    reached = {n.out for n in reductions}
    post = []
    for n in body.nodes:
        if n not in reductions and any(v in reached for v in n.inputs):
            post.append(n)
            reached.update(n.outputs)
    return post


def _main_kinds(body: Graph, main: list[Node], reductions: list[Node], space: tuple[int, ...]) -> dict[Value, str]:
    """What each value the element loop reads or computes varies along."""
    values = [v for n in main for v in (*n.inputs, *n.outputs)] + [n.inputs[0] for n in reductions]
    values += [r for r in body.results if r.node in main or r in body.params]
    return {v: _kind(v, space) for v in dict.fromkeys(values)}


def _post_kinds(kinds: dict[Value, str], post: list[Node], reduced: dict[Node, str], rows: int, cols: int) -> None:
    """Adds to `kinds` the reductions' results and the values computed from them: each one
    scalar, one per column (from column sums) or one per row (from row sums, without full
    sums, which are ready only after the last row)."""
    size_of = {COL: cols, ROW: rows}
    for n, kind in reduced.items():
        kinds[n.out] = kind
    for n in post:
        inputs = [kinds.get(v) if v.node in reduced or v.node in post else None for v in n.inputs]
        along = {k for k in inputs if k not in (None, SCALAR)}
        if len(along) > 1 or (ROW in along and SCALAR in inputs):
            raise NotImplementedError("values from row sums with column or full sums")
        size = int(np.prod(n.types[0].shape, dtype=np.int64))
        kind = next(iter(along), SCALAR)
        if size != size_of.get(kind, 1):
            raise NotImplementedError(f"a value of shape {n.types[0].shape} computed from a reduction")
        kinds[n.out] = kind
        for v, k in zip(n.inputs, inputs):
            if k is not None:
                continue
            own = SCALAR if v.type.num_elements == 1 else kind
            if v.node.op not in ("param", "constant") and own != SCALAR:
                raise NotImplementedError("a value of the element loop read after the reduction")
            if kinds.setdefault(v, own) != own:
                raise NotImplementedError("an operand read both in the element loop and after the reduction")


def _level(kind: str) -> str:
    """Where a value of this kind is computed: before the loops, per row, or per element."""
    return FULL if kind == COL else kind


def _kind(v: Value, space: tuple[int, ...]) -> str:
    """What `v` varies along in the row view of `space` (by NumPy's trailing broadcasting)."""
    shape = tuple(v.type.shape or ())
    if v.type.shape is None or len(shape) > len(space):
        raise NotImplementedError("a value of unknown or higher rank")
    padded = (1,) * (len(space) - len(shape)) + shape
    if any(d not in (1, s) for d, s in zip(padded, space)):
        raise NotImplementedError(f"a value of shape {shape} that does not broadcast to {space}")
    if int(np.prod(padded, dtype=np.int64)) == 1:
        return SCALAR
    if padded == space:
        return FULL
    if all(d == 1 for d in padded[:-1]):
        return COL
    if padded[-1] == 1 and padded[:-1] == space[:-1]:
        return ROW
    raise NotImplementedError(f"a broadcast of shape {shape} over {space} that is neither rows nor columns")


def _reduced(node: Node, space: tuple[int, ...]) -> str:
    """What a reduction's result varies along: nothing (every axis), columns (the leading
    axes) or rows (the last axis)."""
    if node.op not in OPS or not node.types[0].dtype.is_floating or tuple(node.inputs[0].type.shape) != space:
        raise NotImplementedError("a reduction other than a float sum or mean over the product's shape")
    axes, rank = reducers.axes(node), len(space)
    size = int(np.prod(node.types[0].shape, dtype=np.int64))
    if axes == tuple(range(rank)):
        return SCALAR
    if axes == tuple(range(rank - 1)) and size == space[-1]:
        return COL
    if axes == (rank - 1,) and size == int(np.prod(space[:-1], dtype=np.int64)):
        return ROW
    raise NotImplementedError(f"a reduction over axes {axes} of {space}")


def _check(main: list[Node], kinds: dict[Value, str]) -> None:
    """NotImplementedError where the row view does not hold in the element loop: an index-only
    op that changes what a value varies along, or a constant that is no scalar."""
    for n in main:
        if n.op in INDEX_ONLY and kinds[n.out] != kinds[n.inputs[0]]:
            raise NotImplementedError(f"{n.op} changing a value's broadcast inside the epilogue")
        if n.op == "constant" and n.attr("value").array.size != 1:
            raise NotImplementedError("a non-scalar constant inside the epilogue")
