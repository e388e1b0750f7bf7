"""Convolution kernels: im2col loops around BLAS GEMMs, and direct loops for depthwise.

A convolution is a GEMM of its input's windows ("columns", one row of KH*KW*C values per
output pixel) with the filter seen as [KH*KW*C, O]. The columns are built a block of output
pixels at a time into a buffer that stays in L2, and each block's GEMM (`gemm.matmul`, BLAS
called from inside the kernel) writes its rows of the output straight away; the full column
matrix (9x the input for 3x3) never exists. A fused contraction body of a convolution and its
elementwise epilogue (bias, relu, relu mask, residual) runs the epilogue on each block right
after its GEMM (`FusedConv`). The input gradient of a stride-1 convolution with at least as
many input as output channels, or one going by Winograd, is itself such a convolution (of dy
with the flipped filter); others run the loop backwards (dy @ W^T into a block of columns,
then scatter-added into dx: col2im). The filter gradient accumulates columns^T @ dy over the
blocks in BLAS. A 1x1, stride-1, unpadded convolution needs no columns: its GEMMs read the
input. A 3x3 stride-1 convolution (forward, an input gradient run as one, or a filter
gradient) of 8 or more input channels goes by Winograd F(2x2, 3x3) instead (winograd.py:
2.25x fewer multiplies, 1.5-1.8x faster on the CNN's layers), and a 1xK or Kx1 one (K = 3, 5,
7) by 1-D Winograd F(2, K) (winograd_1d.py: 1.75x fewer at K = 7). Kernels are serial numba
functions that release the GIL; Python threads take chunks of their blocks (`_in_chunks`).
Depthwise convolutions have no GEMM; they run as direct loops with the channel innermost.

Kernels work in NHWC with geometry as run-time ints, so one compiled kernel per op, epilogue
and dtype serves every shape; NCHW operands are transposed in and out. float32/float64 only,
static shapes only: anything else (and the ops' run-time sizes operand) uses the NumPy
reference.
"""
from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from textwrap import dedent, indent
from typing import Any, Callable

import numba
import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op
from tfjit.ops.conv import geometry

from .buffers import POOL
from .codegen import INDEX_ONLY, ElementWriter, Lines, supported
from . import winograd, winograd_1d, winograd_tiles
from .compile import compile_kernel
from .scratch import scratch

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BLOCK_BYTES = 1 << 19     # one block of columns: fits L2 (1 MiB) next to the filter and output rows
MAX_BLOCK_ROWS = 1024
WINOGRAD = True
WINOGRAD_BLOCK_BYTES = 1 << 19  # a block's transformed tiles (V: 16 x tiles x C)
WINOGRAD_MIN_CHANNELS = 8  # 3x3 to 32 channels, single thread: from 3, 1.7 ms (Winograd) vs 1.5
                           # (im2col); from 8, 2.3 vs 2.5; from 16, 3.0 vs 4.2
LINE_GRADIENT_MIN_CHANNELS = 32  # see as_convolution
PARALLEL_MIN_FLOPS = 1 << 24  # a threaded call costs tens of us more (DESIGN.md)

# -- kernel sources (geometry `g`: kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow) --------
GEOMETRY = "kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]"


def window_kernel(signature: str, spatial: str, setup: str, tap: str, before: str = "", after: str = "") -> str:
    """Source of a direct kernel visiting every output pixel (n, a, b) and, inside, every tap
    (i, j) of its window that falls on the input (row ih, column iw): `setup` runs once,
    `before` and `after` per pixel around the taps, `tap` per tap. `spatial` names the NHWC
    array giving h, w, c and the batch."""
    taps = ("for i in range(kh):\n"
            "    ih = a * sh - pt + i * dh\n"
            "    if 0 <= ih < h:\n"
            "        for j in range(kw):\n"
            "            iw = b * sw - pl + j * dw\n"
            "            if 0 <= iw < w:\n" + indent(dedent(tap), " " * 16))
    pixel = dedent(before) + taps + dedent(after)
    loops = (f"for n in range({spatial}.shape[0]):\n    for a in range(oh):\n        for b in range(ow):\n"
             + indent(pixel, " " * 12))
    head = f"{GEOMETRY}\nh, w, c = {spatial}.shape[1], {spatial}.shape[2], {spatial}.shape[3]\n"
    return f"\ndef {signature}:\n" + indent(head + dedent(setup) + loops, " " * 4)


_PRELUDE = ("from tfjit.backends.numba_cpu.gemm import matmul\n"
            "from tfjit.backends.numba_cpu.im2col import im2col\n"
            "from tfjit.backends.numba_cpu.winograd_tiles import (input_tiles, output_gradient_tiles,\n"
            "                                                    output_tiles)\n\n\n")

