"""A compiled plan: one generated Python step function calling every kernel in order.

Each node becomes one line of `step`: a generated numba kernel where the codegen covers the
node (loop kernels, row and column reductions), the op's NumPy reference otherwise. Generating the step
removes the interpreter loop, dict lookups and per-node dispatch from `Session.run`; values
are deleted after their last use. An exception inside the step is re-raised naming the node
and the user's line (the step's source maps lines back to nodes).

Intermediates live in an arena: the memory plan (passes/plan_memory.py), made here on the
graph this executable runs (after its own rewrites, knowing which kernels compute fresh
results and take `into` arrays), puts each planned value at an aligned offset of one
allocation, and the kernel computing it writes there. A run checks an arena out of the
plan's free list (a new one when other threads hold them all) and gives it back at the end:
two threads never share one, and the arrays of an arena are made once. What the plan leaves
out keeps the pool (buffers.py): results handed to the user and everything that may view
them, values of kernels that take no `into` (convolutions, pooling, references), pieces
written into a concat's block, and values of unknown size.

Kernels never write into their inputs, with one exception: an RNN cell whose addend (a
piece of the LSTM's hoisted input product) is a planned value nothing else can read any
more is passed `donate=True`, and BLAS accumulates onto it instead of onto a copy
(`_donated` says when that is safe).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import linecache
import sys
from typing import Any, Callable, Sequence

import numpy as np

from tfjit.errors import InvalidArgumentError, OpError, where
from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import Fusion, get_op
from tfjit.passes.plan_memory import MemoryPlan, plan
from tfjit.runtime.state import RuntimeState

from . import (blas, contraction, control_flow, conv, gemm_update, layout, loop, pool, recurrence, reduction,
               split_contraction, update)
from .buffers import POOL, Arena
from .column import ColumnKernel
from .recurrence import fuse_recurrences
from .sink_concats import sink_concats
from .sink_reads import sink_reads
from .sink_splits import sink_splits


class NumbaExecutable:
    def __init__(self, graph: Graph):
        # sink_reads: so optimizer kernels update their slots in place; sink_concats: so a
        # pointwise convolution reads a concat's pieces instead of a copy of them; sink_splits:
        # so an RNN cell's product, gate split and gate math run as one kernel; fuse_recurrences:
        # so an unrolled RNN layer's cells run in one parallel region
        self.graph = graph = fuse_recurrences(sink_splits(sink_concats(sink_reads(graph))))
        self.kernels: list[tuple[Node, Any]] = [(n, _kernel_for(n)) for n in graph.nodes]
        kernels = [k for _, k in self.kernels]
        concats = _placed_concats(graph, kernels)
        kernel_of = dict(self.kernels)
        self.memory = plan(graph, fresh=lambda n: _writes_into(kernel_of[n]),
                           unplanned=[v for blocks in concats.values() for v in blocks])
        self._arena_bytes, self._arena_kernels = _arena_layout(graph, self.memory)
        self._arenas: list[Arena] = []  # free ones; a run takes one and gives it back
        self._step, self._filename = _generate_step(graph, kernels, concats, self.memory)
        # a step holding an RNN layer (recurrence.py) keeps its products off NumPy's threaded
        # BLAS, whose threads spin after each call and would take a core from the layer's
        self._blas_mode = blas.blocks_only if any(isinstance(k, recurrence.RecurrenceKernel) for k in kernels) \
            else contextlib.nullcontext

    def run(self, args: Sequence[np.ndarray], state: RuntimeState) -> list[np.ndarray]:
        try:
            arena = self._arenas.pop()
        except IndexError:  # the first run, or other threads hold every arena
            arena = Arena(self._arena_bytes, self._arena_kernels)
        try:
            with self._blas_mode():
                return self._step(list(args), state, arena.into)
        except Exception as e:  # name the node whose line failed, as the reference backend does
            node = self._failing_node(sys.exc_info()[2])
            if node is None or (isinstance(e, OpError) and e.node_def is not None):
                raise
            if isinstance(e, OpError):
                raise type(e)(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e.message}") from None
            raise InvalidArgumentError(node, node.op, f"{where(node.op, node.loc)} ({node.name}): {e}") from e
        finally:  # results never view the arena (the plan leaves them out): it is free again
            self._arenas.append(arena)

    def _failing_node(self, tb: Any) -> Node | None:
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is None:
            return None
        index = line - _FIRST_NODE_LINE
        return self.graph.nodes[index] if 0 <= index < len(self.graph.nodes) else None

    # Debug modes only (backends/debug_modes.py): `run` above stays the fast generated step.
    def run_each(self, args: Sequence[np.ndarray], state: RuntimeState,
                 visit: Callable[[Node, list[np.ndarray], Callable[[], tuple[Any, ...]]], tuple[Any, ...]]
                 ) -> list[np.ndarray]:
        """Run the kernels one by one in schedule order, so a checker sees every kernel's results
        (each in a buffer of its own, from the pool: a checker may keep them).

        `visit(node, inputs, call)` must call `call()` (which runs the node's kernel on `inputs`
        and returns its outputs, as the step would bind them) and return those outputs.
        """
        env: dict[Value, Any] = dict(zip(self.graph.params, args))
        for node, kernel in self.kernels:
            inputs = [env[v] for v in node.inputs]
            outputs = visit(node, inputs, functools.partial(_call_kernel, node, kernel, inputs, state))
            env.update(zip(node.outputs, outputs))
        return [env[v] for v in self.graph.results]


def compile_graph(graph: Graph) -> NumbaExecutable:
    return NumbaExecutable(graph)


def kernel_sources(exe: NumbaExecutable, indent: str = "") -> str:
    """The step function and every generated kernel's source (`tfjit dump --stage kernels`)."""
    parts = [indent + line for line in "".join(linecache.getlines(exe._filename)).splitlines()]
    for node, kernel in exe.kernels:
        if isinstance(kernel, loop.LoopKernel):
            source = kernel.source()
        elif isinstance(getattr(kernel, "source", None), str):  # row/column, conv, pooling, GEMM updates
            source = kernel.source
        elif isinstance(kernel, contraction.ContractionKernel):
            source = kernel.source()
        elif hasattr(kernel, "inners"):  # while / cond: their sub-graphs' steps
            for what, inner in kernel.inners.items():
                parts.append(f"{indent}# {node.name}: {what}")
                parts.append(kernel_sources(inner, indent + "    "))
            continue
        elif hasattr(kernel, "inner"):
            parts.append(f"{indent}# {node.name}: runs its body's nodes in turn")
            parts.append(kernel_sources(kernel.inner, indent + "    "))
            continue
        else:
            continue
        parts.append("\n".join(indent + line for line in source.rstrip().splitlines()))
    return "\n".join(parts)


