"""CUDA matmul kernels: a tiled shared-memory GEMM with the contraction's fused epilogue.

One block computes a TILE x TILE tile of one product of the batch (grid x: column tiles,
y: row tiles, z: the broadcast batch). Per step along K, each thread loads one element of
A's and one of B's tile into shared memory (a transposed operand is read so that
neighbouring threads still read neighbouring addresses, and stored transposed: no copy),
then accumulates a row of A's tile times a column of B's. Before the store the fused
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

TILE = 16
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
        self.dtypes = tuple(body.params[p].type.dtype.np_dtype for p in (*self.operands, *self.epilogue.params)) + \
            tuple(r.type.dtype.np_dtype for r in body.results) + \
            tuple(t.out.type.dtype.np_dtype for t in self.epilogue.targets)

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the epilogue assigns, in the order `assign_to` takes their arrays."""
        return tuple(t.attr("var") for t in self.epilogue.targets)

    def __call__(self, *args: Buffer, assign_to: tuple[Any, ...] = ()) -> tuple[Buffer, ...]:
        """Run on `args`; `assign_to` holds the device arrays of `variables`, updated in place."""
        if len(assign_to) != len(self.variables):
            raise NotImplementedError("the variables this kernel assigns were not given")
        outs = [Buffer.empty_on_device(tuple(r.type.shape), r.type.dtype.np_dtype) for r in self.body.results]
        grid = (-(-self.n // TILE), -(-self.m // TILE), self.batch)
        ins = [args[p].to_device() for p in (*self.operands, *self.epilogue.params)]
        self.kernel[grid, (TILE, TILE)](*ins, *(o.device for o in outs), *assign_to)
        return tuple(outs)

    def _source(self) -> str:
        lines = DeviceLines()
        dtype = self.product.out.type.dtype
        args = {p: f"in{k}" for k, p in enumerate(self.epilogue.params)}
        outs = [f"out{k}" for k in range(len(self.body.results))]
        variables = [f"var{k}" for k in range(len(self.epilogue.targets))]
        lines.add(f"def kernel({', '.join(['a', 'b', *args.values(), *outs, *variables])}):", self.name)
        lines.indent()
        for s in ("sa", "sb"):
            lines.add(f"{s} = cuda.shared.array(({TILE}, {TILE}), np.{dtype.np_dtype.name})")
        lines.add("tx = cuda.threadIdx.x")
        lines.add("ty = cuda.threadIdx.y")
        lines.add(f"row = cuda.blockIdx.y * {TILE} + ty")
        lines.add(f"col = cuda.blockIdx.x * {TILE} + tx")
        lines.add("z = cuda.blockIdx.z")
        lines.add(f"a0 = {_offset(self.a_batch, self.batch_space, self.m * self.k)}")
        lines.add(f"b0 = {_offset(self.b_batch, self.batch_space, self.k * self.n)}")
        lines.add(f"acc = _{dtype.short}(0)")
        lines.add(f"for k0 in range(0, {self.k}, {TILE}):", self.product.loc.short if self.product.loc else None)
        lines.indent()
        self._load_a(lines)
        self._load_b(lines)
        lines.add("cuda.syncthreads()")
        lines.add(f"for kk in range({TILE}):")
        lines.add("    acc += sa[ty, kk] * sb[kk, tx]")
        lines.add("cuda.syncthreads()")
        lines.dedent()
        lines.add(f"if row < {self.m} and col < {self.n}:")
        lines.indent()
        lines.add(f"i = z * {self.m * self.n} + row * {self.n} + col")
        self.epilogue.write(lines, args, {self.mm: "acc"}, outs, variables)
        return lines.source()

    def _load_a(self, lines: Lines) -> None:
        """sa[r, c] = A[tile row r, k0 + c]; a transposed A ([K, M] in memory) is read along M."""
        m, k = self.m, self.k
        if self.ta:
            lines.add(f"r = cuda.blockIdx.y * {TILE} + tx")
            lines.add("c = k0 + ty")
            lines.add(f"sa[tx, ty] = a[a0 + c * {m} + r] if r < {m} and c < {k} else 0")
        else:
            lines.add("c = k0 + tx")
            lines.add(f"sa[ty, tx] = a[a0 + row * {k} + c] if row < {m} and c < {k} else 0")

    def _load_b(self, lines: Lines) -> None:
        """sb[r, c] = B[k0 + r, tile column c]; a transposed B ([N, K] in memory) is read along K."""
        k, n = self.k, self.n
        if self.tb:
            lines.add(f"r = cuda.blockIdx.x * {TILE} + ty")
            lines.add("c = k0 + tx")
            lines.add(f"sb[tx, ty] = b[b0 + r * {k} + c] if r < {n} and c < {k} else 0")
        else:
            lines.add("r = k0 + ty")
            lines.add(f"sb[ty, tx] = b[b0 + r * {n} + col] if r < {k} and col < {n} else 0")


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
            v.type.is_fully_defined for v in (*product.inputs, *body.results)):
        return None
    if any(v.node.op != "param" for v in product.inputs):
        return None
    try:
        return CudaMatmulKernel(body, node.name or "matmul", product)
    except NotImplementedError:
        return None