# Each GEMM kernel splits its output pixels into `chunks` equal contiguous ranges (whole
# images for the col2im input gradient, whose scatter-add crosses block edges); a call runs
# range q in equal blocks of at most `rows` (no one-row remainder), with the scratch buffers
# of the thread running it (`slot`; see `_in_chunks`).
_RANGES = """\
start = total * q // chunks
end = total * (q + 1) // chunks
blocks = max(1, (end - start + rows - 1) // rows)
step = max(1, (end - start + blocks - 1) // blocks)  # equal blocks of at most `rows`
for p0 in range(start, end, step):
    m = min(step, end - p0)
"""


def forward_source(ins: list[str], outs: list[str], target: str, epilogue: list[str],
                   setup: list[str], pieces: int = 1) -> str:
    """The forward kernel: each block of output pixels is the GEMM of its columns (the input
    rows themselves for a pointwise convolution) with the filter, into `target` (an output's
    rows or the thread's scratch `acc`); `epilogue` (element code reading `c`, the block's
    value at row r, channel o) then runs on the block while it is in cache; `setup` runs
    first (reading scalar inputs). With several `pieces` (x0, x1, ...: a pointwise
    convolution of their channel concat) the block sums each piece's GEMM with its rows of w."""
    if pieces == 1:
        xs = ["x"]
        body = [f"block = {target}",
                "if pointwise:",
                "    matmul(x.reshape((total, x.shape[3]))[p0:p0 + m], w, block, 0.0)",
                "else:",
                "    im2col(x, g, p0, m, col[slot])",
                "    matmul(col[slot, :m], w, block, 0.0)"]
    else:
        xs = [f"x{i}" for i in range(pieces)]
        body = [f"block = {target}", "e = 0"]
        for i, x in enumerate(xs):
            body += [f"matmul({x}.reshape((total, {x}.shape[3]))[p0:p0 + m], w[e:e + {x}.shape[3]], block, "
                     f"{0.0 if i == 0 else 1.0})", f"e += {x}.shape[3]"]
    if epilogue:
        # Element reads and writes index the C-contiguous arguments, not the `block` view,
        # so that the channel loop vectorises.
        value = "acc[slot, r, o]" if target.startswith("acc") else target.split("[")[0] + "[p, o]"
        body += ["for r in range(m):", "    p = p0 + r", "    for o in range(block.shape[1]):",
                 f"        c = {value}"] + ["        " + line for line in epilogue]
    signature = ", ".join([*xs, "w", "g", "pointwise", "q", "chunks", "slot", "col", "acc", "total", *ins, *outs])
    loops = _RANGES + indent("\n".join(body), " " * 4)
    head = "".join(line + "\n" for line in ["rows = col.shape[1]", *setup])
    return f"\ndef conv_forward({signature}):\n" + indent(head + loops, " " * 4) + "\n"


def _filter_source() -> str:
    body = ("if pointwise:\n"
            "    matmul(x.reshape((total, x.shape[3]))[p0:p0 + m].T, dy[p0:p0 + m], parts[slot], 1.0)\n"
            "else:\n"
            "    im2col(x, g, p0, m, col[slot])\n"
            "    matmul(col[slot, :m].T, dy[p0:p0 + m], parts[slot], 1.0)\n")
    loops = _RANGES + indent(body, " " * 4)
    return ("\ndef conv_backprop_filter(x, dy, g, pointwise, q, chunks, slot, col, parts):\n"
            "    total = dy.shape[0]\n    rows = col.shape[1]\n" + indent(loops, " " * 4))


def _input_source() -> str:
    """The input gradient of a strided convolution: dy @ W^T into a block of columns, then
    scatter-added into dx (col2im); threads take whole images."""
    body = ("""\
matmul(dy[p0:p0 + m], wt, col[slot, :m], 0.0)
for r in range(m):
    p = p0 + r
    n = p // (oh * ow)
    a = (p // ow) % oh
    b = p % ow
    for i in range(kh):
        ih = a * sh - pt + i * dh
        if 0 <= ih < h:
            for j in range(kw):
                iw = b * sw - pl + j * dw
                if 0 <= iw < w:
                    base = (i * kw + j) * c
                    for k in range(c):
                        dx[n, ih, iw, k] += col[slot, r, base + k]
""")
    loops = (_RANGES.replace("start = total * q // chunks", "start = images * q // chunks * oh * ow")
             .replace("end = total * (q + 1) // chunks", "end = images * (q + 1) // chunks * oh * ow")
             + indent(body, " " * 4))
    return ("\ndef conv_backprop_input(dy, wt, dx, g, q, chunks, slot, col):\n"
            f"    {GEOMETRY}\n    images, h, w, c = dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]\n"
            "    rows = col.shape[1]\n    dx[images * q // chunks:images * (q + 1) // chunks] = 0\n"
            + indent(loops, " " * 4))


# Depthwise filters come flattened to [KH, KW, C*M]: input channel k feeds output channels
# k*M .. k*M+M-1. A multiplier of 1 takes a plain loop over the channels, which vectorises.
_DEPTHWISE_FORWARD = window_kernel("depthwise_forward(x, f, out, g, mult)", "x", "out[:] = 0\n", """\
    if mult == 1:
        for k in range(c):
            out[n, a, b, k] += x[n, ih, iw, k] * f[i, j, k]
    else:
        for k in range(c):
            xv = x[n, ih, iw, k]
            for e in range(k * mult, (k + 1) * mult):
                out[n, a, b, e] += xv * f[i, j, e]
""")

