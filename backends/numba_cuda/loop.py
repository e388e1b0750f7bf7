"""CUDA loop kernels: a fused elementwise/broadcast body as one grid-stride loop.

The kernel walks the flattened iteration space (the largest result's shape). Every input is
a flat device array; how element `i` of the space reads it is found on the host, once per
input shape signature, by applying the body's re-indexing ops (expand_dims, broadcast_to,
...) and NumPy's broadcast to an array of element *indices*: the resulting index map must be
affine (`offset + sum(coord_d * stride_d)`), and it is baked into the source as constants.
Inputs that map one-to-one read `in[i]`; inputs that map to one element are loaded once
before the loop, as are the values computed from them only (the CPU kernel's hoisting).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op

from ..numba_cpu.codegen import ElementWriter, supported
from ..numba_cpu.loop import _invariant, _prepare, single_node_body
from .compile import DeviceLines, compile_kernel
from .runtime import Buffer, current_stream

THREADS = 256
MAX_BLOCKS = 1024
# Re-indexing ops whose later operands only lend their shape (reshape's dims operand, whose
# values decide the result, is not one of them).
SHAPE_OPERAND = {"unreduce"}


@dataclass(frozen=True)
class Access:
    """How the loop reads one input: `param` is the kernel argument it comes from."""

    param: int
    offset: int
    strides: tuple[int, ...] | None  # None: the identity (in[i]); all zeros: a scalar

    @property
    def scalar(self) -> bool:
        return self.strides is not None and not any(self.strides)


@dataclass
class Variant:
    """One compiled kernel of a body for one signature of input shapes."""

    space: tuple[int, ...]
    params: tuple[int, ...]       # which body params the kernel takes, in order
    dtypes: tuple[np.dtype, ...]  # of the kernel's arguments (inputs, then outputs)
    source: str
    kernel: Any


class CudaLoopKernel:
    """Callable as `kernel(*buffers) -> buffers`: inputs read on the device, results left there."""

    def __init__(self, body: Graph, name: str):
        self.body = body
        self.name = name
        self.prepared = _prepare(body)
        self.variants: dict[tuple[tuple[int, ...], ...], Variant] = {}

    def __call__(self, *args: Buffer) -> tuple[Buffer, ...]:
        variant = self.variant(tuple(a.shape for a in args))
        outs = [Buffer.empty_on_device(_shape(r), r.type.dtype.np_dtype) for r in self.body.results]
        size = int(np.prod(variant.space, dtype=np.int64))
        threads = min(THREADS, size)
        blocks = min(MAX_BLOCKS, -(-size // threads))
        variant.kernel[blocks, threads, current_stream()](*(args[p].to_device() for p in variant.params), *(o.device for o in outs))
        return tuple(outs)

    def variant(self, shapes: tuple[tuple[int, ...], ...]) -> Variant:
        """The kernel for inputs of these shapes (generated and compiled on first use);
        NotImplementedError where the body does not fit one loop."""
        found = self.variants.get(shapes)
        if found is None:
            found = self.variants[shapes] = self._build(shapes)
        return found

    def _build(self, shapes: tuple[tuple[int, ...], ...]) -> Variant:
        result_shapes = [_shape(r) for r in self.body.results]
        space = max(result_shapes, key=lambda s: (int(np.prod(s, dtype=np.int64)), len(s)))
        size = int(np.prod(space, dtype=np.int64))
        if size == 0:
            raise NotImplementedError("an empty iteration space")
        accesses = _accesses(self.body, self.prepared.steps, self.prepared.inputs, shapes, space, size)
        params = tuple(dict.fromkeys(a.param for a in accesses))
        source = self._source(space, size, accesses, params)
        dtypes = tuple(self.body.params[p].type.dtype.np_dtype for p in params) + \
            tuple(r.type.dtype.np_dtype for r in self.body.results)
        return Variant(space, params, dtypes, source, compile_kernel(source, self.name))

    def _source(self, space: tuple[int, ...], size: int, accesses: Sequence[Access], params: Sequence[int]) -> str:
        lines = DeviceLines()
        arg = {p: f"in{k}" for k, p in enumerate(params)}
        outs = [f"out{i}" for i in range(len(self.body.results))]
        lines.add(f"def kernel({', '.join([arg[p] for p in params] + outs)}):", self.name)
        lines.indent()
        loads: dict[Value, str] = {}
        for k, (v, a) in enumerate(zip(self.prepared.inputs, accesses)):
            if a.scalar:
                lines.add(f"s{k} = {arg[a.param]}[{a.offset}]")
                loads[v] = f"s{k}"
        hoisted = ElementWriter(lines, lambda v: loads[v], prefix="h")
        hoisted.names.update(loads)
        invariant = _invariant(self.body, set(loads))
        first = [(o, r) for o, r in zip(outs, self.body.results) if r in invariant]
        varying = [(o, r) for o, r in zip(outs, self.body.results) if r not in invariant]
        if any(int(np.prod(_shape(r), dtype=np.int64)) != size for _, r in varying) or \
                any(int(np.prod(_shape(r), dtype=np.int64)) != 1 for _, r in first):
            raise NotImplementedError("a result that neither fills the iteration space nor is one element")
        if first:  # every thread computes them (the loop may read them); one thread stores them
            names = [hoisted.value(r) for _, r in first]
            lines.add("if cuda.grid(1) == 0:")
            lines.indent()
            for (o, _), name in zip(first, names):
                lines.add(f"{o}[0] = {name}")
            lines.dedent()
        if not varying:
            return lines.source()
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {size}:")
        lines.indent()
        position = {v: k for k, v in enumerate(self.prepared.inputs)}

        def load(v: Value) -> str:
            k = position[v]
            a = accesses[k]
            name = f"a{k}"
            lines.add(f"{name} = {arg[a.param]}[{_index(a, space)}]")
            loads[v] = name
            return name

        writer = ElementWriter(lines, load)
        writer.names.update(hoisted.names)
        for v in self.prepared.inputs:
            if v not in writer.names:
                writer.names[v] = load(v)
        for o, r in varying:
            lines.add(f"{o}[i] = {writer.value(r)}")
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


def _index(a: Access, space: tuple[int, ...], i: str = "i") -> str:
    """The element of its argument that input `a` reads at flat position `i` of `space`."""
    if a.strides is None:
        return i
    terms = [str(a.offset)] if a.offset else []
    for d, stride in enumerate(a.strides):
        if stride == 0:
            continue
        inner = int(np.prod(space[d + 1:], dtype=np.int64))
        coord = i if inner == 1 else f"({i} // {inner})"
        if d > 0:
            coord = f"({coord} % {space[d]})"
        terms.append(coord if stride == 1 else f"{coord} * {stride}")
    return " + ".join(terms) or "0"


def _accesses(body: Graph, steps: Sequence[tuple[Node, tuple[int, ...]]], inputs: Sequence[Value],
              shapes: Sequence[tuple[int, ...]], space: tuple[int, ...], size: int) -> list[Access]:
    """Each loop input's index map, from re-indexing arrays of element indices."""
    maps: dict[Value, np.ndarray] = {}
    origin: dict[Value, int] = {}
    for k, (p, shape) in enumerate(zip(body.params, shapes)):
        maps[p] = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
        origin[p] = k
    for node, positions in steps:
        if len(positions) != 1 and node.op not in SHAPE_OPERAND:
            raise NotImplementedError(f"{node.op} with a shape operand")
        others = [np.zeros(maps[v].shape if v in maps else _shape(v), np.int64) for v in node.inputs[1:]]  # shapes only
        maps[node.out] = np.asarray(get_op(node.op).reference(maps[node.inputs[0]], *others, **node.attr_dict))
        origin[node.out] = origin[node.inputs[0]]
    return [_affine(maps[v], origin[v], space, size) for v in inputs]


