"""CUDA row kernels: reductions over trailing axes with their prologue and epilogue.

The row view, value kinds and phases are the CPU row kernel's (this class reuses them); the
difference is who walks a row. One block takes a row (a grid-stride loop over rows when
there are more rows than blocks): in each phase its threads stride over the row's elements,
each accumulating a partial result, and a tree reduction in shared memory combines the
partials into the per-row scalar the next phase reads (softmax: max, then sum of exp, then
the division; layer norm: mean, then variance, then the normalisation — one kernel). A
full-shape value a later phase reads is kept in a global scratch array; each thread reads
back only the elements it wrote, so that needs no synchronisation.
"""
from __future__ import annotations

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from ..numba_cpu import reduction as cpu
from ..numba_cpu.codegen import ElementWriter, Lines, supported
from ..numba_cpu.loop import single_node_body
from ..numba_cpu import reducers as accumulators
from ..numba_cpu.reduction import COLUMN, FULL, ROW
from .compile import DeviceLines, compile_kernel
from .runtime import Buffer, current_stream

# The reductions a shared-memory tree combines with one expression.
REDUCERS = {"sum", "mean", "max", "min", "prod"}
MAX_THREADS = 256
MAX_BLOCKS = 1024


class CudaRowKernel(cpu.RowKernel):
    """Callable as `kernel(*buffers) -> buffers` on the device."""

    def __init__(self, body: Graph, name: str, full: tuple[int, ...], axes: tuple[int, ...]):
        self.body = body
        self.name = name
        k = len(axes)
        self.rows = int(np.prod(full[:-k], dtype=np.int64)) if k < len(full) else 1
        self.cols = int(np.prod(full[-k:], dtype=np.int64))
        if self.rows * self.cols == 0:
            raise NotImplementedError("an empty row space")
        self.threads = min(MAX_THREADS, max(32, 1 << (self.cols - 1).bit_length()))
        self.kinds = {v: cpu._kind(v, full, self.rows, self.cols) for v in accumulators.values(body)}
        self.early: list[Node] = []  # every reduction runs in the phase loops
        self.phase = accumulators.phases(body)
        self._index = {n: i for i, n in enumerate(body.nodes)}
        self.stored = self._stored_values()
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)
        self.dtypes = tuple(v.type.dtype.np_dtype for v in (*body.params, *body.results, *self.stored))

    def __call__(self, *args: Buffer) -> tuple[Buffer, ...]:
        outs = [Buffer.empty_on_device(tuple(r.type.shape), r.type.dtype.np_dtype) for r in self.body.results]
        scratch = [Buffer.empty_on_device((self.rows * self.cols,), v.type.dtype.np_dtype) for v in self.stored]
        blocks = min(MAX_BLOCKS, self.rows)
        self.kernel[blocks, self.threads, current_stream()](*(a.to_device() for a in args), *(b.device for b in outs + scratch))
        return tuple(outs)

    def _source(self) -> str:
        lines = DeviceLines()
        params, results = self.body.params, self.body.results
        outs = [f"out{i}" for i in range(len(results))]
        store_name = {v: f"t{i}" for i, v in enumerate(self.stored)}
        args = [f"in{i}" for i in range(len(params))] + outs + list(store_name.values())
        lines.add(f"def kernel({', '.join(args)}):", self.name)
        lines.indent()
        lines.add("tid = cuda.threadIdx.x")
        for n in self.body.nodes:
            if n.op in REDUCERS:
                dtype = n.types[0].dtype.np_dtype.name
                lines.add(f"sh_{self._index[n]} = cuda.shared.array({self.threads}, np.{dtype})")
        lines.add("r = cuda.blockIdx.x")
        lines.add(f"while r < {self.rows}:")
        lines.indent()
        row_names: dict[Value, str] = {}
        for i, p in enumerate(params):
            if self.kinds[p] == ROW:
                row_names[p] = f"in{i}[r]"
            elif self.kinds[p] not in (FULL, COLUMN):
                row_names[p] = f"in{i}[0]"
        last_phase = max(self.phase.values(), default=0)
        for phase in range(last_phase + 1):
            self._row_values(lines, row_names, phase)
            self._phase_loop(lines, phase, row_names, store_name, [])
        self._row_values(lines, row_names, last_phase + 1)
        written = [(o, r) for o, r in zip(outs, results) if self.kinds[r] != FULL]
        if written:
            lines.add("if tid == 0:")
            lines.indent()
            for o, r in written:
                lines.add(f"{o}[{'r' if self.kinds[r] == ROW else 0}] = {row_names[r]}")
            lines.dedent()
        lines.add("r += cuda.gridDim.x")
        return lines.source()

    def _phase_loop(self, lines: Lines, phase: int, row_names: dict[Value, str],
                    store_name: dict[Value, str], ins: list[str]) -> None:
        reductions = [n for n in self.body.nodes if n.op in REDUCERS and self.phase[n.inputs[0]] == phase]
        fulls = [n for n in self.body.nodes if self.kinds[n.out] == FULL and self.phase[n.out] == phase]
        if not reductions and not fulls:
            return
        for n in reductions:
            lines.add(f"acc_{self._index[n]} = {accumulators.start(n)}", n.loc.short if n.loc else None)
        lines.add("j = tid")
        lines.add(f"while j < {self.cols}:")
        lines.indent()
        position = {p: i for i, p in enumerate(self.body.params)}
        element = f"r * {self.cols} + j"

        def load(v: Value) -> str:
            if v in row_names:
                return row_names[v]
            if v in store_name:
                return f"{store_name[v]}[{element}]"
            return f"in{position[v]}[{element if self.kinds[v] == FULL else 'j'}]"

        writer = ElementWriter(lines, load, prefix=f"e{phase}_")
        writer.names.update(row_names)
        for v, buffer in store_name.items():
            if self.phase[v] < phase:
                writer.names[v] = f"{buffer}[{element}]"
        for n in fulls:
            name = writer.value(n.out)
            if n.out in store_name:
                lines.add(f"{store_name[n.out]}[{element}] = {name}")
        for i, r in enumerate(self.body.results):
            if self.kinds[r] == FULL and self.phase[r] == phase:
                lines.add(f"out{i}[{element}] = {writer.value(r)}")
        for n in reductions:
            acc = f"acc_{self._index[n]}"
            lines.add(f"{acc} = {accumulators.combine(n, acc, writer.value(n.inputs[0]))}")
        lines.add(f"j += {self.threads}")
        lines.dedent()
        for n in reductions:
            row_names[n.out] = self._tree(lines, n)

    def _tree(self, lines: Lines, n: Node) -> str:
        """Combine the threads' partial results of reduction `n` in shared memory; the name
        of the row's result."""
        i = self._index[n]
        shared = f"sh_{i}"
        lines.add(f"{shared}[tid] = acc_{i}")
        lines.add("cuda.syncthreads()")
        lines.add(f"s = {self.threads // 2}")
        lines.add("while s > 0:")
        lines.indent()
        lines.add("if tid < s:")
        lines.indent()
        lines.add(f"{shared}[tid] = {accumulators.combine(n, f'{shared}[tid]', f'{shared}[tid + s]')}")
        lines.dedent()
        lines.add("cuda.syncthreads()")
        lines.add("s //= 2")
        lines.dedent()
        dtype = n.types[0].dtype.short
        value = f"{shared}[0] / _{dtype}({self.cols})" if n.op == "mean" else f"{shared}[0]"
        lines.add(f"red_{i} = {value}", n.loc.short if n.loc else None)
        lines.add("cuda.syncthreads()")  # every thread has read the total before the next row reuses it
        return f"red_{i}"


def build(node: Node) -> CudaRowKernel | None:
    """A CUDA row kernel for a fused reduction node (or a lone reduction), or None where the CPU backend's row
    kernel would not apply either (leading-axis reductions, unknown shapes, ...)."""
    body: Graph = node.attr("body") if node.op == "fused" else single_node_body(node)
    reducers = [n for n in body.nodes if n.op in REDUCERS or cpu._is_reduction(n)]
    if not reducers or any(n.op not in REDUCERS for n in reducers):
        return None
    others = Graph(body.name, body.params, [n for n in body.nodes if n.op not in REDUCERS], [])
    if not supported(others):
        return None
    spaces = {(n.inputs[0].type.shape, accumulators.axes(n)) for n in reducers}
    if len(spaces) != 1:
        return None
    full, axes = spaces.pop()
    trailing = full is not None and axes == tuple(range(len(full) - len(axes), len(full)))
    if not trailing or not all(isinstance(d, int) for d in full):
        return None
    if any(not v.type.is_fully_defined for v in accumulators.values(body)):
        return None
    try:
        return CudaRowKernel(body, node.name or "row_kernel", tuple(full), axes)
    except NotImplementedError:
        return None