# Kernels whose results are always arrays they compute (never an input or a view of one) and
# that write them into arrays given as `into=((result index, array), ...)`.
_INTO_KERNELS = (loop.LoopKernel, reduction.RowKernel, ColumnKernel, contraction.ContractionKernel,
                 contraction.MatmulKernel, split_contraction.SplitContractionKernel, gemm_update.GemmStepKernel,
                 recurrence.RecurrenceKernel)


def _writes_into(kernel: Any) -> bool:
    return isinstance(kernel, _INTO_KERNELS) and getattr(kernel, "distinct_results", True)


def _arena_layout(graph: Graph, memory: MemoryPlan) -> tuple[int, list[list[tuple[int, int, tuple[int, ...], Any]]]]:
    """The arena's bytes, and per node with planned results (in order) each one's result
    index, offset, shape and dtype (buffers.Arena)."""
    offsets, nbytes = memory.offsets()
    kernels = []
    for node in graph.nodes:
        planned = [(v.index, offsets[memory.buffer_of[v]], tuple(v.type.shape), v.type.dtype.np_dtype)
                   for v in node.outputs if v in memory.buffer_of]
        if planned:
            kernels.append(planned)
    return nbytes, kernels


def _kernel_for(node: Node) -> Callable[..., Any]:
    """The callable running `node`: generated code where available, else its reference."""
    opdef = get_op(node.op)
    kind = node.attr("kind") if node.op == "fused" else None
    generated = None
    if kind == "loop" or (node.op != "fused" and opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST)
                          and not opdef.stateful):
        generated = loop.build(node)
    elif kind == "reduction":
        generated = reduction.build(node)
    elif kind == "recurrence":
        generated = recurrence.build(node)
    elif kind == "update":
        generated = update.build(node, lambda body: _run_body(NumbaExecutable(_loops_fused(body))))
    elif kind == "contraction":
        generated = (gemm_update.build_step(node) or contraction.build(node) or gemm_update.build(node)
                     or conv.build_fused(node))
    elif kind is None:  # convolutions, pooling and lone matmuls
        generated = conv.build(node) or pool.build(node) or contraction.build_matmul(node)
    if generated is not None:
        return generated
    if node.op in ("while", "cond"):
        return control_flow.build(node, NumbaExecutable)
    if node.op != "fused" and (view := layout.build(node)) is not None:
        return view
    if node.op == "fused":  # run the body node by node; its elementwise runs still form loops
        body = node.attr("body")
        split = contraction.split_assignments(body) if kind == "contraction" else body
        # a split product's assignments and their math: one update kernel (update.py)
        inner = NumbaExecutable(body if kind == "loop" else _updates_fused(split) if split is not body
                                else _loops_fused(split))
        return _run_body(inner)
    attrs = node.attr_dict
    if opdef.stateful:
        return functools.partial(_with_state, opdef.reference, attrs)
    return functools.partial(opdef.reference, **attrs) if attrs else opdef.reference


