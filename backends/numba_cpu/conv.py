"""Convolution kernels: im2col/col2im loops around BLAS GEMMs, and direct loops for depthwise.

A convolution is a GEMM of its input's windows ("columns", one row of KH*KW*C values per
output pixel) with the filter seen as [KH*KW*C, O]. The columns are built a block of output
pixels at a time into a buffer that stays in L2, and each block's GEMM (numba's `np.dot`,
BLAS) writes its rows of the output straight away; the full column matrix (9x the input for
3x3) never exists. The input gradient runs the same loop backwards (dy @ W^T into a block of
columns, then scatter-added into dx: col2im); the filter gradient sums columns^T @ dy over
the blocks. A 1x1, stride-1, unpadded convolution needs no columns: it is one GEMM.
Depthwise convolutions have no GEMM; they run as direct loops with the channel innermost.

Kernels work in NHWC with geometry as run-time ints, so one compiled kernel per op and dtype
serves every shape; NCHW operands are transposed in and out. float32/float64 only, static
shapes only: anything else (and the ops' run-time sizes operand) uses the NumPy reference.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Node
from tfjit.ops.conv import geometry

from .buffers import POOL
from .compile import compile_kernel

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BLOCK_BYTES = 1 << 18  # one block of columns: fits L2 next to the filter and the output rows

# -- kernel sources (geometry `g`: kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow) --------
_IM2COL = """
@njit(cache=True, error_model='numpy', nogil=True)
def im2col(x, g, p0, m, col):
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
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

_FORWARD = """
def conv_forward(x, w, out, g, rows):
    total = out.shape[0]
    col = np.empty((rows, w.shape[0]), x.dtype)
    for p0 in range(0, total, rows):
        m = min(rows, total - p0)
        im2col(x, g, p0, m, col)
        np.dot(col[:m], w, out[p0:p0 + m])
""" + _IM2COL

_BACKPROP_FILTER = """
def conv_backprop_filter(x, dy, dw, g, rows):
    total = dy.shape[0]
    col = np.empty((rows, dw.shape[0]), x.dtype)
    part = np.empty(dw.shape, x.dtype)
    dw[:] = 0
    for p0 in range(0, total, rows):
        m = min(rows, total - p0)
        im2col(x, g, p0, m, col)
        np.dot(col[:m].T, dy[p0:p0 + m], part)
        dw += part
""" + _IM2COL

_BACKPROP_INPUT = """
def conv_backprop_input(dy, wt, dx, g, rows):
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    total = dy.shape[0]
    col = np.empty((rows, wt.shape[1]), dx.dtype)
    dx[:] = 0
    for p0 in range(0, total, rows):
        m = min(rows, total - p0)
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

_DEPTHWISE_FORWARD = """
def depthwise_forward(x, f, out, g):
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    mult = f.shape[3]
    out[:] = 0
    for n in range(x.shape[0]):
        for a in range(oh):
            for b in range(ow):
                for i in range(kh):
                    ih = a * sh - pt + i * dh
                    if 0 <= ih < h:
                        for j in range(kw):
                            iw = b * sw - pl + j * dw
                            if 0 <= iw < w:
                                for k in range(c):
                                    for q in range(mult):
                                        out[n, a, b, k * mult + q] += x[n, ih, iw, k] * f[i, j, k, q]
"""

_DEPTHWISE_BACKPROP_INPUT = """
def depthwise_backprop_input(f, dy, dx, g):
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    mult = f.shape[3]
    dx[:] = 0
    for n in range(dx.shape[0]):
        for a in range(oh):
            for b in range(ow):
                for i in range(kh):
                    ih = a * sh - pt + i * dh
                    if 0 <= ih < h:
                        for j in range(kw):
                            iw = b * sw - pl + j * dw
                            if 0 <= iw < w:
                                for k in range(c):
                                    for q in range(mult):
                                        dx[n, ih, iw, k] += dy[n, a, b, k * mult + q] * f[i, j, k, q]
