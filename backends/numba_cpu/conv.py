"""Convolution kernels: im2col/col2im loops around BLAS GEMMs, and direct loops for depthwise.

A convolution is a GEMM of its input's windows ("columns", one row of KH*KW*C values per
output pixel) with the filter seen as [KH*KW*C, O]. The columns are built a block of output
pixels at a time into a buffer that stays in L2, and each block's GEMM (numba's `np.dot`,
BLAS) writes its rows of the output straight away; the full column matrix (9x the input for
3x3) never exists. The input gradient runs the same loop backwards (dy @ W^T into a block of
columns, then scatter-added into dx: col2im); the filter gradient sums columns^T @ dy over
the blocks. A 1x1, stride-1, unpadded convolution needs no columns: its GEMMs read the input.
Depthwise convolutions have no GEMM; they run as direct loops with the channel innermost.

Kernels work in NHWC with geometry as run-time ints, so one compiled kernel per op and dtype
serves every shape; NCHW operands are transposed in and out. float32/float64 only, static
shapes only: anything else (and the ops' run-time sizes operand) uses the NumPy reference.
"""
from __future__ import annotations

from textwrap import dedent, indent
from typing import Any, Callable

import numba
import numpy as np

from tfjit.ir.graph import Node
from tfjit.ops.conv import geometry

from . import blas
from .buffers import POOL
from .compile import compile_kernel

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BLOCK_BYTES = 1 << 19     # one block of columns: fits L2 (1 MiB) next to the filter and output rows
MAX_BLOCK_ROWS = 1024
PARALLEL_MIN_FLOPS = 1 << 24  # a parallel kernel costs 16-33 us a call more (DESIGN.md)

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


_IM2COL = """
@njit(cache=True, error_model='numpy', nogil=True)
def im2col(x, g, p0, m, col):
    """ + GEOMETRY + """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for r in range(m):
        p = p0 + r
        n = p // (oh * ow)
        a = (p // ow) % oh
        b = p % ow
        for i in range(kh):
            ih = a * sh - pt + i * dh
            for j in range(kw):
                iw = b * sw - pl + j * dw
                base = (i * kw + j) * c
                if 0 <= ih < h and 0 <= iw < w:
                    for k in range(c):
                        col[r, base + k] = x[n, ih, iw, k]
                else:
                    for k in range(c):
                        col[r, base + k] = 0
"""

# Each GEMM kernel splits its output pixels into `threads` contiguous ranges (whole images
# for the input gradient, whose scatter-add crosses block edges), one per prange iteration;
# each range runs block by block with its own slice of the scratch buffers.
_FORWARD = """
def conv_forward(x, w, out, g, pointwise, threads, col):
    total = out.shape[0]
    if threads == 1:
        forward_range(x, w, out, g, pointwise, 0, total, col[0])
    else:
        for t in prange(threads):
            forward_range(x, w, out, g, pointwise, total * t // threads, total * (t + 1) // threads, col[t])


@njit(cache=True, error_model='numpy', nogil=True)
def forward_range(x, w, out, g, pointwise, start, end, col):
    rows = col.shape[0]
    for p0 in range(start, end, rows):
        m = min(rows, end - p0)
        if pointwise:
            np.dot(x.reshape((out.shape[0], x.shape[3]))[p0:p0 + m], w, out[p0:p0 + m])
        else:
            im2col(x, g, p0, m, col)
            np.dot(col[:m], w, out[p0:p0 + m])
""" + _IM2COL

_BACKPROP_FILTER = """
def conv_backprop_filter(x, dy, g, pointwise, threads, col, parts):
    total = dy.shape[0]
    if threads == 1:
        filter_range(x, dy, g, pointwise, 0, total, col[0], parts[0], parts[1])
    else:
        for t in prange(threads):
            filter_range(x, dy, g, pointwise, total * t // threads, total * (t + 1) // threads, col[t],
                         parts[2 * t], parts[2 * t + 1])


@njit(cache=True, error_model='numpy', nogil=True)
def filter_range(x, dy, g, pointwise, start, end, col, acc, part):
    rows = col.shape[0]
    acc[:] = 0
    for p0 in range(start, end, rows):
        m = min(rows, end - p0)
        if pointwise:
            np.dot(x.reshape((dy.shape[0], x.shape[3]))[p0:p0 + m].T, dy[p0:p0 + m], part)
        else:
            im2col(x, g, p0, m, col)
            np.dot(col[:m].T, dy[p0:p0 + m], part)
        acc += part
""" + _IM2COL

_BACKPROP_INPUT = """
def conv_backprop_input(dy, wt, dx, g, pointwise, threads, col):
    n = dx.shape[0]
    if threads == 1:
        input_range(dy, wt, dx, g, pointwise, 0, n, col[0])
    else:
        for t in prange(threads):
            input_range(dy, wt, dx, g, pointwise, n * t // threads, n * (t + 1) // threads, col[t])


@njit(cache=True, error_model='numpy', nogil=True)
def input_range(dy, wt, dx, g, pointwise, n0, n1, col):
    """ + GEOMETRY + """
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    rows = col.shape[0]
    if pointwise:
        dx2 = dx.reshape((dy.shape[0], c))
        for p0 in range(n0 * oh * ow, n1 * oh * ow, rows):
            m = min(rows, n1 * oh * ow - p0)
            np.dot(dy[p0:p0 + m], wt, dx2[p0:p0 + m])
        return
    dx[n0:n1] = 0
    for p0 in range(n0 * oh * ow, n1 * oh * ow, rows):
        m = min(rows, n1 * oh * ow - p0)
        np.dot(dy[p0:p0 + m], wt, col[:m])
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
                                dx[n, ih, iw, k] += col[r, base + k]
"""

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