def _affine(index: np.ndarray, param: int, space: tuple[int, ...], size: int) -> Access:
    if index.size == size and size != 1:
        index = index.reshape(space)
    elif index.size == 1:
        return Access(param, int(index.reshape(-1)[0]), (0,) * len(space))
    else:
        index = np.broadcast_to(index, space)
    if np.array_equal(index.reshape(-1), np.arange(size)):
        return Access(param, 0, None)
    origin = int(index.reshape(-1)[0])
    strides = tuple(int(index[tuple(1 if e == d else 0 for e in range(len(space)))]) - origin if n > 1 else 0
                    for d, n in enumerate(space))
    expected = origin + sum(np.arange(n).reshape([-1 if e == d else 1 for e in range(len(space))]) * s
                            for d, (n, s) in enumerate(zip(space, strides)))
    if not np.array_equal(np.broadcast_to(expected, space), index):
        raise NotImplementedError("an input whose index map is not affine")
    return Access(param, origin, strides)


def _shape(v: Value) -> tuple[int, ...]:
    shape = v.type.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise NotImplementedError("a loop result of unknown shape")
    return tuple(shape)


def build(node: Node) -> CudaLoopKernel | None:
    """A CUDA loop kernel for a fused `loop` node (or one elementwise node), or None."""
    body = node.attr("body") if node.op == "fused" else single_node_body(node)
    if not supported(body) or not all(r.type.is_fully_defined for r in body.results):
        return None
    return CudaLoopKernel(body, node.name or node.op)
