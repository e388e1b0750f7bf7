"""Loop kernels: elementwise/broadcast bodies over one iteration space, one pass over memory.

Before the call, inputs are put into the iteration space's shape: a re-indexing op applied
to an input (expand_dims, unreduce, broadcast_to, ...) is done on the array as a NumPy view,
inputs with as many elements as the space are reshaped to it, size-1 inputs become scalars
and the rest are broadcast (NumPy's trailing rule, which is what broadcasting ops mean).
Without broadcast inputs the kernel is one flat loop (which LLVM vectorises); otherwise it
loops over the space's dims, the last as a loop over rows, each a contiguous 1-D array (so
it vectorises). Inputs that are views with strided rows (a split along the last axis: an
LSTM's four gates) are not copied into a flat array: the kernel then loops over the rows of
a 2-D view of the space. Only an input whose last dim is strided is copied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op

from .buffers import POOL
from .codegen import INDEX_ONLY, ElementWriter, Lines
from .compile import compile_kernel

FULL, SCALAR, BROADCAST = "full", "scalar", "broadcast"
# A parallel loop costs 16-33 us a call more (DESIGN.md): worth it only for big loops.
PARALLEL_MIN_ELEMENTS = 1 << 20
# Rows narrower than this (float32 lanes of an AVX-512 vector) cannot fill a vector: their
# length is a constant of the kernel, so LLVM unrolls the loop along them instead of
# vectorising it for rows it never runs on (a bias add over ten logits compiled in 62 ms
# instead of 79 ms, measured; its run time within 0.1 us).
VECTOR_LANES = 16


@dataclass(frozen=True)
class _Prepared:
    """How the kernel's inputs derive from the fused node's arguments."""

    steps: tuple[tuple[Node, tuple[int, ...]], ...]  # index-only ops applied to inputs, in order
    inputs: tuple[Value, ...]                       # body values the loop reads


class LoopKernel:
    """A compiled loop kernel for one fused body; callable as `kernel(*arrays) -> outputs`."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str):
        self.body = body
        self.name = name
        self.prepared = _prepare(body)
        self._compiled: dict[tuple, Callable[..., None]] = {}
        # Result shapes are static (`build` requires it): the iteration space is fixed once.
        self._out_types = [(tuple(r.type.shape), r.type.dtype.np_dtype) for r in body.results]
        self._space = max((shape for shape, _ in self._out_types), key=lambda s: (int(np.prod(s)), len(s)))
        self._size = int(np.prod(self._space))
        # Per argument shapes, once seen: the kernel, the shape each argument and output is
        # viewed as and which inputs it reads by rows (only when no index-only op prepares an
        # input), so that a call in a hot step costs a few reshapes instead of fitting again.
        self._plans: dict[tuple[tuple[int, ...], ...], tuple[Any, ...]] = {}
        self._param_index = {p: i for i, p in enumerate(body.params)}

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        """The results, in recycled buffers; `into` gives C-contiguous arrays for some of them
        (result index, array), which the kernel then writes (a slice of a concat's result)."""
        plan = self._plans.get(tuple(a.shape for a in args))
        if plan is not None:
            kernel, inputs, out_shapes, rows = plan
            arrays = [_argument(np.asarray(args[i]), shape) for i, shape in inputs]  # a NumPy scalar too
            outs = self._outputs(into)
            kernel(*_with_contiguous_rows(arrays, rows), *[o.reshape(s) for o, s in zip(outs, out_shapes)])
            return tuple(outs)
        values: dict[Value, np.ndarray] = {p: np.asarray(a) for p, a in zip(self.body.params, args)}
        for node, positions in self.prepared.steps:
            opdef = get_op(node.op)  # a view where the op has one: the loop only reads it
            operands = (values[v] if v in values else _shape_stand_in(v) for v in (node.inputs[i] for i in positions))
            out = (opdef.view or opdef.reference)(*operands, **node.attr_dict)
            values[node.out] = np.asarray(out)
        outs = self._outputs(into)
        space, size = self._space, self._size
        arrays, kinds = [], []
        for v in self.prepared.inputs:
            a, kind = _fit(values[v], space, size)
            arrays.append(a)
            kinds.append(kind)
        elementwise = all(k in (FULL, SCALAR) for k in kinds)
        flat, shape = False, space
        if elementwise:  # one flat loop, or rows of a 2-D view when some input has strided rows
            row = _row_length([a for a, k in zip(arrays, kinds) if k == FULL])
            flat, shape = (True, (size,)) if row is None else (False, (size // row, row))
            arrays = [a.reshape(shape) if k == FULL else a for a, k in zip(arrays, kinds)]
        rows = () if flat else tuple(i for i, k in enumerate(kinds) if k != SCALAR)
        arrays = _with_contiguous_rows(arrays, rows)
        indexed = not flat and all(arrays[i].flags.c_contiguous for i in rows)
        narrow = shape[-1] if not flat and shape[-1] < VECTOR_LANES else None
        views = [o.reshape(shape) if o.size == size else o.reshape(-1) for o in outs]
        parallel = elementwise and size >= PARALLEL_MIN_ELEMENTS
        key = (flat, len(shape), tuple(kinds), parallel, indexed, narrow)
        kernel = self._compiled.get(key)
        if kernel is None:
            kernel = compile_kernel(self._source(*key), "kernel", parallel=parallel, scalar=True)
            self._compiled[key] = kernel
        kernel(*[_argument(a, a.shape) if a.ndim == 0 else a for a in arrays], *views)
        if not self.prepared.steps:
            inputs = tuple((self._param_index[v], a.shape) for v, a in zip(self.prepared.inputs, arrays))
            self._plans[tuple(a.shape for a in args)] = (kernel, inputs, tuple(v.shape for v in views), rows)
        return tuple(outs)

    def _outputs(self, into: tuple[tuple[int, np.ndarray], ...]) -> list[np.ndarray]:
        given = dict(into)
        return [given[i] if i in given else POOL.empty(shape, dtype) for i, (shape, dtype) in enumerate(self._out_types)]

    def source(self) -> str:
        """The source of each variant compiled so far (else the flat-loop form)."""
        keys = list(self._compiled) or [(True, 1, tuple([FULL] * len(self.prepared.inputs)), False, False, None)]
        return f"# {self.name}\n" + "\n".join(self._source(*key) for key in keys)

    def _source(self, flat: bool, rank: int, kinds: Sequence[Any], parallel: bool = False,
                indexed: bool = False, narrow: int | None = None) -> str:
        """`indexed`: every array but the scalars is C-contiguous, so the loop over a row reads
        `in0[i0, i]` (which vectorises for C arrays) instead of row views, whose making costs a
        kernel's compile a tenth more (measured on a bias-add-relu epilogue). `narrow`: the
        length of rows narrower than a vector, a constant of the kernel (VECTOR_LANES)."""
        lines = Lines()
        ins = [f"in{i}" for i in range(len(kinds))]
        outs = [f"out{i}" for i in range(len(self.body.results))]
        # No node name in the compiled source: identical bodies (an unrolled RNN's cells) then
        # share one compile; `source()` names the node for dumps.
        lines.add(f"def kernel({', '.join(ins + outs)}):")
        lines.indent()
        # A scalar input comes as a NumPy scalar: a 0-d array argument cost each compile 7 ms
        # (measured), a tenth of a small kernel's.
        loads = {v: f"in{i}" for i, (v, kind) in enumerate(zip(self.prepared.inputs, kinds)) if kind == SCALAR}
        # Values computed from scalars only are the same for every element: compute them once,
        # before the loop (a scalar result, e.g. Adam's lr_t, is written there too).
        hoisted = ElementWriter(lines, lambda v: loads[v], prefix="h")
        hoisted.names.update(loads)
        invariant = _invariant(self.body, set(loads))
        once = {r for r in self.body.results if r in invariant and r.type.num_elements == 1}
        for o, r in zip(outs, self.body.results):
            if r in once:
                lines.add(f"{o}[0] = {hoisted.value(r)}")
        # A result computed from scalars but broadcast to many elements is still written per element.
        varying = [(o, r) for o, r in zip(outs, self.body.results) if r not in once]
        if not varying:
            return lines.source()
        first = varying[0][0]
        if flat:
            lines.add(f"for i in {'prange' if parallel else 'range'}({first}.shape[0]):")
            lines.indent()
            arrays = {name: name + "[{}]" for name in ins + outs}
        else:
            arrays = self._rows(lines, rank, kinds, [o for o, _ in varying], parallel, indexed)
            lines.add(f"for i in range({narrow or f'{first}.shape[{rank - 1}]'}):")
            lines.indent()
        position = {v: i for i, v in enumerate(self.prepared.inputs)}

        def load(v: Value) -> str:
            if v in loads:
                return loads[v]
            name = f"a{position[v]}"
            kind = kinds[position[v]]
            at = "0" if kind != FULL and kind[1][-1] else "i"  # a broadcast last dim reads element 0
            lines.add(f"{name} = {arrays[f'in{position[v]}'].format(at)}")
            loads[v] = name
            return name

        writer = ElementWriter(lines, load)
        writer.names.update(hoisted.names)
        for v in self.prepared.inputs:
            writer.names[v] = load(v) if v not in loads else loads[v]
        for o, r in varying:
            lines.add(f"{arrays[o].format('i')} = {writer.value(r)}")
        return lines.source()

    @staticmethod
    def _rows(lines: Lines, rank: int, kinds: Sequence[Any], outs: Sequence[str], parallel: bool,
              indexed: bool) -> dict[str, str]:
        """Loops over all dims but the last: how each array's element `i` of the row there is
        read (index 0 along a broadcast dim), as a format string. Rows are contiguous (the
        caller made them so): C arrays are indexed in full, others read through row views
        typed as contiguous; either way the loop along a row vectorises."""
        lead = [f"i{d}" for d in range(rank - 1)]
        for d in range(rank - 1):
            lines.add(f"for i{d} in {'prange' if parallel and d == 0 else 'range'}({outs[0]}.shape[{d}]):")
            lines.indent()
        rows = {}
        at = {f"in{i}": lead if kind == FULL else ["0" if b else f"i{d}" for d, b in enumerate(kind[1][:-1])]
              for i, kind in enumerate(kinds) if kind != SCALAR}
        at.update({o: lead for o in outs})
        for name, index in at.items():
            if indexed:
                rows[name] = f"{name}[{', '.join(index + ['{}'])}]"
                continue
            row = f"{name}{'[' + ', '.join(index) + ']' if index else ''}"
            lines.add(f"{name}r = {row if name in outs else f'_contiguous_row({row})'}")
            rows[name] = f"{name}r[{{}}]"
        return rows


def _argument(a: np.ndarray, shape: tuple[int, ...]) -> Any:
    """`a` in `shape` as the kernel takes it: a 0-d array as a NumPy scalar of its dtype."""
    return a.reshape(shape) if shape else a.reshape(())[()]


def _invariant(body: Graph, scalars: set[Value]) -> set[Value]:
    """Body values that depend on scalar inputs and constants only."""
    out = set(scalars)
    for node in body.nodes:
        if node.op == "constant" or (node.inputs and all(v in out for v in node.inputs)):
            out.update(node.outputs)
    return out


def _prepare(body: Graph) -> _Prepared:
    """Which index-only ops act on inputs directly (done as NumPy views before the loop), and
    which values the loop reads."""
    ready: set[Value] = set(body.params)
    steps = []
    for node in body.nodes:
        if node.op in INDEX_ONLY and node.op not in ("identity", "stop_gradient") \
                and all(v in ready or _shape_operand(node, i) for i, v in enumerate(node.inputs)):
            steps.append((node, tuple(range(len(node.inputs)))))
            ready.add(node.out)
    computed = [n for n in body.nodes if n.out not in ready]
    used = [v for n in computed for v in n.inputs if v in ready]
    used += [r for r in body.results if r in ready]
    return _Prepared(tuple(steps), tuple(dict.fromkeys(used)))


def _shape_operand(node: Node, i: int) -> bool:
    """Whether input `i` of `node` is read for its static shape only (unreduce's `like`): the
    op can then be done on the array before the loop even when that input is computed in it."""
    return node.op == "unreduce" and i == 1 and node.inputs[1].type.is_fully_defined


def _shape_stand_in(v: Value) -> np.ndarray:
    """A zero-stride array of `v`'s static shape and dtype, for an op reading only its shape."""
    return np.broadcast_to(np.zeros((), v.type.dtype.np_dtype), tuple(v.type.shape))


def _fit(a: np.ndarray, space: tuple[int, ...], size: int) -> tuple[np.ndarray, Any]:
    if a.size == size and size != 1:
        return a.reshape(space), FULL
    if a.size == 1:
        return a.reshape(()), SCALAR
    # Broadcast inputs keep their compact (contiguous) data, padded to the space's rank; the
    # kernel reads index 0 along their size-1 dims (0-stride views would not vectorise).
    padded = a.reshape((1,) * (len(space) - a.ndim) + a.shape)
    return padded, (BROADCAST, tuple(d == 1 and s != 1 for d, s in zip(padded.shape, space)))


def _row_length(arrays: Sequence[np.ndarray]) -> int | None:
    """The row length of a 2-D view of the space when some array is a view with strided rows:
    the elements of the trailing dims every non-contiguous array stores contiguously. None (one
    flat loop, copying those arrays) when all are contiguous or one has a strided last dim."""
    lengths = [_contiguous_tail(a) for a in arrays if not a.flags.c_contiguous]
    if not lengths or min(lengths) == 1:
        return None
    return min(lengths)  # each is a product of trailing dims of the space: the least divides all


def _with_contiguous_rows(arrays: list[np.ndarray], positions: Sequence[int]) -> list[np.ndarray]:
    """`arrays`, each at `positions` with a contiguous last dim (a row kernel reads its rows
    as contiguous): copied only where that dim is strided (a transposed or reversed view)."""
    for i in positions:
        a = arrays[i]
        if a.shape[-1] > 1 and a.strides[-1] != a.itemsize:
            arrays[i] = np.ascontiguousarray(a)
    return arrays


def _contiguous_tail(a: np.ndarray) -> int:
    """Elements in the block of trailing dims that `a` stores contiguously."""
    expected, count = a.itemsize, 1
    for n, stride in zip(reversed(a.shape), reversed(a.strides)):
        if n != 1 and stride != expected:
            break
        expected *= n
        count *= n
    return count


def build(node: Node) -> Any:
    """A loop kernel for a fused `loop` node (or one elementwise node), or None when some op
    has no element form here."""
    from .codegen import supported

    body = node.attr("body") if node.op == "fused" else single_node_body(node)
    if not supported(body) or not all(r.type.is_fully_defined for r in body.results):
        return None
    return LoopKernel(body, node.name or node.op)


def single_node_body(node: Node) -> Graph:
    params = [Node("param", (), (("index", i),), (v.type,)).out for i, v in enumerate(node.inputs)]
    inner = node.evolve(inputs=tuple(params), control_inputs=(), buffers=None)
    return Graph(node.name or node.op, params, [inner], list(inner.outputs))
