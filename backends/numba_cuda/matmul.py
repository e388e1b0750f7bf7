"""CUDA matmul kernels: a tiled shared-memory GEMM with the contraction's fused epilogue.

One block of 16 x 16 threads computes a 64 x 64 tile of one product of the batch (grid x:
column tiles, y: row tiles, z: the broadcast batch); each thread keeps 4 x 4 results in
registers, at rows ty + 16u and columns tx + 16v. Per step of 16 along K the block loads
A's [64, 16] and B's [16, 64] tiles into shared memory (a transposed operand is read so
that neighbouring threads still read neighbouring addresses: no copy), then each thread
multiplies 4 values of A's tile by 4 of B's per k into its 16 results. Before the store the fused
epilogue (bias add, activation, an optimizer's update of a variable...) runs on the
accumulator in registers (`epilogue.py`), so the product never goes through memory.
A tensordot contracting leading or trailing axes is the same GEMM, its operands seen as
matrices (a Dense layer on a [batch, time, features] input, say).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Graph, Node
from tfjit.ops.registry import Fusion, get_op

from ..numba_cpu.codegen import Lines
from ..numba_cpu.loop import single_node_body
from . import epilogue
from .compile import DeviceLines, compile_kernel
from .loop import Access, _affine, _index
from .runtime import Buffer

TILE = 64    # a block's tile of the result is TILE x TILE
TILE_K = 16  # the depth of the A and B tiles in shared memory
THREADS = 16  # a block is THREADS x THREADS threads
PER = TILE // THREADS  # each thread computes PER x PER results
MAX_GRID = 65535  # blocks along the grid's y and z
DTYPES = ("float32", "float64")


class CudaMatmulKernel:
    """Callable as `kernel(*buffers) -> buffers` on the device (variables: `assign_to`)."""

    def __init__(self, body: Graph, name: str, product: Node):
        self.body = body
        self.name = name
        self.product = product
        self.ta, self.tb, self.m, self.k, self.n, self.batch_space, a_batch, b_batch = _matrices(product)
        self.batch = int(np.prod(self.batch_space, dtype=np.int64))
        if self.batch > MAX_GRID or -(-self.m // TILE) > MAX_GRID or self.m * self.n == 0:
            raise NotImplementedError("a batch or rows beyond the grid's y/z limit, or an empty product")
        self.operands = tuple(body.params.index(v) for v in product.inputs)
        epi, mm = epilogue.with_param_for(body, product)
        self.epilogue = epilogue.plan(epi, tuple(product.out.type.shape), given=(mm,))
        self.mm = mm
        self.a_batch = _batch_access(a_batch, self.batch_space)
        self.b_batch = _batch_access(b_batch, self.batch_space)
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)
        self.dtypes = self.epilogue.array_dtypes(body, (*self.operands, *self.epilogue.params))

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the epilogue assigns, in the order `assign_to` takes their arrays."""
        return self.epilogue.variables

    def __call__(self, *args: Buffer, assign_to: tuple[Any, ...] = ()) -> tuple[Buffer, ...]:
        """Run on `args`; `assign_to` holds the device arrays of `variables`, updated in place."""
        if len(assign_to) != len(self.variables):
            raise NotImplementedError("the variables this kernel assigns were not given")
        outs = [Buffer.empty_on_device(tuple(r.type.shape), r.type.dtype.np_dtype) for r in self.body.results]
        grid = (-(-self.n // TILE), -(-self.m // TILE), self.batch)
        ins = [args[p].to_device() for p in (*self.operands, *self.epilogue.params)]
        self.kernel[grid, (THREADS, THREADS)](*ins, *(o.device for o in outs), *assign_to)
        return tuple(outs)

    def _source(self) -> str:
        lines = DeviceLines()
        dtype = self.product.out.type.dtype
        args = {p: f"in{k}" for k, p in enumerate(self.epilogue.params)}
        outs = [f"out{k}" for k in range(len(self.body.results))]
        variables = [f"var{k}" for k in range(len(self.epilogue.targets))]
        lines.add(f"def kernel({', '.join(['a', 'b', *args.values(), *outs, *variables])}):", self.name)
        lines.indent()
        np_dtype = f"np.{dtype.np_dtype.name}"
        lines.add(f"sa = cuda.shared.array(({TILE_K}, {TILE}), {np_dtype})  # sa[k, r]: A[row0 + r, k0 + k]")
        lines.add(f"sb = cuda.shared.array(({TILE_K}, {TILE}), {np_dtype})  # sb[k, c]: B[k0 + k, col0 + c]")
        lines.add(f"acc = cuda.local.array(({PER}, {PER}), {np_dtype})  # row ty + {THREADS}u, column tx + {THREADS}v")
        lines.add(f"ra = cuda.local.array({PER}, {np_dtype})")
        lines.add(f"rb = cuda.local.array({PER}, {np_dtype})")
        lines.add("tx = cuda.threadIdx.x")
        lines.add("ty = cuda.threadIdx.y")
        lines.add(f"tid = ty * {THREADS} + tx")
        lines.add(f"row0 = cuda.blockIdx.y * {TILE}")
        lines.add(f"col0 = cuda.blockIdx.x * {TILE}")
        lines.add("z = cuda.blockIdx.z")
        lines.add(f"a0 = {_offset(self.a_batch, self.batch_space, self.m * self.k)}")
        lines.add(f"b0 = {_offset(self.b_batch, self.batch_space, self.k * self.n)}")
        lines.add(f"for u in range({PER}):")
        lines.add(f"    for v in range({PER}):")
        lines.add(f"        acc[u, v] = _{dtype.short}(0)")
        lines.add(f"for k0 in range(0, {self.k}, {TILE_K}):", self.product.loc.short if self.product.loc else None)
        lines.indent()
        lines.add(f"for e in range({TILE * TILE_K // (THREADS * THREADS)}):  # each thread's share of both tiles")
        lines.indent()
        lines.add(f"t = tid + e * {THREADS * THREADS}")
        self._load_a(lines)
        self._load_b(lines)
        lines.dedent()
        lines.add("cuda.syncthreads()")
        lines.add(f"for kk in range({TILE_K}):")
        lines.add(f"    for u in range({PER}):")
        lines.add(f"        ra[u] = sa[kk, ty + {THREADS} * u]")
        lines.add(f"        rb[u] = sb[kk, tx + {THREADS} * u]")
        lines.add(f"    for u in range({PER}):")
        lines.add(f"        for v in range({PER}):")
        lines.add("            acc[u, v] += ra[u] * rb[v]")
        lines.add("cuda.syncthreads()")
        lines.dedent()
        lines.add(f"for u in range({PER}):")
        lines.indent()
        lines.add(f"row = row0 + ty + {THREADS} * u")
        lines.add(f"for v in range({PER}):")
        lines.indent()
        lines.add(f"col = col0 + tx + {THREADS} * v")
        lines.add(f"if row < {self.m} and col < {self.n}:")
        lines.indent()
        lines.add(f"i = z * {self.m * self.n} + row * {self.n} + col")
        lines.add("product = acc[u, v]")
        self.epilogue.write(lines, args, {self.mm: "product"}, outs, variables)
        return lines.source()

    def _load_a(self, lines: Lines) -> None:
        """Element t of A's tile into sa, neighbouring threads reading neighbouring addresses:
        along K for A ([M, K] in memory), along M for a transposed A ([K, M] in memory)."""
        m, k = self.m, self.k
        r, c = (f"t % {TILE}", f"t // {TILE}") if self.ta else (f"t // {TILE_K}", f"t % {TILE_K}")
        lines.add(f"r = row0 + {r}")
        lines.add(f"c = k0 + {c}")
        at = f"c * {m} + r" if self.ta else f"r * {k} + c"
        lines.add(f"sa[c - k0, r - row0] = a[a0 + {at}] if r < {m} and c < {k} else 0")

    def _load_b(self, lines: Lines) -> None:
        """Element t of B's tile into sb: along N for B ([K, N] in memory), along K for a
        transposed B ([N, K] in memory)."""
        k, n = self.k, self.n
        r, c = (f"t % {TILE_K}", f"t // {TILE_K}") if self.tb else (f"t // {TILE}", f"t % {TILE}")
        lines.add(f"r = k0 + {r}")
        lines.add(f"c = col0 + {c}")
        at = f"c * {k} + r" if self.tb else f"r * {n} + c"
        lines.add(f"sb[r - k0, c - col0] = b[b0 + {at}] if r < {k} and c < {n} else 0")


def _matrices(product: Node) -> tuple[bool, bool, int, int, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(transpose_a, transpose_b, M, K, N, batch shape, a's and b's batch dims) of a matmul, or
    of a tensordot as one matrix product: its contracted axes must be a's leading or trailing
    axes and b's leading or trailing axes, in order (else NotImplementedError)."""
    a, b = (tuple(v.type.shape) for v in product.inputs)
    if product.op == "matmul":
        ta, tb = bool(product.attr("transpose_a")), bool(product.attr("transpose_b"))
        m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
        n = b[-2] if tb else b[-1]
        return ta, tb, m, k, n, tuple(product.out.type.shape)[:-2], a[:-2], b[:-2]
    axes_a, axes_b = tuple(product.attr("axes_a")), tuple(product.attr("axes_b"))
    c = len(axes_a)
    k = int(np.prod([a[i] for i in axes_a], dtype=np.int64))
    size_a, size_b = int(np.prod(a, dtype=np.int64)), int(np.prod(b, dtype=np.int64))
    if axes_a == tuple(range(len(a) - c, len(a))):
        ta = False
    elif axes_a == tuple(range(c)):
        ta = True
    else:
        raise NotImplementedError("tensordot over axes that are neither a's leading nor its trailing ones")
    if axes_b == tuple(range(c)):
        tb = False
    elif axes_b == tuple(range(len(b) - c, len(b))):
        tb = True
    else:
        raise NotImplementedError("tensordot over axes that are neither b's leading nor its trailing ones")
    if k == 0:
        raise NotImplementedError("an empty contraction")
    return ta, tb, size_a // k, k, size_b // k, (), (), ()


def _batch_access(batch: tuple[int, ...], out: tuple[int, ...]) -> Access:
    """Which matrix of an operand with batch dims `batch` product `z` of the `out` batch reads."""
    size = int(np.prod(out, dtype=np.int64))
    index = np.arange(int(np.prod(batch, dtype=np.int64)), dtype=np.int64).reshape(batch)
    return _affine(index, 0, out, size) if out else Access(0, 0, ())


def _offset(a: Access, space: tuple[int, ...], matrix: int) -> str:
    """The source of the element offset of matrix number `z` of an operand."""
    index = _index(a, space, "z")
    return "0" if index == "0" else f"({index}) * {matrix}"


def build(node: Node) -> CudaMatmulKernel | None:
    """A GEMM kernel for a float matmul or tensordot, alone or with its fused epilogue, or None
    (the node's body then runs its nodes in turn)."""
    body = node.attr("body") if node.op == "fused" else single_node_body(node)
    contractions = [n for n in body.nodes if get_op(n.op).fusion is Fusion.CONTRACTION]
    if len(contractions) != 1 or contractions[0].op not in ("matmul", "tensordot"):
        return None
    product = contractions[0]
    if product.out.type.dtype.np_dtype.name not in DTYPES or not all(
            v.type.is_fully_defined for v in (*body.params, *(o for n in body.nodes for o in n.outputs))):
        return None  # every shape of the body is baked into the kernel
    if any(v.node.op != "param" for v in product.inputs):
        return None
    try:
        return CudaMatmulKernel(body, node.name or "matmul", product)
    except NotImplementedError:
        return None