_SOURCES = {
    "conv_forward": _FORWARD, "conv_backprop_filter": _BACKPROP_FILTER, "conv_backprop_input": _BACKPROP_INPUT,
    "depthwise_forward": _DEPTHWISE_FORWARD, "depthwise_backprop_input": _DEPTHWISE_BACKPROP_INPUT,
    "depthwise_backprop_filter": _DEPTHWISE_BACKPROP_FILTER,
}
_PARALLEL = {"conv_forward", "conv_backprop_filter", "conv_backprop_input"}
_COMPILED: dict[str, Callable[..., None]] = {}


def _compiled(entry: str) -> Callable[..., None]:
    kernel = _COMPILED.get(entry)
    if kernel is None:
        blas.single_threaded()
        kernel = _COMPILED[entry] = compile_kernel(_SOURCES[entry], entry, name=entry,
                                                    parallel=entry in _PARALLEL)
    return kernel


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


# -- the ops -------------------------------------------------------------------------------
class _Gemm:
    """The shared set-up of the three GEMM kernels: geometry, block rows, threads, scratch."""

    entry = ""

    def __init__(self, node: Node, x_shape: tuple[int, ...], f_shape: tuple[int, ...], pixels: int):
        self.fmt = node.attr("data_format")
        self.dtype = node.types[0].dtype.np_dtype
        self.out_shape = tuple(node.types[0].shape)
        self.x_shape, self.f_shape = nhwc_shape(x_shape, self.fmt), tuple(f_shape)
        self.g = window_geometry(self.x_shape, self.f_shape[:2], node.attr_dict)
        self.pointwise = _is_pointwise(self.g, self.x_shape)
        self.pixels = pixels                              # output pixels: the GEMMs' rows
        self.k = int(np.prod(self.f_shape[:3]))           # KH*KW*C: the columns' width
        self.o = self.f_shape[3]
        self.rows = _block_rows(self.k, self.dtype.itemsize, pixels)
        big = 2.0 * pixels * self.k * self.o >= PARALLEL_MIN_FLOPS
        self.threads = numba.get_num_threads() if big else 1
        self.kernel = _compiled(self.entry)
        self.source = _SOURCES[self.entry]  # for `tfjit dump --stage kernels`

    def _columns(self) -> np.ndarray:
        """Each thread's block of columns (empty for pointwise: its shape still gives the rows)."""
        return POOL.empty((self.threads, self.rows, 0 if self.pointwise else self.k), self.dtype)


class Conv2D(_Gemm):
    """conv2d: out[N*OH*OW, O] = columns(x) @ W[KH*KW*C, O], block by block."""

    entry = "conv_forward"

    def __init__(self, node: Node):
        x, f = (tuple(v.type.shape) for v in node.inputs)
        out = nhwc_shape(node.types[0].shape, node.attr("data_format"))
        super().__init__(node, x, f, int(np.prod(out[:3])))

    def __call__(self, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        out = POOL.empty(nhwc_shape(self.out_shape, self.fmt), self.dtype)
        if out.size == 0 or self.k == 0:
            out.fill(0)
        else:
            w = np.ascontiguousarray(f).reshape(self.k, self.o)
            self.kernel(to_nhwc(x, self.fmt), w, out.reshape(self.pixels, self.o), self.g, self.pointwise,
                        self.threads, self._columns())
        return from_nhwc(out, self.fmt)


class Conv2DBackpropInput(_Gemm):
    """dx = col2im(dy @ W^T), block by block; threads take whole images (the scatter-add of
    neighbouring pixels meets at block edges)."""

    entry = "conv_backprop_input"

    def __init__(self, node: Node):
        f, dy = (tuple(v.type.shape) for v in node.inputs)
        dy = nhwc_shape(dy, node.attr("data_format"))
        super().__init__(node, node.types[0].shape, f, int(np.prod(dy[:3])))
        self.threads = min(self.threads, max(1, self.x_shape[0]))

    def __call__(self, f: np.ndarray, dy: np.ndarray) -> np.ndarray:
        dx = POOL.empty(self.x_shape, self.dtype)
        if dx.size == 0:
            pass
        elif self.pixels == 0 or self.o == 0:
            dx.fill(0)
        else:
            wt = np.ascontiguousarray(f.reshape(self.k, self.o).T)
            dys = to_nhwc(dy, self.fmt).reshape(self.pixels, self.o)
            self.kernel(dys, wt, dx, self.g, self.pointwise, self.threads, self._columns())
        return from_nhwc(dx, self.fmt)


class Conv2DBackpropFilter(_Gemm):
    """dW = sum over blocks of columns(x)^T @ dy; each thread sums its own blocks."""

    entry = "conv_backprop_filter"

    def __init__(self, node: Node):
        x, dy = (tuple(v.type.shape) for v in node.inputs)
        dy = nhwc_shape(dy, node.attr("data_format"))
        super().__init__(node, x, node.types[0].shape, int(np.prod(dy[:3])))

    def __call__(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        if self.pixels == 0 or self.k * self.o == 0:
            return np.zeros(self.f_shape, self.dtype)
        dys = to_nhwc(dy, self.fmt).reshape(self.pixels, self.o)
        parts = np.empty((2 * self.threads, self.k, self.o), self.dtype)  # per thread: its sum, a block's
        self.kernel(to_nhwc(x, self.fmt), dys, self.g, self.pointwise, self.threads, self._columns(), parts)
        df = parts[0] if self.threads == 1 else parts[0::2].sum(axis=0)
        return df.reshape(self.f_shape)


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
        self.kernel = _compiled(entry)
        self.source = _SOURCES[entry]

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
    "conv2d_backprop_input": Conv2DBackpropInput,
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