"""

_DEPTHWISE_BACKPROP_FILTER = """
def depthwise_backprop_filter(x, dy, df, g):
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    mult = df.shape[3]
    df[:] = 0
    for n in range(x.shape[0]):
        for a in range(oh):
            for b in range(ow):
                for i in range(kh):
                    ih = a * sh - pt + i * dh
                    if 0 <= ih < h:
                        for j in range(kw):
                            iw = b * sw - pl + j * dw
                            if 0 <= iw < w:
                                for k in range(c):
                                    for q in range(mult):
                                        df[i, j, k, q] += x[n, ih, iw, k] * dy[n, a, b, k * mult + q]
"""

_SOURCES = {
    "conv_forward": _FORWARD, "conv_backprop_filter": _BACKPROP_FILTER, "conv_backprop_input": _BACKPROP_INPUT,
    "depthwise_forward": _DEPTHWISE_FORWARD, "depthwise_backprop_input": _DEPTHWISE_BACKPROP_INPUT,
    "depthwise_backprop_filter": _DEPTHWISE_BACKPROP_FILTER,
}
_COMPILED: dict[str, Callable[..., None]] = {}


def _compiled(entry: str) -> Callable[..., None]:
    kernel = _COMPILED.get(entry)
    if kernel is None:
        kernel = _COMPILED[entry] = compile_kernel(_SOURCES[entry], entry, name=entry)
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
    return max(1, min(total, BLOCK_BYTES // max(1, k * itemsize)))


def _is_pointwise(g: np.ndarray) -> bool:
    """A 1x1 window at stride 1 without padding: the columns are the input itself."""
    return bool(g[0] == 1 and g[1] == 1 and g[2] == 1 and g[3] == 1 and g[6] == 0 and g[7] == 0)


# -- the ops -------------------------------------------------------------------------------
class Conv2D:
    """conv2d: out[N*OH*OW, O] = columns(x) @ W[KH*KW*C, O], block by block."""

    def __init__(self, node: Node):
        self.fmt = node.attr("data_format")
        x, f = (v.type.shape for v in node.inputs)
        self.x_shape = nhwc_shape(x, self.fmt)
        self.f_shape = tuple(f)
        self.out_shape = nhwc_shape(node.types[0].shape, self.fmt)
        self.dtype = node.types[0].dtype.np_dtype
        self.g = window_geometry(self.x_shape, self.f_shape[:2], node.attr_dict)
        self.k = k = int(np.prod(self.f_shape[:3]))
        self.rows = _block_rows(k, self.dtype.itemsize, int(np.prod(self.out_shape[:3])))
        self.kernel = None if _is_pointwise(self.g) else _compiled("conv_forward")

    def __call__(self, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        xs = to_nhwc(x, self.fmt)
        out = POOL.empty(self.out_shape, self.dtype)
        rows, o = int(np.prod(self.out_shape[:3])), self.out_shape[3]
        w = np.ascontiguousarray(f).reshape(self.k, o)
        if out.size == 0 or w.shape[0] == 0:
            out.fill(0)
        elif self.kernel is None:
            np.dot(xs.reshape(rows, -1), w, out=out.reshape(rows, o))
        else:
            self.kernel(xs, w, out.reshape(rows, o), self.g, self.rows)
        return from_nhwc(out, self.fmt)


class Conv2DBackpropInput:
    """dx = col2im(dy @ W^T), block by block."""

    def __init__(self, node: Node):
        self.fmt = node.attr("data_format")
        f, dy = (v.type.shape for v in node.inputs)
        self.f_shape = tuple(f)
        self.dy_shape = nhwc_shape(dy, self.fmt)
        self.dx_shape = nhwc_shape(node.types[0].shape, self.fmt)
        self.dtype = node.types[0].dtype.np_dtype
        self.g = window_geometry(self.dx_shape, self.f_shape[:2], node.attr_dict)
        self.k = k = int(np.prod(self.f_shape[:3]))
        self.rows = _block_rows(k, self.dtype.itemsize, int(np.prod(self.dy_shape[:3])))
        self.kernel = None if _is_pointwise(self.g) else _compiled("conv_backprop_input")

    def __call__(self, f: np.ndarray, dy: np.ndarray) -> np.ndarray:
        dys = to_nhwc(dy, self.fmt)
        dx = POOL.empty(self.dx_shape, self.dtype)
        rows, o = int(np.prod(self.dy_shape[:3])), self.dy_shape[3]
        wt = np.ascontiguousarray(f.reshape(self.k, o).T)
        if dx.size == 0:
            pass
        elif dys.size == 0 or o == 0:
            dx.fill(0)
        elif self.kernel is None:
            np.dot(dys.reshape(rows, o), wt, out=dx.reshape(rows, -1))
        else:
            self.kernel(dys.reshape(rows, o), wt, dx, self.g, self.rows)
        return from_nhwc(dx, self.fmt)


class Conv2DBackpropFilter:
    """dW = sum over blocks of columns(x)^T @ dy."""

    def __init__(self, node: Node):
        self.fmt = node.attr("data_format")
        x, dy = (v.type.shape for v in node.inputs)
        self.x_shape = nhwc_shape(x, self.fmt)
        self.dy_shape = nhwc_shape(dy, self.fmt)
        self.f_shape = tuple(node.types[0].shape)
        self.dtype = node.types[0].dtype.np_dtype
        self.g = window_geometry(self.x_shape, self.f_shape[:2], node.attr_dict)
        self.k = k = int(np.prod(self.f_shape[:3]))
        self.rows = _block_rows(k, self.dtype.itemsize, int(np.prod(self.dy_shape[:3])))
        self.kernel = None if _is_pointwise(self.g) else _compiled("conv_backprop_filter")

    def __call__(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        xs, dys = to_nhwc(x, self.fmt), to_nhwc(dy, self.fmt)
        df = np.empty(self.f_shape, self.dtype)
        rows, o = int(np.prod(self.dy_shape[:3])), self.dy_shape[3]
        dw = df.reshape(self.k, o)
        if df.size == 0:
            pass
        elif rows == 0:
            df.fill(0)
        elif self.kernel is None:
            np.dot(xs.reshape(rows, -1).T, dys.reshape(rows, o), out=dw)
        else:
            self.kernel(xs, dys.reshape(rows, o), dw, self.g, self.rows)
        return df


class Depthwise:
    """The depthwise convolution and its two gradients, as direct loops."""

    def __init__(self, node: Node, entry: str):
        self.fmt = node.attr("data_format")
        self.entry = entry
        a, b = (tuple(v.type.shape) for v in node.inputs)
        self.out_shape = tuple(node.types[0].shape)
        x_shape, f_shape = {"depthwise_forward": (a, b), "depthwise_backprop_input": (self.out_shape, a),
                            "depthwise_backprop_filter": (a, self.out_shape)}[entry]
        self.dtype = node.types[0].dtype.np_dtype
        self.g = window_geometry(nhwc_shape(x_shape, self.fmt), f_shape[:2], node.attr_dict)
        self.kernel = _compiled(entry)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        filter_out = self.entry == "depthwise_backprop_filter"
        out_nhwc = self.out_shape if filter_out else nhwc_shape(self.out_shape, self.fmt)
        out = np.empty(out_nhwc, self.dtype) if filter_out else POOL.empty(out_nhwc, self.dtype)
        if self.entry == "depthwise_backprop_input":  # (filter, dy)
            args = (np.ascontiguousarray(a), to_nhwc(b, self.fmt))
        elif filter_out:                              # (x, dy)
            args = (to_nhwc(a, self.fmt), to_nhwc(b, self.fmt))
        else:                                         # (x, filter)
            args = (to_nhwc(a, self.fmt), np.ascontiguousarray(b))
        self.kernel(*args, out, self.g)
        return out if filter_out else from_nhwc(out, self.fmt)


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