_DEPTHWISE_BACKPROP_INPUT = window_kernel("depthwise_backprop_input(f, dy, dx, g, mult)", "dx", "dx[:] = 0\n", """\
    if mult == 1:
        for k in range(c):
            dx[n, ih, iw, k] += dy[n, a, b, k] * f[i, j, k]
    else:
        for k in range(c):
            acc = dx[n, ih, iw, k]
            for e in range(k * mult, (k + 1) * mult):
                acc += dy[n, a, b, e] * f[i, j, e]
            dx[n, ih, iw, k] = acc
""")

_DEPTHWISE_BACKPROP_FILTER = window_kernel("depthwise_backprop_filter(x, dy, df, g, mult)", "x", "df[:] = 0\n", """\
    if mult == 1:
        for k in range(c):
            df[i, j, k] += x[n, ih, iw, k] * dy[n, a, b, k]
    else:
        for k in range(c):
            xv = x[n, ih, iw, k]
            for e in range(k * mult, (k + 1) * mult):
                df[i, j, e] += xv * dy[n, a, b, e]
""")

_DEPTHWISE = {
    "depthwise_forward": _DEPTHWISE_FORWARD, "depthwise_backprop_input": _DEPTHWISE_BACKPROP_INPUT,
    "depthwise_backprop_filter": _DEPTHWISE_BACKPROP_FILTER,
}
_COMPILED: dict[str, Callable[..., None]] = {}


def _compiled(entry: str, source: str) -> Callable[..., None]:
    kernel = _COMPILED.get(source)
    if kernel is None:
        prelude = _PRELUDE if "matmul(" in source else ""
        kernel = _COMPILED[source] = compile_kernel(source, entry, name=entry, prelude=prelude)
    return kernel


# The GEMM kernels are serial and release the GIL; Python threads run their ranges: compiled
# with parallel=True they took 2-3x as long to compile (seconds per kernel), and a call from a
# thread costs about what a parallel region does. Each thread takes the next of a few ranges per
# thread as it finishes one, so a core that another process holds slows the step by its share
# only (with one fixed range per thread the step waited for the slowest thread: 3x slower under
# load, measured).
CHUNKS_PER_THREAD = 4
MIN_CHUNK_ROWS = 32
_WORKERS: list[ThreadPoolExecutor] = []


