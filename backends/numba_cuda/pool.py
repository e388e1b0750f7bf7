"""CUDA max/avg pooling and their gradients: direct window kernels, NHWC or NCHW.

The window geometry is the op's own (`tfjit.ops.conv.geometry`: TF's SAME/VALID padding,
strides, dilations), baked into the source as constants. One thread per result element:
- max_pool / avg_pool: one thread per output walks its window (padding never wins a max;
  an average divides by the window's real entries, as TF);
- max_pool_grad / avg_pool_grad: one thread per *input* element sums, over the windows
  that hold it, that window's gradient share: no atomics, so results are deterministic;
- max_pool_grad_grad: one thread per output picks the incoming gradient at its window's
  first maximum.
"First maximum" is NumPy's argmax over the padded window in row-major order (a NaN wins,
padding counts as the lowest value), which is where the reference routes the gradient.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Node
from tfjit.ops.conv import _nhwc_shape, _pool_geometry

from ..numba_cpu.codegen import Lines
from .compile import DeviceLines, compile_kernel
from .runtime import Buffer

THREADS = 256
MAX_BLOCKS = 1024
OPS = ("max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad", "max_pool_grad_grad")


class Layout:
    """Flat offsets of (n, h, w, c) in an NHWC or NCHW array of NHWC shape `nhwc`."""

    def __init__(self, nhwc: tuple[int, ...], data_format: str):
        n, h, w, c = nhwc
        self.shape, self.format = tuple(nhwc), data_format
        if data_format == "NCHW":
            self.strides = {"n": c * h * w, "h": w, "w": 1, "c": h * w}
            self.order = (("n", n), ("c", c), ("h", h), ("w", w))
        else:
            self.strides = {"n": h * w * c, "h": w * c, "w": c, "c": 1}
            self.order = (("n", n), ("h", h), ("w", w), ("c", c))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def offset(self, n: str, h: str, w: str, c: str) -> str:
        terms = [f"{v} * {self.strides[k]}" if self.strides[k] != 1 else v
                 for k, v in (("n", n), ("h", h), ("w", w), ("c", c))]
        return " + ".join(terms)

    def coordinates(self, lines: Lines, names: dict[str, str]) -> None:
        """Lines setting names['n'], ... to the coordinates of flat element `i`."""
        lines.add("t = i")
        for k, extent in reversed(self.order):
            lines.add(f"{names[k]} = t % {extent}")
            lines.add(f"t //= {extent}")


class CudaPool:
    """Callable as `kernel(*buffers) -> (buffer,)` on the device."""

    def __init__(self, node: Node):
        self.node = node
        self.name = node.name or node.op
        attrs = {k: v for k, v in node.attr_dict.items() if k != "input_sizes"}
        fmt = attrs["data_format"]
        x_shape = node.attr("input_sizes") if node.op == "avg_pool_grad" else node.inputs[0].type.shape
        self.x = Layout(_nhwc_shape(tuple(x_shape), fmt), fmt)
        self.g = _pool_geometry(self.x.shape, **attrs)
        n, _, _, c = self.x.shape
        self.y = Layout((n, *self.g.out, c), fmt)
        if self.x.size == 0 or self.y.size == 0:
            raise NotImplementedError("an empty pooling")
        self.dtype = node.out.type.dtype
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)
        self.dtypes = (*(v.type.dtype.np_dtype for v in self._read()), self.dtype.np_dtype)

    def _read(self) -> tuple[Any, ...]:
        """The inputs the kernel reads (avg_pool_grad: not its run-time sizes)."""
        return self.node.inputs[:1] if self.node.op == "avg_pool_grad" else self.node.inputs

    def __call__(self, *args: Buffer) -> tuple[Buffer]:
        out = Buffer.empty_on_device(tuple(self.node.out.type.shape), self.dtype.np_dtype)
        size = out.size
        threads = min(THREADS, size)
        arrays = [a.to_device() for a in args[:len(self._read())]]
        self.kernel[min(MAX_BLOCKS, -(-size // threads)), threads](*arrays, out.device)
        return (out,)

    # -- source --------------------------------------------------------------------------------
    def _source(self) -> str:
        op = self.node.op
        args = {"max_pool": "x", "avg_pool": "x", "avg_pool_grad": "dy", "max_pool_grad": "x, y, dy",
                "max_pool_grad_grad": "x, y, g"}[op]
        lines = DeviceLines()
        lines.add(f"def kernel({args}, out):", self.name)
        lines.indent()
        by_input = op in ("max_pool_grad", "avg_pool_grad")
        space = self.x if by_input else self.y
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {space.size}:")
        lines.indent()
        if by_input:
            space.coordinates(lines, {"n": "n", "h": "h", "w": "w", "c": "c"})
            self._scatter_back(lines)
        else:
            space.coordinates(lines, {"n": "n", "h": "oh", "w": "ow", "c": "c"})
            self._per_window(lines)
        lines.add("i += cuda.gridsize(1)")
        return lines.source()

    def _window(self, lines: Lines, body: list[str], oh: str = "oh", ow: str = "ow") -> None:
        """Loop over window (oh, ow)'s taps (p, q): `body` runs at input row r, column s, with
        `real` false where the tap falls in the padding."""
        (kh, kw), (sh, sw), (dh, dw) = self.g.kernel, self.g.strides, self.g.dilations
        (pt, _), (pl, _) = self.g.pads
        h, w = self.x.shape[1:3]
        lines.add(f"for p in range({kh}):")
        lines.add(f"    r = {oh} * {sh} + p * {dh} - {pt}")
        lines.add(f"    for q in range({kw}):")
        lines.add(f"        s = {ow} * {sw} + q * {dw} - {pl}")
        lines.add(f"        real = 0 <= r < {h} and 0 <= s < {w}")
        for line in body:
            lines.add("        " + line)

    def _first_max(self, lines: Lines, oh: str = "oh", ow: str = "ow") -> None:
        """Set `best` (the window's max) and `at` (the x offset of its first maximum, -1 for padding)."""
        lowest = f"_{self.dtype.short}(-np.inf)" if self.dtype.is_floating else \
            f"_{self.dtype.short}({np.iinfo(self.dtype.np_dtype).min})"
        lines.add("first = True")
        lines.add(f"best = {lowest}")
        lines.add("at = -1")
        nan = " or (v != v and best == best)" if self.dtype.is_floating else ""
        self._window(lines, [
            f"v = x[{self.x.offset('n', 'r', 's', 'c')}] if real else {lowest}",
            f"if first or v > best{nan}:",
            "    best = v",
            f"    at = {self.x.offset('n', 'r', 's', 'c')} if real else -1",
            "first = False",
        ], oh, ow)

    def _per_window(self, lines: Lines) -> None:
        op, loc = self.node.op, self.node.loc.short if self.node.loc else None
        if op == "max_pool":
            self._first_max(lines)
            lines.add("out[i] = best", loc)
        elif op == "avg_pool":
            t = self.dtype.short
            lines.add(f"total = _{t}(0)")
            lines.add("count = 0")
            self._window(lines, ["if real:",
                                 f"    total += x[{self.x.offset('n', 'r', 's', 'c')}]",
                                 "    count += 1"])
            lines.add(f"out[i] = total / _{t}(count)", loc)
        else:  # max_pool_grad_grad
            self._first_max(lines)
            lines.add(f"out[i] = g[at] if at >= 0 else _{self.dtype.short}(0)", loc)

    def _scatter_back(self, lines: Lines) -> None:
        """Sum over the windows holding input (h, w): the windows (oh, ow) with
        oh * stride + a * dilation - pad == h for some tap a."""
        (kh, kw), (sh, sw), (dh, dw) = self.g.kernel, self.g.strides, self.g.dilations
        (pt, _), (pl, _) = self.g.pads
        oh_n, ow_n = self.g.out
        t, loc = self.dtype.short, self.node.loc.short if self.node.loc else None
        lines.add(f"total = _{t}(0)")
        lines.add(f"here = {self.x.offset('n', 'h', 'w', 'c')}")
        lines.add(f"for a in range({kh}):")
        lines.indent()
        lines.add(f"top = h + {pt} - a * {dh}")
        lines.add(f"oh = top // {sh}")
        lines.add(f"if top >= 0 and top % {sh} == 0 and oh < {oh_n}:")
        lines.indent()
        lines.add(f"for b in range({kw}):")
        lines.indent()
        lines.add(f"left = w + {pl} - b * {dw}")
        lines.add(f"ow = left // {sw}")
        lines.add(f"if left >= 0 and left % {sw} == 0 and ow < {ow_n}:")
        lines.indent()
        dy = f"dy[{self.y.offset('n', 'oh', 'ow', 'c')}]"
        if self.node.op == "avg_pool_grad":
            lines.add("count = 0")
            self._window(lines, ["if real:", "    count += 1"])
            lines.add(f"total += {dy} / _{t}(count)")
        else:
            self._first_max(lines)
            lines.add("if at == here:")
            lines.add(f"    total += {dy}")
        for _ in range(4):
            lines.dedent()
        lines.add("out[i] = total", loc)


def build(node: Node) -> CudaPool | None:
    """A kernel for a pooling op (or gradient) with static shapes, or None."""
    if node.op not in OPS or not all(v.type.is_fully_defined for v in (*node.inputs, *node.outputs)):
        return None
    if node.op == "avg_pool_grad" and len(node.inputs) != 1:
        return None  # sizes known only at run time
    if node.out.type.dtype.short not in ("f32", "f64", "i32", "i64"):
        return None
    try:
        return CudaPool(node)
    except NotImplementedError:
        return None
