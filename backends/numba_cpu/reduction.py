"""Row kernels: reductions over trailing axes with their elementwise prologue and epilogue.

A fused reduction body is viewed as rows: `O` rows (the kept dims) of `R` elements (the
reduced trailing dims). For each row the kernel runs phases; phase `p` is one loop over the
row's elements that computes the full-shape values whose inputs are ready and accumulates the
reductions over them. A reduction's result is a per-row scalar ready for phase `p + 1`, so
softmax (max, then sum of exp, then divide) and layer norm are one kernel with a few passes
over a row that stays in cache. A full-shape value a later phase needs is kept in a row-sized
scratch buffer instead of being recomputed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from .buffers import POOL
from .codegen import ElementWriter, Lines, supported
from .compile import compile_kernel

REDUCERS = {"sum", "mean", "max", "min", "prod"}
def _lowest(dtype: np.dtype) -> Any:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _highest(dtype: np.dtype) -> Any:
    return np.inf if dtype.kind == "f" else np.iinfo(dtype).max


# Empty rows reduce to TF's identity (the lowest value for a max), not NumPy's error.
_NUMPY_REDUCE = {"max": lambda a, axis: np.max(a, axis=axis, initial=_lowest(a.dtype)),
                 "min": lambda a, axis: np.min(a, axis=axis, initial=_highest(a.dtype))}
FULL, ROW, COLUMN, SCALAR = "full", "row", "column", "scalar"  # value kinds in row space


class RowKernel:
    """A compiled row kernel for one fused reduction body; `kernel(*arrays) -> outputs`."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str, full: tuple[int, ...], axes: tuple[int, ...]):
        self.body = body
        self.name = name
        k = len(axes)
        self.rows = int(np.prod(full[:-k], dtype=np.int64)) if k < len(full) else 1
        self.cols = int(np.prod(full[-k:], dtype=np.int64))
        self.kinds = {v: _kind(v, full, self.rows, self.cols) for v in _values(body)}
        # Reductions straight over an input run as NumPy's SIMD reductions before the kernel
        # (a max does not vectorise in a loop that must propagate NaN; NumPy's does).
        self.presummed = [n for n in body.nodes if n.op in _NUMPY_REDUCE and n.inputs[0] in body.params
                          and self.kinds[n.inputs[0]] == FULL]
        self.phase = _phases(body, self.kinds, self.presummed)
        self._index = {n: i for i, n in enumerate(body.nodes)}  # stable names in the source
        self.source = self._source()
        self._kernel = compile_kernel(self.source, "kernel")

    def __call__(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        arrays = [_as_2d(a, self.kinds[p], self.rows, self.cols) for a, p in zip(args, self.body.params)]
        position = {p: i for i, p in enumerate(self.body.params)}
        with np.errstate(all="ignore"):
            arrays += [_NUMPY_REDUCE[n.op](arrays[position[n.inputs[0]]], axis=1).astype(n.types[0].dtype.np_dtype)
                       for n in self.presummed]
        outs = [POOL.empty(r.type.shape, r.type.dtype.np_dtype) for r in self.body.results]
        views = [_as_2d(o, self.kinds[r], self.rows, self.cols) for o, r in zip(outs, self.body.results)]
        self._kernel(*arrays, *views)
        return tuple(outs)

    # -- source ------------------------------------------------------------------------------
    def _source(self) -> str:
        lines = Lines()
        params, results = self.body.params, self.body.results
        ins = [f"in{i}" for i in range(len(params))] + [f"pre{i}" for i in range(len(self.presummed))]
        outs = [f"out{i}" for i in range(len(results))]
        lines.add(f"def kernel({', '.join(ins + outs)}):", self.name)
        lines.indent()
        stored = self._stored_values()
        for i, v in enumerate(stored):
            lines.add(f"t{i} = np.empty({self.cols}, np.{v.type.dtype.np_dtype.name})")
        store_name = {v: f"t{i}" for i, v in enumerate(stored)}
        lines.add(f"for r in range({self.rows}):")
        lines.indent()
        row_names: dict[Value, str] = {}
        for i, p in enumerate(params):
            if self.kinds[p] in (ROW, SCALAR):
                row_names[p] = f"in{i}[r, 0]" if self.kinds[p] == ROW else f"in{i}[0, 0]"
        for i, n in enumerate(self.presummed):
            row_names[n.out] = f"pre{i}[r]"
        last_phase = max(self.phase.values(), default=0)
        for phase in range(last_phase + 1):
            self._row_values(lines, row_names, phase)
            self._phase_loop(lines, phase, row_names, store_name, ins)
        self._row_values(lines, row_names, last_phase + 1)
        for o, r in zip(outs, results):
            if self.kinds[r] != FULL:
                lines.add(f"{o}[r, 0] = {row_names[r]}")
        return lines.source()

    def _stored_values(self) -> list[Value]:
        """Full values computed in one phase and read in a later one."""
        out = []
        for node in self.body.nodes:
            for v in node.inputs:
                if self.kinds.get(v) == FULL and v.node.op != "param" and self.phase[v] < self.phase.get(node.out, 0) \
                        and v not in out and node.op not in REDUCERS:
                    out.append(v)
        return out

    def _row_values(self, lines: Lines, names: dict[Value, str], phase: int) -> None:
        """Per-row scalars whose inputs are ready before phase `phase`'s loop."""
        writer = ElementWriter(lines, lambda v: names[v], prefix=f"w{phase}_")
        writer.names.update(names)
        for node in self.body.nodes:
            v = node.out
            if self.kinds[v] in (ROW, SCALAR) and node.op not in REDUCERS and v not in names \
                    and self.phase[v] <= phase:
                names[v] = writer.value(v)

    def _phase_loop(self, lines: Lines, phase: int, row_names: dict[Value, str],
                    store_name: dict[Value, str], ins: list[str]) -> None:
        reductions = [n for n in self.body.nodes if n.op in REDUCERS and self.phase[n.inputs[0]] == phase
                      and n not in self.presummed]
        fulls = [n for n in self.body.nodes if self.kinds[n.out] == FULL and self.phase[n.out] == phase]
        if not reductions and not fulls:
            return
        for n in reductions:
            lines.add(f"acc_{self._index[n]} = {_init(n)}", n.loc.short if n.loc else None)
        lines.add(f"for j in range({self.cols}):")
        lines.indent()
        position = {p: i for i, p in enumerate(self.body.params)}

        def load(v: Value) -> str:
            if v in row_names:
                return row_names[v]
            if v in store_name:
                return f"{store_name[v]}[j]"
            i = position[v]
            return f"in{i}[r, j]" if self.kinds[v] == FULL else f"in{i}[0, j]"

        writer = ElementWriter(lines, load, prefix=f"e{phase}_")
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
            lines.add(f"acc_{self._index[n]} = {_accumulate(n, f'acc_{self._index[n]}', writer.value(n.inputs[0]))}")
        lines.dedent()
        for n in reductions:
            dtype = n.types[0].dtype.short
            value = f"acc_{self._index[n]} / _{dtype}({self.cols})" if n.op == "mean" else f"acc_{self._index[n]}"
            row_names[n.out] = f"red_{self._index[n]}"
            lines.add(f"red_{self._index[n]} = {value}", n.loc.short if n.loc else None)


def _values(body: Graph) -> list[Value]:
    return list(body.params) + [v for n in body.nodes for v in n.outputs]


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


def _phases(body: Graph, kinds: dict[Value, str], presummed: list[Node]) -> dict[Value, int]:
    """The loop phase in which each value is computed (row scalars: before which loop)."""
    phase: dict[Value, int] = {p: 0 for p in body.params}
    for node in body.nodes:
        ready = max((phase[v] for v in node.inputs), default=0)
        if node in presummed:
            phase[node.out] = 0  # ready before the first loop, like an input
        elif node.op in REDUCERS:
            phase[node.out] = ready + 1  # accumulated in the loop of its input's phase
        else:
            for v in node.outputs:
                phase[v] = ready
    return phase


def _init(node: Node) -> str:
    dtype = node.types[0].dtype
    t = dtype.short
    if node.op in ("sum", "mean"):
        return f"_{t}(0)"
    if node.op == "prod":
        return f"_{t}(1)"
    if dtype.is_floating:
        return f"_{t}({'-' if node.op == 'max' else ''}np.inf)"
    info = np.iinfo(dtype.np_dtype)
    return f"_{t}({info.min if node.op == 'max' else info.max})"


def _accumulate(node: Node, acc: str, v: str) -> str:
    if node.op in ("sum", "mean"):
        return f"{acc} + {v}"
    if node.op == "prod":
        return f"{acc} * {v}"
    return f"_maximum({acc}, {v})" if node.op == "max" else f"_minimum({acc}, {v})"


def _as_2d(a: np.ndarray, kind: str, rows: int, cols: int) -> np.ndarray:
    if kind == FULL:
        return a.reshape(rows, cols)
    if kind == ROW:
        return a.reshape(rows, 1)
    if kind == COLUMN:
        return a.reshape(1, cols)
    return a.reshape(1, 1)


def build(node: Node) -> RowKernel | None:
    """A row kernel for a fused reduction node, or None when its shape does not fit one
    (reductions over leading axes, unknown shapes, ops without an element form)."""
    body: Graph = node.attr("body")
    reducers = [n for n in body.nodes if n.op in REDUCERS or _is_reduction(n)]
    if not reducers or any(n.op not in REDUCERS for n in reducers):
        return None
    others = Graph(body.name, body.params, [n for n in body.nodes if n.op not in REDUCERS], [])
    if not supported(others):
        return None
    spaces = {(n.inputs[0].type.shape, _axes(n)) for n in reducers}
    if len(spaces) != 1:
        return None
    full, axes = spaces.pop()
    if full is None or not all(isinstance(d, int) for d in full) or axes != tuple(range(len(full) - len(axes), len(full))):
        return None
    if any(not v.type.is_fully_defined for v in _values(body)):
        return None
    try:
        return RowKernel(body, node.name or "row_kernel", tuple(full), axes)
    except NotImplementedError:
        return None


def _axes(node: Node) -> tuple[int, ...]:
    axes = node.attr("axes")
    rank = len(node.inputs[0].type.shape)
    return tuple(range(rank)) if axes is None else tuple(axes)


def _is_reduction(node: Node) -> bool:
    from tfjit.ops.registry import Fusion, get_op

    return get_op(node.op).fusion is Fusion.REDUCTION
