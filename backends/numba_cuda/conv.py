"""CUDA 2-D convolution and its two gradients: im2col kernels around the tiled GEMM.

With P the patches matrix [N*OH*OW, KH*KW*C] (row: an output position, column: a tap and
an input channel; padding reads as 0) and F the filter seen as [KH*KW*C, OC]:
- conv2d:                 out = P @ F (NHWC), or per image out_n = F^T @ P_n^T (NCHW);
- conv2d_backprop_filter: dF = P^T @ dY, dY as [N*OH*OW, OC] (NCHW dy is put in NHWC first);
- conv2d_backprop_input:  dP = dY @ F^T (NCHW: per image dY_n^T @ F^T), then col2im sums
                          each input element's taps (one thread per input element, no atomics).
Transposed operands are read in place by the GEMM (`matmul.py`). The window geometry is the
op's own (`tfjit.ops.conv.geometry`: SAME/VALID/EXPLICIT padding, strides, dilations).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Graph, Node
from tfjit.ir.types import DType, TensorType
from tfjit.ops.conv import _nhwc_shape, geometry
from tfjit.ops.registry import get_op

from .compile import DeviceLines, compile_kernel
from .matmul import CudaMatmulKernel
from .pool import Layout
from .runtime import Buffer

THREADS = 256
MAX_BLOCKS = 1024
OPS = ("conv2d", "conv2d_backprop_input", "conv2d_backprop_filter")


class CudaConv:
    """Callable as `kernel(*buffers) -> (buffer,)` on the device."""

    def __init__(self, node: Node):
        self.node = node
        self.name = node.name or node.op
        attrs = {k: v for k, v in node.attr_dict.items() if k not in ("input_sizes", "filter_sizes")}
        fmt = attrs["data_format"]
        op = node.op
        x_shape = node.attr("input_sizes") if op == "conv2d_backprop_input" else node.inputs[0].type.shape
        f_input = node.inputs[1 if op == "conv2d" else 0]  # conv2d(x, f), backprop_input(f, dy)
        f_shape = node.attr("filter_sizes") if op == "conv2d_backprop_filter" else f_input.type.shape
        self.x = Layout(_nhwc_shape(tuple(x_shape), fmt), fmt)
        self.f = tuple(f_shape)
        self.g = geometry(self.x.shape[1:3], self.f[:2], **attrs)
        n, c, oc = self.x.shape[0], self.x.shape[3], self.f[3]
        self.rows = n * self.g.out[0] * self.g.out[1]
        self.taps = self.f[0] * self.f[1] * c
        if self.rows * self.taps * oc == 0:
            raise NotImplementedError("an empty convolution")
        self.nchw = fmt == "NCHW"
        self.dtype = node.out.type.dtype
        kernels = {"conv2d": self._forward, "conv2d_backprop_filter": self._filter_grad,
                   "conv2d_backprop_input": self._input_grad}
        self.sources: list[str] = []
        kernels[op]()
        self.sources.append(self.gemm.source)
        self.source = "\n".join(self.sources)
        self.kernel, self.dtypes = self.steps[0]

    def parts(self) -> list[tuple[Any, tuple[np.dtype, ...]]]:
        """Every compiled kernel with its argument dtypes (for PTX checks)."""
        return self.steps

    # -- building --------------------------------------------------------------------------------
    def _forward(self) -> None:
        oc, s = self.f[3], self.g.out[0] * self.g.out[1]
        if self.nchw:  # out_n [OC, S] = F^T [OC, K] @ P_n^T [K, S]
            self.gemm = _gemm((self.taps, oc), (self.x.shape[0], s, self.taps), True, True, self.dtype, self.name)
        else:
            self.gemm = _gemm((self.rows, self.taps), (self.taps, oc), False, False, self.dtype, self.name)
        self._im2col()
        self.steps = [(self.im2col, (self.dtype.np_dtype,) * 2), (self.gemm.kernel, self.gemm.dtypes)]

    def _filter_grad(self) -> None:
        self.gemm = _gemm((self.rows, self.taps), (self.rows, self.f[3]), True, False, self.dtype, self.name)
        self._im2col()
        self.steps = [(self.im2col, (self.dtype.np_dtype,) * 2), (self.gemm.kernel, self.gemm.dtypes)]
        if self.nchw:
            self.to_nhwc = self._compile(self._to_nhwc_source(), "to_nhwc")
            self.steps.append((self.to_nhwc, (self.dtype.np_dtype,) * 2))

    def _input_grad(self) -> None:
        oc, s = self.f[3], self.g.out[0] * self.g.out[1]
        if self.nchw:  # dP_n [S, K] = dY_n^T [S, OC] @ F^T [OC, K]
            self.gemm = _gemm((self.x.shape[0], oc, s), (self.taps, oc), True, True, self.dtype, self.name)
        else:
            self.gemm = _gemm((self.rows, oc), (self.taps, oc), False, True, self.dtype, self.name)
        self.col2im = self._compile(self._col2im_source(), "col2im")
        self.steps = [(self.col2im, (self.dtype.np_dtype,) * 2), (self.gemm.kernel, self.gemm.dtypes)]

    # -- running ---------------------------------------------------------------------------------
    def __call__(self, *args: Buffer) -> tuple[Buffer]:
        op, np_dtype = self.node.op, self.dtype.np_dtype
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), np_dtype)
        if op == "conv2d_backprop_input":
            f, dy = args[:2]
            cols = self.gemm(dy, f)[0]
            _launch(self.col2im, self.x.size, cols.device, out.device)
            return (out,)
        x, second = args[:2]
        cols = Buffer.empty_on_device((self.rows, self.taps), np_dtype)
        _launch(self.im2col, self.rows * self.taps, x.to_device(), cols.device)
        if op == "conv2d":
            a, b = (second, cols) if self.nchw else (cols, second)
            product = self.gemm(a, b)[0]
        else:
            dy = second
            if self.nchw:
                nhwc = Buffer.empty_on_device((self.rows, self.f[3]), np_dtype)
                _launch(self.to_nhwc, nhwc.size, dy.to_device(), nhwc.device)
                dy = nhwc
            product = self.gemm(cols, dy)[0]
        return (Buffer(out.shape, np_dtype, device=product.device),)

    # -- sources ---------------------------------------------------------------------------------
    def _compile(self, source: str, part: str) -> Any:
        self.sources.append(source)
        return compile_kernel(source, f"{self.name}/{part}")

    def _im2col(self) -> None:
        self.im2col = self._compile(self._im2col_source(), "im2col")

    def _im2col_source(self) -> str:
        kw, (sh, sw), (dh, dw) = self.g.kernel[1], self.g.strides, self.g.dilations
        (pt, _), (pl, _) = self.g.pads
        (oh, ow), (h, w), c = self.g.out, self.x.shape[1:3], self.x.shape[3]
        lines = DeviceLines()
        lines.add("def kernel(x, cols):", f"{self.name}: patches [N*OH*OW, KH*KW*C]")
        lines.indent()
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {self.rows * self.taps}:")
        lines.indent()
        lines.add(f"row = i // {self.taps}")
        lines.add(f"col = i % {self.taps}")
        lines.add(f"c = col % {c}")
        lines.add(f"p = col // {c * kw}")
        lines.add(f"q = (col // {c}) % {kw}")
        lines.add(f"n = row // {oh * ow}")
        lines.add(f"r = (row // {ow}) % {oh} * {sh} + p * {dh} - {pt}")
        lines.add(f"s = row % {ow} * {sw} + q * {dw} - {pl}")
        lines.add(f"cols[i] = x[{self.x.offset('n', 'r', 's', 'c')}] if 0 <= r < {h} and 0 <= s < {w} else 0")
        lines.add("i += cuda.gridsize(1)")
        return lines.source()

    def _col2im_source(self) -> str:
        (kh, kw), (sh, sw), (dh, dw) = self.g.kernel, self.g.strides, self.g.dilations
        (pt, _), (pl, _) = self.g.pads
        (oh_n, ow_n), c = self.g.out, self.x.shape[3]
        lines = DeviceLines()
        lines.add("def kernel(cols, dx):", f"{self.name}: each input element sums its taps")
        lines.indent()
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {self.x.size}:")
        lines.indent()
        self.x.coordinates(lines, {"n": "n", "h": "h", "w": "w", "c": "c"})
        lines.add(f"total = _{self.dtype.short}(0)")
        lines.add(f"for p in range({kh}):")
        lines.indent()
        lines.add(f"top = h + {pt} - p * {dh}")
        lines.add(f"oh = top // {sh}")
        lines.add(f"if top >= 0 and top % {sh} == 0 and oh < {oh_n}:")
        lines.indent()
        lines.add(f"for q in range({kw}):")
        lines.indent()
        lines.add(f"left = w + {pl} - q * {dw}")
        lines.add(f"ow = left // {sw}")
        lines.add(f"if left >= 0 and left % {sw} == 0 and ow < {ow_n}:")
        lines.add(f"    total += cols[((n * {oh_n} + oh) * {ow_n} + ow) * {self.taps} + (p * {kw} + q) * {c} + c]")
        for _ in range(3):
            lines.dedent()
        lines.add("dx[i] = total", self.node.loc.short if self.node.loc else None)
        lines.add("i += cuda.gridsize(1)")
        return lines.source()

    def _to_nhwc_source(self) -> str:
        n, c = self.x.shape[0], self.f[3]
        nhwc = Layout((n, *self.g.out, c), "NHWC")
        nchw = Layout((n, *self.g.out, c), "NCHW")
        lines = DeviceLines()
        lines.add("def kernel(src, dst):", f"{self.name}: out_backprop NCHW -> NHWC")
        lines.indent()
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {nhwc.size}:")
        lines.indent()
        nhwc.coordinates(lines, {"n": "n", "h": "h", "w": "w", "c": "c"})
        lines.add(f"dst[i] = src[{nchw.offset('n', 'h', 'w', 'c')}]")
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


def _gemm(a: tuple[int, ...], b: tuple[int, ...], ta: bool, tb: bool, dtype: DType, name: str) -> CudaMatmulKernel:
    """The tiled GEMM kernel of one matmul of operands shaped `a` and `b`."""
    params = [Node("param", (), (("index", k),), (TensorType(dtype, s),)).out for k, s in enumerate((a, b))]
    attrs = {"transpose_a": ta, "transpose_b": tb}
    types = get_op("matmul").infer(tuple(p.type for p in params), attrs)
    product = Node("matmul", tuple(params), tuple(attrs.items()), types, name=name)
    return CudaMatmulKernel(Graph(name, params, [product], [product.out]), name, product)


def _launch(kernel: Any, size: int, *arrays: Any) -> None:
    threads = min(THREADS, size)
    kernel[min(MAX_BLOCKS, -(-size // threads)), threads](*arrays)


def build(node: Node) -> CudaConv | None:
    """Kernels for a float conv2d (or gradient) with static shapes, or None (depthwise
    convolutions and sizes known only at run time stay on the reference)."""
    if node.op not in OPS or len(node.inputs) != 2 or node.out.type.dtype.short not in ("f32", "f64"):
        return None
    if not all(v.type.is_fully_defined for v in (*node.inputs, *node.outputs)):
        return None
    try:
        return CudaConv(node)
    except NotImplementedError:
        return None