def _chunks(threads: int, rows: int) -> int:
    """How many ranges to split `rows` GEMM rows into for `threads` threads: a few per thread,
    each of at least MIN_CHUNK_ROWS rows."""
    return 1 if threads == 1 else max(1, min(threads * CHUNKS_PER_THREAD, rows // MIN_CHUNK_ROWS))


def _in_chunks(kernel: Callable[..., None], threads: int, chunks: int, before: tuple[Any, ...],
               after: tuple[Any, ...]) -> None:
    """kernel(*before, q, chunks, slot, *after) for q in range(chunks), on `threads` threads
    (slot: the running thread's number, which picks its scratch)."""
    if threads == 1:
        for q in range(chunks):
            kernel(*before, q, chunks, 0, *after)
        return
    if not _WORKERS:
        _WORKERS.append(ThreadPoolExecutor(max_workers=max(1, numba.get_num_threads() - 1),
                                           thread_name_prefix="tfjit-conv"))
    pending = itertools.count()  # next() is atomic under the GIL

    def work(slot: int) -> None:
        q = next(pending)
        while q < chunks:
            kernel(*before, q, chunks, slot, *after)
            q = next(pending)

    futures = [_WORKERS[0].submit(work, slot) for slot in range(1, threads)]
    work(0)
    for future in futures:
        future.result()


# -- layouts -------------------------------------------------------------------------------
def to_nhwc(a: np.ndarray, data_format: str) -> np.ndarray:
    """`a` as a C-contiguous NHWC array (a copy into a pooled buffer when it is NCHW)."""
    if data_format != "NCHW":
        return np.ascontiguousarray(a)
    out = POOL.empty((a.shape[0], a.shape[2], a.shape[3], a.shape[1]), a.dtype)
    np.copyto(out, a.transpose(0, 2, 3, 1))
    return out


def from_nhwc(a: np.ndarray, data_format: str) -> np.ndarray:
    if data_format != "NCHW":
        return a
    out = POOL.empty((a.shape[0], a.shape[3], a.shape[1], a.shape[2]), a.dtype)
    np.copyto(out, a.transpose(0, 3, 1, 2))
    return out


def nhwc_shape(shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if data_format == "NCHW" else tuple(shape)


def static_shapes(node: Node) -> bool:
    """Every operand and result of `node` has a fully known shape."""
    types = [v.type for v in node.inputs] + list(node.types)
    return all(t.shape is not None and all(isinstance(d, int) for d in t.shape) for t in types)


def window_geometry(in_nhwc: tuple[int, ...], kernel: tuple[int, int], attrs: dict[str, Any]) -> np.ndarray:
    """The kernels' geometry vector for an NHWC input of shape `in_nhwc`."""
    g = geometry(in_nhwc[1:3], kernel, attrs["strides"], attrs["padding"], attrs.get("explicit_paddings", ()),
                 attrs["data_format"], attrs.get("dilations", (1, 1, 1, 1)))
    return np.array([*g.kernel, *g.strides, *g.dilations, g.pads[0][0], g.pads[1][0], *g.out], np.int64)


def _block_rows(k: int, itemsize: int, total: int) -> int:
    return max(1, min(total, MAX_BLOCK_ROWS, BLOCK_BYTES // max(1, k * itemsize)))


def _is_pointwise(g: np.ndarray, x_nhwc: tuple[int, ...]) -> bool:
    """A 1x1 window at stride 1 with the output the input's size: the columns are the input."""
    return bool(g[0] == 1 and g[1] == 1 and g[2] == 1 and g[3] == 1 and g[6] == 0 and g[7] == 0
                and g[8] == x_nhwc[1] and g[9] == x_nhwc[2])


def _winograd(f_shape: tuple[int, ...], steps: Any) -> bool:
    """3x3, all strides and dilations (`steps`) 1: Winograd (winograd.py), a block of 2x2 output
    tiles at a time; not for a few input channels (an RGB image), whose 16 GEMMs would be too
    thin."""
    return WINOGRAD and tuple(f_shape[:2]) == (3, 3) and all(int(v) == 1 for v in steps) \
        and f_shape[2] >= WINOGRAD_MIN_CHANNELS


def _winograd_blocks(out_nhwc: tuple[int, ...], f_shape: tuple[int, ...], dtype: np.dtype,
                     threads: int) -> tuple[int, int]:
    """(tiles a block, chunks) of a Winograd kernel over the 2x2 tiles of `out_nhwc`."""
    tiles = out_nhwc[0] * -(-out_nhwc[1] // 2) * -(-out_nhwc[2] // 2)
    rows = max(1, min(tiles, WINOGRAD_BLOCK_BYTES // (16 * max(f_shape[2], f_shape[3], 1) * dtype.itemsize)))
    return winograd.odd_rows(rows), _chunks(threads, tiles)


# -- the ops -------------------------------------------------------------------------------
class _Gemm:
    """The shared set-up of the GEMM kernels: geometry, block rows, threads, scratch.

    `x_shape` is the NHWC input whose columns the kernel builds, `f_shape` the HWIO filter of
    the GEMM, `pixels` the number of GEMM rows (output pixels) and `geometry` the window's.
    """

    def __init__(self, node: Node, x_shape: tuple[int, ...], f_shape: tuple[int, ...], pixels: int,
                 geometry: np.ndarray):
        self.fmt = node.attr("data_format")
        self.dtype = node.types[0].dtype.np_dtype
        self.x_shape, self.f_shape = tuple(x_shape), tuple(f_shape)
        self.g = geometry
        self.pointwise = _is_pointwise(self.g, self.x_shape)
        self.pixels = pixels
        self.k = int(np.prod(self.f_shape[:3]))           # KH*KW*C: the columns' width
        self.o = self.f_shape[3]
        self.rows = _block_rows(self.k, self.dtype.itemsize, pixels)
        big = 2.0 * pixels * self.k * self.o >= PARALLEL_MIN_FLOPS
        self.threads = numba.get_num_threads() if big else 1
        self.chunks = _chunks(self.threads, pixels)

    def _columns(self, *more: tuple[int, ...]) -> list[np.ndarray]:
        """Each thread's block of columns (empty for pointwise: its shape still gives the rows),
        and scratch arrays of the shapes `more`."""
        return scratch(self.dtype, (self.threads, self.rows, 0 if self.pointwise else self.k), *more)


class _Forward(_Gemm):
    """A GEMM of columns with a filter into the output: conv2d itself, and the input gradient
    of a stride-1 convolution, which is the convolution of dy with the filter flipped in space
    and transposed in channels (padded by its window's extent less the forward padding), so
    it writes each block of dx once instead of scatter-adding columns into it."""

    def __init__(self, node: Node):
        fmt = node.attr("data_format")
        self.transposed = node.op == "conv2d_backprop_input"
        if self.transposed:
            f, dy = (tuple(v.type.shape) for v in node.inputs)
            x, out = nhwc_shape(dy, fmt), nhwc_shape(node.types[0].shape, fmt)
            g = window_geometry(out, f[:2], node.attr_dict)
            kh, kw, dh, dw, pt, pl = g[0], g[1], g[4], g[5], g[6], g[7]
            g = np.array([kh, kw, 1, 1, dh, dw, (kh - 1) * dh - pt, (kw - 1) * dw - pl, out[1], out[2]], np.int64)
            f = (f[0], f[1], f[3], f[2])
        else:
            x, f = (tuple(v.type.shape) for v in node.inputs)
            x, out = nhwc_shape(x, fmt), nhwc_shape(node.types[0].shape, fmt)
            g = window_geometry(x, f[:2], node.attr_dict)
        self.out_nhwc = out
        super().__init__(node, x, f, int(np.prod(out[:3])), g)
        self.winograd = _winograd(f, g[2:6])
        if self.winograd:
            self.rows, self.chunks = _winograd_blocks(out, f, self.dtype, self.threads)
            winograd_tiles.register(self.dtype, "input", "output")
        self.line = winograd_1d.plan(x, out, f, g, self.dtype, WINOGRAD_MIN_CHANNELS) if WINOGRAD else None
        if self.line:  # 1x7, 7x1 & co: 1-D Winograd (winograd_1d.py)
            self.rows, self.chunks = self.line.rows, _chunks(self.threads, self.line.tiles)

    def operands(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The NHWC input and the [K, O] filter matrix, from the op's operands."""
        if self.transposed:  # (filter, dy)
            w = np.ascontiguousarray(a[::-1, ::-1].transpose(0, 1, 3, 2))
            return to_nhwc(b, self.fmt), w.reshape(self.k, self.o)
        return to_nhwc(a, self.fmt), np.ascontiguousarray(b).reshape(self.k, self.o)

    def run(self, kernel: Callable[..., None], xs: tuple[np.ndarray, ...], w: np.ndarray, direct: bool,
            ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
        """`kernel` (from `_forward_kernel`) on the NHWC input(s), the [K, O] filter matrix, the
        epilogue's inputs and the [pixels, O] outputs (`direct`: the first holds the GEMM's)."""
        if self.line:
            _in_chunks(kernel, self.threads, self.chunks, self.line.operands(xs[0], w),
                       (*self.line.scratch(self.threads), *ins, *outs))
            return
        if self.winograd:
            u = winograd.filter_transform(w.reshape(self.f_shape))
            v, mm, ys = scratch(self.dtype, (self.threads, 16, self.rows, self.f_shape[2]),
                                (self.threads, 16, self.rows, self.o), (self.threads, 4, self.rows, self.o))
            geometry = (int(self.g[6]), int(self.g[7]), int(self.g[8]), int(self.g[9]))
            _in_chunks(kernel, self.threads, self.chunks, (*xs, u, *geometry), (v, mm, ys, *ins, *outs))
            return
        cols, acc = self._columns((1, 1, 1) if direct else (self.threads, self.rows, self.o))
        _in_chunks(kernel, self.threads, self.chunks, (*xs, w, self.g, self.pointwise),
                   (cols, acc, self.pixels, *ins, *outs))


def _forward_kernel(plan: _Forward, ins: list[str], outs: list[str], target: str, epilogue: list[str],
                    setup: list[str], pieces: int = 1) -> tuple[Callable[..., None], str]:
    direct = None if target.startswith("acc") else target.split("[")[0]
    if plan.line:
        source = winograd_1d.source(plan.line.k, ins, outs, direct, epilogue, setup, _RANGES)
        return _compiled("conv_winograd_1d", source), source
    if plan.winograd:
        source = winograd.source(ins, outs, direct, epilogue, setup, _RANGES)
        return _compiled("conv_winograd", source), source
    source = forward_source(ins, outs, target, epilogue, setup, pieces)
    return _compiled("conv_forward", source), source


class Conv2D:
    """conv2d, or a stride-1 input gradient: out[N*OH*OW, O] = columns(x) @ W[KH*KW*C, O],
    block by block."""

    def __init__(self, node: Node):
        self.plan = _Forward(node)
        self.threads, self.chunks = self.plan.threads, self.plan.chunks
        self.kernel, self.source = _forward_kernel(self.plan, [], ["y"], "y[p0:p0 + m]", [], [])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        plan = self.plan
        out = POOL.empty(plan.out_nhwc, plan.dtype)
        x, w = plan.operands(a, b)
        plan.run(self.kernel, (x,), w, True, [], [out.reshape(plan.pixels, plan.o)])
        return from_nhwc(out, plan.fmt)


class Conv2DBackpropInput(_Gemm):
    """dx = col2im(dy @ W^T) for strided convolutions, block by block; threads take whole
    images (the scatter-add of neighbouring pixels meets at block edges)."""

    def __init__(self, node: Node):
        fmt = node.attr("data_format")
        f, dy = (tuple(v.type.shape) for v in node.inputs)
        dy, x = nhwc_shape(dy, fmt), nhwc_shape(node.types[0].shape, fmt)
        super().__init__(node, x, f, int(np.prod(dy[:3])), window_geometry(x, f[:2], node.attr_dict))
        self.threads = min(self.threads, max(1, self.x_shape[0]))
        self.chunks = 1 if self.threads == 1 else min(self.threads * CHUNKS_PER_THREAD, self.x_shape[0])
        self.source = _input_source()
        self.kernel = _compiled("conv_backprop_input", self.source)

    def __call__(self, f: np.ndarray, dy: np.ndarray) -> np.ndarray:
        dx = POOL.empty(self.x_shape, self.dtype)
        if dx.size == 0:
            pass
        elif self.pixels == 0 or self.o == 0:
            dx.fill(0)
        else:
            wt = np.ascontiguousarray(f.reshape(self.k, self.o).T)
            dys = to_nhwc(dy, self.fmt).reshape(self.pixels, self.o)
            cols, = scratch(self.dtype, (self.threads, self.rows, self.k))
            _in_chunks(self.kernel, self.threads, self.chunks, (dys, wt, dx, self.g), (cols,))
        return from_nhwc(dx, self.fmt)


def input_gradient(node: Node) -> Conv2D | Conv2DBackpropInput:
    """The input gradient's kernel: a forward convolution where that pays, col2im otherwise."""
    return Conv2D(node) if as_convolution(node) else Conv2DBackpropInput(node)


def as_convolution(node: Node) -> bool:
    """Whether a conv2d_backprop_input runs as a convolution of dy: only at stride 1, and only
    when dx has at least dy's channels or the convolution goes by Winograd. The im2col
    convolution's GEMM is [pixels, KH*KW*O] @ [KH*KW*O, C], col2im's [pixels, O] @ [O, KH*KW*C]:
    with C < O the former is the narrow one (a 3x3, 64 -> 32 channel gradient took 4.1 ms
    against col2im's 3.7, measured); Winograd's 16 GEMMs do 2.25x fewer FLOPs than either. A
    1xK or Kx1 one by 1-D Winograd pays from 32 dx channels on (1x7, 160 -> 128: 5.4 ms against
    col2im's 7.6; 128 -> 32: 1.2 against 1.5; 64 -> 16: even, measured)."""
    f = node.inputs[0].type.shape
    if not all(s == 1 for s in node.attr("strides")) or f is None:
        return False
    return (f[2] >= f[3] or _winograd((f[0], f[1], f[3], f[2]), node.attr_dict.get("dilations", (1, 1, 1, 1)))
            or (f[2] >= LINE_GRADIENT_MIN_CHANNELS and _Forward(node).line is not None))


class Conv2DBackpropFilter(_Gemm):
    """dW = sum over blocks of columns(x)^T @ dy; each thread sums its blocks into its own
    part (BLAS accumulates), the parts are added at the end. A 3x3 stride-1 filter gradient
    goes by Winograd instead (winograd.filter_gradient_source: 1.6-1.8x faster on the CNN's
    layers, single thread, measured), its parts the 16 transformed positions' [C, O]."""

    def __init__(self, node: Node):
        fmt = node.attr("data_format")
        x, dy = (tuple(v.type.shape) for v in node.inputs)
        x, self.dy_shape = nhwc_shape(x, fmt), nhwc_shape(dy, fmt)
        super().__init__(node, x, node.types[0].shape, int(np.prod(self.dy_shape[:3])),
                         window_geometry(x, tuple(node.types[0].shape[:2]), node.attr_dict))
        self.winograd = _winograd(self.f_shape, self.g[2:6])
        if self.winograd:
            self.rows, self.chunks = _winograd_blocks(self.dy_shape, self.f_shape, self.dtype, self.threads)
            winograd_tiles.register(self.dtype, "input", "output_gradient")
            self.source = winograd.filter_gradient_source(_RANGES)
            self.kernel = _compiled("conv_winograd_filter", self.source)
        else:
            self.source = _filter_source()
            self.kernel = _compiled("conv_backprop_filter", self.source)

    def __call__(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        if self.pixels == 0 or self.k * self.o == 0:
            return np.zeros(self.f_shape, self.dtype)
        xs = to_nhwc(x, self.fmt)
        if self.winograd:
            c = self.f_shape[2]
            parts, v, mm = scratch(self.dtype, (self.threads, 16, c, self.o), (self.threads, 16, self.rows, c),
                                   (self.threads, 16, self.rows, self.o))
            parts.fill(0)
            _in_chunks(self.kernel, self.threads, self.chunks, (xs, to_nhwc(dy, self.fmt), int(self.g[6]),
                                                                int(self.g[7])), (v, mm, parts))
            return winograd.filter_gradient(parts[0] if self.threads == 1 else parts.sum(axis=0))
        dys = to_nhwc(dy, self.fmt).reshape(self.pixels, self.o)
        parts = np.zeros((self.threads, self.k, self.o), self.dtype)
        _in_chunks(self.kernel, self.threads, self.chunks, (xs, dys, self.g, self.pointwise),
                    (self._columns()[0], parts))
        df = parts[0] if self.threads == 1 else parts.sum(axis=0)
        return df.reshape(self.f_shape)


# -- convolutions with their epilogue ------------------------------------------------------
SCALAR, CHANNEL, FULL = "scalar", "channel", "full"


def _kind(shape: tuple[int, ...], out: tuple[int, ...]) -> str | None:
    """How an epilogue value of `shape` is read at output pixel p, channel o: one value, one
    per channel (the trailing-dims broadcast of a bias), or one per element; None otherwise."""
    if int(np.prod(shape)) == 1:
        return SCALAR
    if tuple(shape) == tuple(out):
        return FULL
    if len(shape) <= len(out) and shape[-1] == out[-1] and all(d == 1 for d in shape[:-1]):
        return CHANNEL
    return None


class FusedConv:
    """A fused contraction body of one convolution (conv2d, or the input gradient of a
    stride-1 one) and its elementwise epilogue (bias, activation, relu mask, residual): each
    block of output pixels gets the epilogue right after its GEMM, while it is in cache,
    instead of a second pass over the whole output."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str, conv: Node, code: _Epilogue, pieces: list[Value] | None):
        setup, epilogue, inputs, results = code
        self.name = name
        self.plan = _Forward(conv)
        self._operands = [body.params.index(v) for v in conv.inputs] if pieces is None else \
            [-1, body.params.index(conv.inputs[1])]
        self._pieces = [] if pieces is None else [body.params.index(v) for v in pieces]
        self._inputs = inputs                       # (body param index, kind) of in0, in1, ...
        self._results = results                     # out0, out1, ...: distinct body results
        self._picks = [results.index(r) for r in body.results]
        self._types = [r.type.dtype.np_dtype for r in results]
        direct = conv.out in results
        target = f"out{results.index(conv.out)}[p0:p0 + m]" if direct else "acc[slot, :m]"
        self.direct = direct
        ins = [f"in{i}" for i in range(len(inputs))]
        outs = [f"out{j}" for j in range(len(results))]
        self.kernel, self.source = _forward_kernel(self.plan, ins, outs, target, epilogue, setup,
                                                   max(1, len(self._pieces)))

    def __call__(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        plan = self.plan
        if self._pieces:
            xs = tuple(np.ascontiguousarray(args[i]) for i in self._pieces)
            w = np.ascontiguousarray(args[self._operands[1]]).reshape(plan.k, plan.o)
        else:
            x, w = plan.operands(*(args[i] for i in self._operands))
            xs = (x,)
        outs = [POOL.empty(plan.out_nhwc, t) for t in self._types]
        shapes = {SCALAR: (), CHANNEL: (plan.o,), FULL: (plan.pixels, plan.o)}
        ins = [np.ascontiguousarray(args[i]).reshape(shapes[kind]) for i, kind in self._inputs]
        plan.run(self.kernel, xs, w, self.direct, ins, [o.reshape(plan.pixels, plan.o) for o in outs])
        return tuple(outs[k] for k in self._picks)


def build_fused(node: Node) -> FusedConv | None:
    """A kernel for a fused contraction body of one conv2d (or stride-1 conv2d_backprop_input)
    in NHWC and an elementwise epilogue over its output, or None (the body then runs node by
    node)."""
    body = node.attr("body")
    convs = [n for n in body.nodes if n.op in ("conv2d", "conv2d_backprop_input")]
    if len(convs) != 1:
        return None
    conv = convs[0]
    pieces = concat_pieces(body)
    if pieces is None and not all(v in body.params for v in conv.inputs):
        return None
    skip = {conv} if pieces is None else {conv, conv.inputs[0].node}
    if (conv.attr("data_format") != "NHWC" or len(conv.inputs) != 2 or not static_shapes(conv)
            or conv.types[0].dtype.np_dtype not in DTYPES
            or (conv.op == "conv2d_backprop_input" and not as_convolution(conv))):
        return None
    rest = Graph(body.name, body.params, [n for n in body.nodes if n not in skip], [])
    if any(get_op(n.op).stateful for n in rest.nodes) or not supported(rest):
        return None
    code = _epilogue_code(body, conv, skip)
    if code is None:
        return None
    try:
        return FusedConv(body, node.name or "contraction", conv, code, pieces)
    except NotImplementedError:
        return None


_Epilogue = tuple[list[str], list[str], list[tuple[int, str]], list[Value]]


def concat_pieces(body: Graph) -> list[Value] | None:
    """The body params concatenated along channels into the input of the body's one pointwise
    conv2d (which then runs as one GEMM per piece), or None."""
    convs = [n for n in body.nodes if n.op in ("conv2d", "conv2d_backprop_input")]
    if len(convs) != 1 or convs[0].op != "conv2d" or convs[0].attr("data_format") != "NHWC":
        return None
    conv = convs[0]
    concat = conv.inputs[0].node
    if concat.op != "concat" or not static_shapes(conv) or not all(v in body.params for v in concat.inputs):
        return None
    if concat.attr("axis") not in (3, -1) or conv.inputs[0] in body.results or conv.inputs[1] not in body.params:
        return None
    if sum(v is conv.inputs[0] for n in body.nodes for v in n.inputs) != 1:
        return None  # read by another node too
    x = tuple(conv.inputs[0].type.shape)
    if not _is_pointwise(window_geometry(x, tuple(conv.inputs[1].type.shape[:2]), conv.attr_dict), x):
        return None
    return list(concat.inputs)


def _epilogue_code(body: Graph, conv: Node, skip: set[Node]) -> _Epilogue | None:
    """The epilogue's set-up lines (scalar loads) and element code (reading `c`, the
    convolution at pixel p, channel o), the body params it reads with their kinds, and the
    distinct body results; None when some
    value is not a scalar, per-channel or full-size one, or a result is not full-size."""
    out = tuple(conv.types[0].shape)
    kinds: dict[Value, str | None] = {p: _kind(tuple(p.type.shape), out) for p in body.params}
    for n in body.nodes:
        if n in skip:
            kinds[n.out] = FULL if n is conv else None
            continue
        for v in n.outputs:
            kinds[v] = _kind(tuple(v.type.shape), out)
        if any(kinds[v] is None for v in [*n.inputs, *n.outputs]):
            return None
        if n.op in INDEX_ONLY and kinds[n.inputs[0]] != kinds[n.out] and n.op != "broadcast_to":
            return None  # a re-indexing that is not the identity on (p, o)
    results = list(dict.fromkeys(body.results))
    if not results or results == [conv.out] or any(kinds[r] != FULL or r.type.shape != conv.types[0].shape
                                                   for r in results):
        return None
    lines = Lines()
    inputs: list[tuple[int, str]] = []
    scalars: list[str] = []

    def load(v: Value) -> str:
        i = len(inputs)
        inputs.append((body.params.index(v), kinds[v]))
        if kinds[v] == SCALAR:
            scalars.append(f"s{i} = in{i}[()]")
            return f"s{i}"
        lines.add(f"a{i} = in{i}[{'p, o' if kinds[v] == FULL else 'o'}]")
        return f"a{i}"

    writer = ElementWriter(lines, load)
    writer.names[conv.out] = "c"
    for j, r in enumerate(results):
        if r is not conv.out:
            lines.add(f"out{j}[p, o] = {writer.value(r)}")
    return scalars, lines.source().splitlines(), inputs, results


class Depthwise:
    """The depthwise convolution and its two gradients, as direct loops."""

    def __init__(self, node: Node, entry: str):
        self.fmt = node.attr("data_format")
        self.entry = entry
        a, b = (tuple(v.type.shape) for v in node.inputs)
        self.out_shape = tuple(node.types[0].shape)
        x_shape, f_shape = {"depthwise_forward": (a, b), "depthwise_backprop_input": (self.out_shape, a),
                            "depthwise_backprop_filter": (a, self.out_shape)}[entry]
        self.f_flat = (f_shape[0], f_shape[1], f_shape[2] * f_shape[3])
        self.mult = f_shape[3]
        self.dtype = node.types[0].dtype.np_dtype
        self.g = window_geometry(nhwc_shape(x_shape, self.fmt), f_shape[:2], node.attr_dict)
        self.source = _DEPTHWISE[entry]
        self.kernel = _compiled(entry, self.source)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.entry == "depthwise_backprop_filter":  # (x, dy) -> filter
            out = np.empty(self.out_shape, self.dtype)
            self.kernel(to_nhwc(a, self.fmt), to_nhwc(b, self.fmt), out.reshape(self.f_flat), self.g, self.mult)
            return out
        out = POOL.empty(nhwc_shape(self.out_shape, self.fmt), self.dtype)
        if self.entry == "depthwise_backprop_input":  # (filter, dy) -> input
            args = (np.ascontiguousarray(a).reshape(self.f_flat), to_nhwc(b, self.fmt))
        else:                                         # (x, filter) -> output
            args = (to_nhwc(a, self.fmt), np.ascontiguousarray(b).reshape(self.f_flat))
        self.kernel(*args, out, self.g, self.mult)
        return from_nhwc(out, self.fmt)


_BUILDERS: dict[str, Callable[[Node], Any]] = {
    "conv2d": Conv2D,
    "conv2d_backprop_input": input_gradient,
    "conv2d_backprop_filter": Conv2DBackpropFilter,
    "depthwise_conv2d_native": lambda node: Depthwise(node, "depthwise_forward"),
    "depthwise_conv2d_native_backprop_input": lambda node: Depthwise(node, "depthwise_backprop_input"),
    "depthwise_conv2d_native_backprop_filter": lambda node: Depthwise(node, "depthwise_backprop_filter"),
}


def build(node: Node) -> Callable[..., np.ndarray] | None:
    """A compiled kernel for a convolution node, or None where the reference must run."""
    builder = _BUILDERS.get(node.op)
    if builder is None or len(node.inputs) != 2 or not static_shapes(node):
        return None
    if node.types[0].dtype.np_dtype not in DTYPES:
        return None
    return builder(node)
