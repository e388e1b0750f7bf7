"""Column kernels: reductions over leading or middle axes, with their elementwise prologue
and epilogue.

The body is viewed as a 3-D block `(O, R, I)`: `O` kept elements before the reduced axes,
`R` reduced elements, `I` kept elements after them (contiguous in memory). For each `o` the
kernel runs phases like a row kernel, but each reduction accumulates a whole row of `I`
accumulators at a time (`acc[i] += x[o, r, i]`), so the loop over `i` is contiguous and
vectorises, max/min included (its lanes are independent). A kept value (a reduction result
and what is computed from it) lives in an `I`-sized array; full values a later phase reads
are recomputed from the inputs (a whole `R x I` block would not stay in cache).

Every value has a span: which of `O`, `R`, `I` it varies along; arrays are reshaped to the
dims of their span before the call (a scalar input comes as a NumPy scalar).
Big kernels run blocks of the `I` axis in parallel.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from . import reducers
from .buffers import POOL, scratch_maker
from .codegen import ElementWriter, Lines
from .compile import compile_kernel
from .loop import PARALLEL_MIN_ELEMENTS

Span = tuple[bool, bool, bool]
# Big kernels split the kept inner axis into parallel blocks of at least MIN_BLOCK elements
# (a contiguous run long enough to vectorise); small ones stay serial (DESIGN.md: a parallel
# call costs 16-33 us more).
PARALLEL_BLOCKS = 8
MIN_BLOCK = 64


class ColumnKernel:
    """A compiled column kernel for one fused reduction body; `kernel(*arrays) -> outputs`."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str, full: tuple[int, ...], groups: tuple[str, ...],
                 view: tuple[int, int, int]):
        self.body = body
        self.name = name
        self.view = view
        self.spans = {v: _span(v.type.shape, full, groups, view) for v in reducers.values(body)}
        self.phase = reducers.phases(body)
        self.reductions = [n for n in body.nodes if n.op in reducers.OPS]
        self._index = {n: i for i, n in enumerate(body.nodes)}
        self._shapes = {v: self._shape(self.spans[v]) for v in body.params}
        self._shapes.update({r: self._shape(self.spans[r]) or (1,) for r in body.results})
        O, R, I = view
        self.blocks = min(PARALLEL_BLOCKS, I // MIN_BLOCK)
        self.parallel = self.blocks >= 2 and O * R * I >= PARALLEL_MIN_ELEMENTS
        self._inner = f"range(b * I // {self.blocks}, (b + 1) * I // {self.blocks})" if self.parallel \
            else "range(I)"
        self._local = self._local_values()
        self.scratch = self._scratch()
        starts = self._starts()
        self._make_scratch = [functools.partial(filled, scratch_maker((I,), dtype), starts[name]) if name in starts
                              else scratch_maker((I,), dtype) for name, dtype in self.scratch.items()]
        self.source = self._source()
        self._kernel = compile_kernel(self.source, "kernel", parallel=self.parallel, scalar=True)

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        """The results, in recycled buffers or in `into`'s C-contiguous arrays (result index, array)."""
        arrays = [a.reshape(self._shapes[p]) if self._shapes[p] else a.reshape(())[()]  # a scalar as a NumPy scalar
                  for a, p in zip(args, self.body.params)]
        given = dict(into)
        outs = [given[i] if i in given else POOL.empty(r.type.shape, r.type.dtype.np_dtype)
                for i, r in enumerate(self.body.results)]
        scratch = [make() for make in self._make_scratch]
        self._kernel(*arrays, *[o.reshape(self._shapes[r]) for o, r in zip(outs, self.body.results)], *scratch,
                     *self.view)
        return tuple(outs)

    def _shape(self, span: Span) -> tuple[int, ...]:
        """A value's array has the view's dims it varies along only (a scalar none): fewer and
        lower-rank array arguments cost a kernel's compile less (a 3-D array 10 ms, measured)."""
        return tuple(n for n, s in zip(self.view, span) if s)

    def _scratch(self) -> dict[str, np.dtype]:
        """The `I`-sized arrays the kernel keeps per kept element (accumulators, reduction
        results, kept values), by name. The caller passes them: `np.empty` inside a kernel
        costs its compile a typing of numba's allocation and its cached code an import of
        numba's array module when loaded (0.1 s and 30 ms, measured)."""
        scratch: dict[str, np.dtype] = {}
        for n in self.reductions:
            k = self._index[n]
            scratch[f"acc_{k}"] = np.dtype(_acc_np(n))
            if n.op in reducers.ARG_OPS:
                scratch[f"idx_{k}"] = np.dtype(np.int64)
            if n.out not in self._local:
                scratch[f"red_{k}"] = n.types[0].dtype.np_dtype
        for v in self._kept_values():
            if v not in self._local:
                scratch[f"kv_{self._index[v.node]}"] = v.type.dtype.np_dtype
        return scratch

    def _starts(self) -> dict[str, np.generic]:
        """The start value of each accumulator array: the caller fills them, and each `o`'s
        last read of an accumulator restarts it for the next `o`, so the kernel has no loop
        of its own to start them (a loop costs a compile 25-40 ms, measured)."""
        starts: dict[str, np.generic] = {}
        for n in self.reductions:
            k = self._index[n]
            starts[f"acc_{k}"] = reducers.start_value(n)
            if n.op in reducers.ARG_OPS:
                starts[f"idx_{k}"] = np.int64(0)
        return starts

    def _local_values(self) -> set[Value]:
        """Reduction results and kept values computed in the last kept loop, when no pass over
        the data follows it: they live in locals there, not in `I`-sized arrays (a bias
        gradient's sum and its step-size product: two array arguments fewer)."""
        last = max(self.phase.values(), default=0)
        if any(self.phase[n.inputs[0]] == last for n in self.reductions) or \
                any(self.spans[r][1] and self.phase[r] == last for r in self.body.results):
            return set()
        return {n.out for n in self.reductions if self.phase[n.inputs[0]] == last - 1} | \
            {v for v in self._kept_values() if self.phase[v] == last}

    # -- source ------------------------------------------------------------------------------
    def _source(self) -> str:
        """The kernel's code. The view's sizes are arguments (`O`, `R`, `I`), not constants, so
        one compiled kernel serves every shape of the same body (other batch sizes, layer
        widths): each distinct kernel costs its compile (0.1 s a kernel, measured)."""
        params, results = self.body.params, self.body.results
        lines = Lines()
        args = [f"in{i}" for i in range(len(params))] + [f"out{i}" for i in range(len(results))] + list(self.scratch)
        args += ["O", "R", "I"]
        lines.add(f"def kernel({', '.join(args)}):", self.name)
        lines.indent()
        kept = self._kept_values()
        if self.parallel:  # blocks of the kept inner axis: their accumulators are disjoint
            lines.add(f"for b in prange({self.blocks}):")
            lines.indent()
        lines.add("for o in range(O):")
        lines.indent()
        names: dict[Value, str] = {}  # kept values ready so far, as array elements at [i]
        last = max(self.phase.values(), default=0)
        for phase in range(last + 1):
            self._phase_loop(lines, phase, names)
            self._kept_loop(lines, phase, names, kept)
        return lines.source()

    def _kept_values(self) -> list[Value]:
        """Values without an `R` span computed from reduction results (between phases)."""
        return [n.out for n in self.body.nodes if n.op not in reducers.OPS and not self.spans[n.out][1]
                and self.phase[n.out] >= 1]

    def _load(self, v: Value, in_row_loop: bool) -> str:
        position = self.body.params.index(v)
        if self.spans[v][1] and not in_row_loop:
            raise NotImplementedError(f"value {v} varies along the reduced axes outside the row loop")
        index = _index(self.spans[v])
        return f"in{position}[{index}]" if index else f"in{position}"

    def _store(self, position: int, r: Value) -> str:
        return f"out{position}[{_index(self.spans[r]) or 0}]"

    def _phase_loop(self, lines: Lines, phase: int, names: dict[Value, str]) -> None:
        """One pass over the `R x I` block: the full values of this phase, the full results
        computed in it, and the reductions of them."""
        reductions = [n for n in self.reductions if self.phase[n.inputs[0]] == phase]
        outputs = [(i, r) for i, r in enumerate(self.body.results)
                   if self.spans[r][1] and self.phase[r] == phase]
        if not reductions and not outputs:
            return
        lines.add("for r in range(R):")
        lines.indent()
        lines.add(f"for i in {self._inner}:")
        lines.indent()
        writer = ElementWriter(lines, lambda v: self._load(v, True), prefix=f"e{phase}_")
        writer.names.update(names)
        for i, r in outputs:
            lines.add(f"{self._store(i, r)} = {writer.value(r)}")
        for n in reductions:
            k = self._index[n]
            for line in reducers.update(n, f"acc_{k}[i]", f"idx_{k}[i]", writer.value(n.inputs[0]), "r"):
                lines.add(line)
        lines.dedent()
        lines.dedent()

    def _kept_loop(self, lines: Lines, phase: int, names: dict[Value, str], kept: list[Value]) -> None:
        """After phase `phase`'s pass: the results of its reductions, the kept values they make
        ready, and the kept results among them."""
        finished = [n for n in self.reductions if self.phase[n.inputs[0]] == phase]
        ready = [v for v in kept if self.phase[v] == phase + 1]
        last = phase == max(self.phase.values(), default=0)
        outputs = [(i, r) for i, r in enumerate(self.body.results)
                   if not self.spans[r][1] and (self.phase[r] == phase + 1 or (last and self.phase[r] == 0))]
        if not finished and not ready and not outputs:
            return
        lines.add(f"for i in {self._inner}:")
        lines.indent()
        for n in finished:
            k = self._index[n]
            value = reducers.result(n, f"acc_{k}[i]", f"idx_{k}[i]", "R")
            name = f"red_{k}" if n.out in self._local else f"red_{k}[i]"
            lines.add(f"{name} = {value}", n.loc.short if n.loc else None)
            for line in reducers.init(n, f"acc_{k}[i]", f"idx_{k}[i]"):  # restarted for the next o
                lines.add(line)
            names[n.out] = name
        writer = ElementWriter(lines, lambda v: self._load(v, False), prefix=f"k{phase}_")
        writer.names.update(names)
        for v in ready:
            name = f"kv_{self._index[v.node]}" + ("" if v in self._local else "[i]")
            lines.add(f"{name} = {writer.value(v)}")
            names[v] = writer.names[v] = name
        for i, r in outputs:
            lines.add(f"{self._store(i, r)} = {writer.value(r)}")
        lines.dedent()


def filled(make: Callable[[], np.ndarray], value: np.generic) -> np.ndarray:
    """A scratch array from `make`, every element `value` (an accumulator's start)."""
    array = make()
    array.fill(value)
    return array


def _index(span: Span) -> str:
    """The loop variables indexing an array of the dims in `span`."""
    return ", ".join(name for name, s in zip("ori", span) if s)


def _acc_np(node: Node) -> str:
    short = reducers.acc_dtype(node)
    return {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64", "i8": "int8",
            "u8": "uint8", "bool": "bool_"}[short]


def _nonunit(shape: tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1]


def _span(shape: tuple[int, ...], full: tuple[int, ...], groups: tuple[str, ...],
          view: tuple[int, int, int]) -> Span:
    """Which of the view's dims a value of `shape` varies along; NotImplementedError when the
    shape is ambiguous or fits none (the caller then falls back to the reference)."""
    O, R, I = view
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return (False, False, False)
    candidates: set[Span] = set()
    if tuple(shape) == tuple(full):
        candidates.add((O > 1, True, I > 1))
    kept_shape = tuple(d for d, g in zip(full, groups) if g != "r")
    if tuple(shape) == kept_shape:  # a reduction's result without its reduced dims
        candidates.add((O > 1, R == 1, I > 1))  # with R == 1 a kept value is also a full one
    aligned = _aligned_span(shape, full, groups)
    if aligned is not None:
        candidates.add(aligned)
    if len(candidates) != 1:
        raise NotImplementedError(f"value of shape {shape} in a column kernel over {full}")
    return candidates.pop()


def _aligned_span(shape: tuple[int, ...], full: tuple[int, ...], groups: tuple[str, ...]) -> Span | None:
    """The span of a value broadcast against `full` by NumPy's trailing rule."""
    shape = tuple(shape)
    while len(shape) > len(full) and shape[0] == 1:
        shape = shape[1:]
    if len(shape) > len(full):
        return None
    padded = (1,) * (len(full) - len(shape)) + shape
    present = {"o": [], "r": [], "i": []}
    for s, d, g in zip(padded, full, groups):
        if s != 1 and s != d:
            return None
        if d == 1:
            continue
        present[g].append(s == d)
    spans = []
    for g in ("o", "r", "i"):
        if any(present[g]) and not all(present[g]):
            return None
        spans.append(any(present[g]) or (g == "r" and not present["r"] and _nonunit(shape) == _nonunit(full)))
    return tuple(spans)  # type: ignore[return-value]
