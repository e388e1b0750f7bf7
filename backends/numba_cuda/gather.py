"""CUDA gather, scatter-add (gather's gradient) and one_hot kernels.

Each views its operands around the indexed axis as [outer, axis, inner] (flat, C order):
- gather:      out[o, j, k] = params[o, indices[j], k], one thread per output element;
- scatter_add: out = 0, then out[o, indices[j], k] += updates[o, j, k] with atomic adds
               (repeated indices add up; float sums may add in any order);
- one_hot:     out[o, c, k] = on if indices[o, k] == c else off.
Indices are checked on the host before the launch (copied there if a kernel made them):
where one is out of range the kernel is not run and the node's NumPy reference raises the
op's own error (the executable falls back to it on NotImplementedError).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Node

from ..numba_cpu.codegen import Lines
from .compile import DeviceLines, compile_kernel
from .runtime import Buffer

THREADS = 256
MAX_BLOCKS = 1024
ATOMIC_DTYPES = ("float32", "float64", "int32", "int64")


class _IndexKernel:
    """A grid-stride kernel over `size` elements of an [outer, axis, inner] view."""

    def __init__(self, node: Node, outer: int, extent: int, inner: int, count: int, size: int):
        self.node = node
        self.name = node.name or node.op
        self.outer, self.extent, self.inner, self.count, self.size = outer, extent, inner, count, size
        if size == 0:
            raise NotImplementedError("an empty kernel")
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)

    def launch(self, kernel: Any, size: int, *arrays: Any) -> None:
        threads = min(THREADS, size)
        kernel[min(MAX_BLOCKS, -(-size // threads)), threads](*arrays)

    def _loop(self, lines: Lines, size: int) -> None:
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {size}:")
        lines.indent()

    def _coordinates(self, lines: Lines, count: int) -> None:
        """o, j, k of flat element `i` of an [outer, count, inner] array."""
        lines.add(f"o = i // {count * self.inner}" if self.outer > 1 else "o = 0")
        lines.add(f"j = (i // {self.inner}) % {count}" if self.inner > 1 else f"j = i % {count}")
        lines.add(f"k = i % {self.inner}" if self.inner > 1 else "k = 0")

    def _source(self) -> str:
        raise NotImplementedError


class CudaGather(_IndexKernel):
    def __init__(self, node: Node):
        shape = tuple(node.inputs[0].type.shape)
        a = node.attr("axis") % len(shape)
        count = node.inputs[1].type.num_elements
        super().__init__(node, _prod(shape[:a]), shape[a], _prod(shape[a + 1:]), count, node.out.type.num_elements)
        self.dtypes = (*(v.type.dtype.np_dtype for v in node.inputs), node.out.type.dtype.np_dtype)

    def __call__(self, params: Buffer, indices: Buffer) -> tuple[Buffer]:
        _check(indices, 0, self.extent)
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), self.node.out.type.dtype.np_dtype)
        self.launch(self.kernel, self.size, params.to_device(), indices.to_device(), out.device)
        return (out,)

    def _source(self) -> str:
        lines = DeviceLines()
        lines.add("def kernel(params, indices, out):", self.name)
        lines.indent()
        self._loop(lines, self.size)
        self._coordinates(lines, self.count)
        lines.add(f"out[i] = params[(o * {self.extent} + indices[j]) * {self.inner} + k]",
                  self.node.loc.short if self.node.loc else None)
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


class CudaScatterAdd(_IndexKernel):
    def __init__(self, node: Node):
        shape = tuple(node.types[0].shape)
        a = node.attr("axis") % len(shape)
        count = node.inputs[1].type.num_elements
        super().__init__(node, _prod(shape[:a]), shape[a], _prod(shape[a + 1:]), count,
                         node.inputs[0].type.num_elements)
        zero = _zero_source(self.name)
        self.zero = compile_kernel(zero, self.name + "/zero")
        self.source += "\n" + zero
        self.dtypes = (*(v.type.dtype.np_dtype for v in node.inputs[:2]), node.out.type.dtype.np_dtype)

    def parts(self) -> list[tuple[Any, tuple[np.dtype, ...]]]:
        """Both compiled kernels with their argument dtypes (for PTX checks)."""
        return [(self.kernel, self.dtypes), (self.zero, self.dtypes[-1:])]

    def __call__(self, updates: Buffer, indices: Buffer, like: Buffer) -> tuple[Buffer]:
        _check(indices, -self.extent, self.extent)  # np.add.at wraps negative indices
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), self.node.out.type.dtype.np_dtype)
        self.launch(self.zero, out.size, out.device)
        self.launch(self.kernel, self.size, updates.to_device(), indices.to_device(), out.device)
        return (out,)

    def _source(self) -> str:
        lines = DeviceLines()
        lines.add("def kernel(updates, indices, out):", self.name)
        lines.indent()
        self._loop(lines, self.size)
        self._coordinates(lines, self.count)
        lines.add("t = indices[j]")
        lines.add(f"if t < 0: t += {self.extent}")
        lines.add(f"cuda.atomic.add(out, (o * {self.extent} + t) * {self.inner} + k, updates[i])",
                  self.node.loc.short if self.node.loc else None)
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


class CudaOneHot(_IndexKernel):
    def __init__(self, node: Node):
        shape = tuple(node.out.type.shape)
        a = node.inputs[0].type.rank if node.attr("axis") == -1 else node.attr("axis")
        super().__init__(node, _prod(shape[:a]), shape[a], _prod(shape[a + 1:]), shape[a],
                         node.out.type.num_elements)
        self.dtypes = (*(v.type.dtype.np_dtype for v in node.inputs), node.out.type.dtype.np_dtype)

    def __call__(self, indices: Buffer, on: Buffer, off: Buffer) -> tuple[Buffer]:
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), self.node.out.type.dtype.np_dtype)
        self.launch(self.kernel, self.size, indices.to_device(), on.to_device(), off.to_device(), out.device)
        return (out,)

    def _source(self) -> str:
        lines = DeviceLines()
        lines.add("def kernel(indices, on, off, out):", self.name)
        lines.indent()
        self._loop(lines, self.size)
        self._coordinates(lines, self.extent)
        lines.add(f"hot = indices[o * {self.inner} + k] == j", self.node.loc.short if self.node.loc else None)
        lines.add("out[i] = on[0] if hot else off[0]")
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


def _zero_source(name: str) -> str:
    return f"def kernel(out):  # {name}: the sum starts at zero\n" \
        "    i = cuda.grid(1)\n" \
        "    while i < out.size:\n" \
        "        out[i] = 0\n" \
        "        i += cuda.gridsize(1)\n"


def _check(indices: Buffer, low: int, high: int) -> None:
    """Refuse (the reference then raises the op's error) unless every index is in [low, high)."""
    values = indices.to_host()
    if values.size and (values.min() < low or values.max() >= high):
        raise NotImplementedError("an index out of range")


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


KERNELS = {"gather": CudaGather, "scatter_add": CudaScatterAdd, "one_hot": CudaOneHot}


def build(node: Node) -> _IndexKernel | None:
    """A kernel for a gather, scatter_add or one_hot node with static shapes, or None."""
    kind = KERNELS.get(node.op)
    if kind is None or not all(v.type.is_fully_defined for v in (*node.inputs, *node.outputs)):
        return None
    if node.op == "one_hot" and len(node.inputs) != 3:
        return None  # a depth known only at run time
    if node.op == "scatter_add" and node.out.type.dtype.np_dtype.name not in ATOMIC_DTYPES:
        return None
    try:
        return kind(node)
    except NotImplementedError:
        return None
