"""CUDA reductions along any axes: column and strided reductions the row kernel does not take.

The input is viewed as `O` outputs (the kept dims) times `R` reduced elements; both index
maps into the flat input are affine in each coordinate, baked in as constants. A block is
TX x TY threads: `tx` picks one of TX neighbouring outputs, `ty` strides over that output's
reduced elements, and a tree reduction over `ty` in shared memory combines the TY partial
results. When the input's last axis is kept, neighbouring outputs are neighbouring
addresses, so TX = 32 makes every load of a warp one coalesced read (column sums); when it
is reduced, TX = 1 and the block's threads walk one output's elements (a strided row).
Blocks stride over the outputs when there are more than the grid holds.
"""
from __future__ import annotations

import numpy as np

from tfjit.ir.graph import Node

from ..numba_cpu import reducers
from .reduction import REDUCERS
from .compile import DeviceLines, compile_kernel
from .loop import Access, _index
from .runtime import Buffer

MAX_THREADS = 256
MAX_BLOCKS = 1024
DTYPES = ("float32", "float64", "int32", "int64")


class CudaAxesReduction:
    """Callable as `kernel(buffer) -> (buffer,)` on the device."""

    def __init__(self, node: Node, name: str, full: tuple[int, ...], axes: tuple[int, ...]):
        self.node = node
        self.name = name
        strides = [int(np.prod(full[d + 1:], dtype=np.int64)) for d in range(len(full))]
        kept = [d for d in range(len(full)) if d not in axes]
        self.kept_space = tuple(full[d] for d in kept)
        self.reduced_space = tuple(full[d] for d in axes)
        self.outputs = int(np.prod(self.kept_space, dtype=np.int64))
        self.reduced = int(np.prod(self.reduced_space, dtype=np.int64))
        if self.outputs * self.reduced == 0:
            raise NotImplementedError("an empty reduction")
        self.kept = Access(0, 0, tuple(strides[d] for d in kept))
        self.red = Access(0, 0, tuple(strides[d] for d in axes))
        coalesced = bool(kept) and kept[-1] == len(full) - 1
        self.tx = min(32, _pow2(self.outputs)) if coalesced else 1
        self.ty = min(MAX_THREADS // self.tx, _pow2(self.reduced))
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)
        self.dtypes = (node.inputs[0].type.dtype.np_dtype, node.out.type.dtype.np_dtype)

    def __call__(self, x: Buffer) -> tuple[Buffer]:
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), self.node.out.type.dtype.np_dtype)
        blocks = min(MAX_BLOCKS, -(-self.outputs // self.tx))
        self.kernel[blocks, (self.tx, self.ty)](x.to_device(), out.device)
        return (out,)

    def _source(self) -> str:
        n, tx, ty = self.node, self.tx, self.ty
        dtype = n.out.type.dtype
        lines = DeviceLines()
        lines.add("def kernel(x, out):", self.name)
        lines.indent()
        lines.add(f"sh = cuda.shared.array(({ty}, {tx}), np.{dtype.np_dtype.name})")
        lines.add("tx = cuda.threadIdx.x")
        lines.add("ty = cuda.threadIdx.y")
        lines.add(f"first = cuda.blockIdx.x * {tx}")
        lines.add(f"while first < {self.outputs}:  # the same for every thread of a block")
        lines.indent()
        lines.add("o = first + tx")
        lines.add(f"acc = {reducers.start(n)}", n.loc.short if n.loc else None)
        lines.add(f"if o < {self.outputs}:")
        lines.indent()
        lines.add(f"base = {_index(self.kept, self.kept_space, 'o')}")
        lines.add("r = ty")
        lines.add(f"while r < {self.reduced}:")
        element = f"x[base + {_index(self.red, self.reduced_space, 'r')}]"
        lines.add(f"    acc = {reducers.combine(n, 'acc', element)}")
        lines.add(f"    r += {ty}")
        lines.dedent()
        lines.add("sh[ty, tx] = acc")
        lines.add("cuda.syncthreads()")
        lines.add(f"s = {ty // 2}")
        lines.add("while s > 0:")
        lines.indent()
        lines.add("if ty < s:")
        lines.add(f"    sh[ty, tx] = {reducers.combine(n, 'sh[ty, tx]', 'sh[ty + s, tx]')}")
        lines.add("cuda.syncthreads()")
        lines.add("s //= 2")
        lines.dedent()
        total = f"sh[0, tx] / _{dtype.short}({self.reduced})" if n.op == "mean" else "sh[0, tx]"
        lines.add(f"if ty == 0 and o < {self.outputs}:")
        lines.add(f"    out[o] = {total}")
        lines.add("cuda.syncthreads()  # every total is stored before the next outputs reuse sh")
        lines.add(f"first += cuda.gridDim.x * {tx}")
        return lines.source()


def _merged(full: tuple[int, ...], axes: set[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same reduction with neighbouring dims of one kind (kept or reduced) merged into
    one, so the index maps have as few terms as possible."""
    dims: list[int] = []
    reduced: list[bool] = []
    for d, n in enumerate(full):
        if dims and reduced[-1] == (d in axes):
            dims[-1] *= n
        else:
            dims.append(n)
            reduced.append(d in axes)
    return tuple(dims), tuple(d for d, r in enumerate(reduced) if r)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def build(node: Node) -> CudaAxesReduction | None:
    """A kernel for a lone reduction (or a fused body of one) over any axes, or None."""
    if node.op == "fused":
        body = node.attr("body")
        if len(body.nodes) != 1 or body.nodes[0].inputs != tuple(body.params[:1]) or \
                list(body.results) != [body.nodes[0].out]:
            return None
        node = body.nodes[0].evolve(inputs=node.inputs)
    if node.op not in REDUCERS:
        return None
    full = node.inputs[0].type.shape
    dtype = node.out.type.dtype.np_dtype.name
    if full is None or not all(isinstance(d, int) for d in full) or dtype not in DTYPES:
        return None
    if node.op == "mean" and not dtype.startswith("float"):
        return None  # TF's integer mean truncates the sum's quotient: the reference does it
    try:
        full, axes = _merged(tuple(full), {a % len(full) for a in reducers.axes(node)})
        return CudaAxesReduction(node, node.name or node.op, full, axes)
    except NotImplementedError:
        return None