def _loops_fused(body: Graph) -> Graph:
    from tfjit.passes.fuse import fuse_loops

    return fuse_loops(body)


def _updates_fused(body: Graph) -> Graph:
    from tfjit.passes.fuse import fuse

    return fuse(body)


def _run_body(inner: NumbaExecutable) -> Callable[..., Any]:
    def run(*args: np.ndarray, state: RuntimeState) -> tuple[np.ndarray, ...]:
        return tuple(inner.run(args, state))

    run.needs_state = True  # type: ignore[attr-defined]
    run.returns_tuple = True  # type: ignore[attr-defined]
    run.inner = inner  # type: ignore[attr-defined]
    return run


def _with_state(reference: Callable[..., Any], attrs: dict[str, Any], *args: np.ndarray, state: RuntimeState) -> Any:
    return reference(*args, state=state, **attrs)


_with_state.needs_state = True  # type: ignore[attr-defined]
_FIRST_NODE_LINE = 3  # the step's source: def line, params line, then one line per node


def _one(out: Any) -> np.ndarray:
    """A reference's single result as an array (some return a 1-tuple or a NumPy scalar)."""
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def _needs_state(kernel: Any) -> bool:
    target = kernel.func if isinstance(kernel, functools.partial) else kernel
    return bool(getattr(target, "needs_state", False))


def _call_kernel(node: Node, kernel: Any, inputs: list[np.ndarray], state: RuntimeState) -> tuple[Any, ...]:
    """One kernel call of `run_each`, with the step's calling and result conventions."""
    out = kernel(*inputs, state=state) if _needs_state(kernel) else kernel(*inputs)
    if not node.types:
        return ()
    if len(node.types) == 1 and not getattr(kernel, "returns_tuple", False):
        return (_one(out),)
    return tuple(out)


_WRITES_BLOCKS = (loop.LoopKernel, split_contraction.SplitContractionKernel,  # kernels writing into a concat's blocks
                  recurrence.RecurrenceKernel)


def _placed_concats(graph: Graph, kernels: list[Any]) -> dict[Node, dict[Value, str]]:
    """Concats whose inputs the kernels producing them write straight into the concat's
    result, each input into its block (an unrolled RNN's hidden states, stacked for the next
    layer's merged product, are then never copied): per concat, each input's index into the
    result. Only blocks that are contiguous qualify (every dim before the axis is 1), and an
    input produced by a kernel of this step taking `into=`, not placed into another concat already."""
    producer = {v: (node, kernel) for node, kernel in zip(graph.nodes, kernels) for v in node.outputs}
    placed: set[Value] = set()
    out: dict[Node, dict[Value, str]] = {}
    for node in graph.nodes:
        if node.op != "concat" or not node.types[0].is_fully_defined or not node.types[0].shape:
            continue
        shape = node.types[0].shape
        axis = node.attr("axis") % len(shape)
        sizes = [v.type.shape[axis] if v.type.is_fully_defined else 0 for v in node.inputs]
        if any(d != 1 for d in shape[:axis]) or 0 in sizes or len(set(node.inputs)) != len(node.inputs) \
                or any(v in placed or not isinstance(producer.get(v, (None, None))[1], _WRITES_BLOCKS)
                       for v in node.inputs):
            continue
        starts = np.cumsum([0] + sizes)
        out[node] = {v: "[" + ":, " * axis + f"{start}:{start + size}]"
                     for v, start, size in zip(node.inputs, starts, sizes)}
        placed.update(node.inputs)
    return out


def _donated(graph: Graph, kernels: list[Any], memory: MemoryPlan) -> set[Node]:
    """The RNN cells (split_contraction) whose addend (an LSTM's hoisted `xW` rows) BLAS may
    accumulate onto in place, because nothing can see it change: the addend is a planned
    intermediate, or a piece of a split of one (the hoisted product's rows; C-contiguous, as
    the scratch it replaces: a strided one would compile the gate loop once more), whose
    memory the plan shares with no other value and no result (the arena's buffer stays the
    product's until its last piece dies); the cell reads it once and is its only reader,
    and the split is the product's only reader (so no other view of it exists). Fed arrays,
    variables, constants and fetched values are never planned, so never donated. The LSTM
    benchmark's step: 30.5 ms against 32.7 copying the addend, its cells x0.91 (medians,
    interleaved in one process, shared machine)."""
    readers: dict[Value, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(v, []).append(node)
    results = set(graph.results)
    donated: set[Node] = set()
    for node, kernel in zip(graph.nodes, kernels):
        if not isinstance(kernel, split_contraction.SplitContractionKernel) or kernel.addend is None:
            continue
        addend = node.inputs[kernel.addend]
        cut = addend.node
        if readers[addend] != [node] or addend in results:
            continue
        if addend in memory.buffer_of or cut.op in ("split", "unstack") and _contiguous_pieces(cut) \
                and cut.inputs[0] in memory.buffer_of and readers[cut.inputs[0]] == [cut]:
            donated.add(node)
    return donated


def _contiguous_pieces(cut: Node) -> bool:
    """Whether a split's or unstack's pieces of a C-contiguous array are C-contiguous (every
    dim before the axis is 1), as the cell's gate loop reads its addend."""
    shape = cut.inputs[0].type.shape
    return shape is not None and all(d == 1 for d in shape[:cut.attr("axis") % len(shape)])


def _generate_step(graph: Graph, kernels: list[Any], concats: dict[Node, dict[Value, str]],
                   memory: MemoryPlan) -> tuple[Callable[..., Any], str]:
    """`step(args, state, arena)`, `arena` being an Arena's `into` (one entry per node with
    planned results, in order)."""
    names: dict[Value, str] = {}
    for i, p in enumerate(graph.params):
        names[p] = f"p{i}"
    last_use: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v] = i
    keep = set(graph.results)
    planned = [n for n in graph.nodes if any(v in memory.buffer_of for v in n.outputs)]
    slots = {node: f"a{i}" for i, node in enumerate(planned)}  # each one's entry of the arena
    unpack = [", ".join(names[p] for p in graph.params) + ", = args"] if graph.params else []
    unpack += [", ".join(slots.values()) + ", = arena"] if slots else []
    lines = ["def step(args, state, arena):", "    " + ("; ".join(unpack) or "pass")]
    namespace: dict[str, Any] = {"_one": _one, "_empty": POOL.empty}
    into: dict[Value, tuple[str, str]] = {}  # a placed value: its concat's buffer and block
    for index, c in enumerate(graph.nodes):
        if c in concats:
            namespace[f"tc{index}"] = (tuple(c.types[0].shape), c.types[0].dtype.np_dtype)
            into.update((v, (f"c{index}", block)) for v, block in concats[c].items())
    allocated: set[str] = set()
    donated = _donated(graph, kernels, memory)
    for i, (node, kernel) in enumerate(zip(graph.nodes, kernels)):
        namespace[f"k{i}"] = kernel
        outs = [f"v{i}_{j}" for j in range(len(node.types))]
        for v, name in zip(node.outputs, outs):
            names[v] = name
        args = [names[v] for v in node.inputs] + (["state=state"] if _needs_state(kernel) else [])
        setup = ""
        placed = [(v.index, *into[v]) for v in node.outputs if v in into]
        if placed or node in slots:
            blocks = "".join(f"({j}, {buf}{block}), " for j, buf, block in placed)
            args.append(f"into=({blocks}*{slots[node]})" if placed and node in slots else
                        f"into={slots[node]}" if node in slots else f"into=({blocks})")
            for _, buf, _ in placed:
                if buf not in allocated:
                    allocated.add(buf)
                    setup += f"{buf} = _empty(*t{buf}); "
        if node in donated:
            args.append("donate=True")
        call = f"k{i}({', '.join(args)})"
        if node in concats:
            line = f"{outs[0]} = c{i}; del c{i}"  # its inputs were written into it
        elif len(outs) == 0:
            line = setup + call
        elif len(outs) == 1 and not getattr(kernel, "returns_tuple", False):
            line = f"{setup}{outs[0]} = _one({call})"
        else:
            line = f"{setup}{', '.join(outs)}, = {call}"
        dead = [names[v] for v in node.inputs if last_use.get(v) == i and v not in keep]
        if dead:
            line += "; del " + ", ".join(dict.fromkeys(dead))
        lines.append(f"    {line}  # {node.op} {node.name or ''}")
    lines.append("    return [" + ", ".join(names[r] for r in graph.results) + "]")
    source = "\n".join(lines) + "\n"
    filename = f"<tfjit-step-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace["step"], filename
