"""The transforms of Winograd F(2x2, 3x3) over a block of 2x2 output tiles (winograd.py's kernels).

Compiled once, apart from the kernels that call them: each transform is a numba C callback
(`cfunc`, cached on disk as numba caches library code) whose address is registered with LLVM,
and kernels call it through `input_tiles` & co., which pass the arrays' addresses and sizes
(as gemm.py calls BLAS). A plain njit function called from a kernel is linked into the
kernel's module and optimised again there: that made each Winograd kernel 1.5-2x slower to
compile, measured, where the callbacks take the transforms (about half a kernel's compile
time) out of every kernel.

Each loop stores a few rows at a time, vectorised over the channels (one loop storing all 16
rows of a tile did not vectorise: 3-9x slower, measured). Tile t of a block is row r = t - t0
of the block's arrays; tiles run image by image, row of tiles by row, `nty` x `ntx` an image.
"""
from __future__ import annotations

import threading
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload


@njit(error_model="numpy", nogil=True, inline="always")
def _input(x, pt, pl, nty, ntx, t0, m, v):
    """v[4*i + j, r] = (B^T d B)[i, j] for the 4x4 patch d of the NHWC `x` under tile t0 + r
    (zeros on the padding: `pt` rows above, `pl` columns left).

    B^T d is column by column: column j of a tile's patch is input column 2 * tx + j, kept in
    slot (2 * tx + j) % 4 of `d`, so a tile right of an inner tile reuses its neighbour's last
    two columns and transforms only two new ones."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    d = np.empty((4, 4, c), x.dtype)
    reusable = False  # d holds the inner tile left of this one
    for r in range(m):
        t = t0 + r
        n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
        ih0, iw0 = ty * 2 - pt, tx * 2 - pl
        s0 = (2 * tx) % 4
        if ih0 >= 0 and iw0 >= 0 and ih0 + 4 <= h and iw0 + 4 <= w:
            for j in range(2 if reusable else 0, 4):  # B^T d, reading d from x
                col = (s0 + j) % 4
                for k in range(c):
                    d0, d1, d2, d3 = x[n, ih0, iw0 + j, k], x[n, ih0 + 1, iw0 + j, k], \
                        x[n, ih0 + 2, iw0 + j, k], x[n, ih0 + 3, iw0 + j, k]
                    d[0, col, k] = d0 - d2
                    d[1, col, k] = d1 + d2
                    d[2, col, k] = d2 - d1
                    d[3, col, k] = d1 - d3
            reusable = True
        else:
            for i in range(4):
                ih = ih0 + i
                for j in range(4):
                    iw = iw0 + j
                    col = (s0 + j) % 4
                    if 0 <= ih < h and 0 <= iw < w:
                        for k in range(c):
                            d[i, col, k] = x[n, ih, iw, k]
                    else:
                        for k in range(c):
                            d[i, col, k] = 0
            for col in range(4):  # B^T d
                for k in range(c):
                    d0, d1, d2, d3 = d[0, col, k], d[1, col, k], d[2, col, k], d[3, col, k]
                    d[0, col, k] = d0 - d2
                    d[1, col, k] = d1 + d2
                    d[2, col, k] = d2 - d1
                    d[3, col, k] = d1 - d3
            reusable = False
        if tx == ntx - 1:
            reusable = False  # the next tile starts a row
        c0, c1, c2, c3 = s0, (s0 + 1) % 4, (s0 + 2) % 4, (s0 + 3) % 4
        for i in range(4):  # (B^T d) B
            for k in range(c):
                e0, e1, e2, e3 = d[i, c0, k], d[i, c1, k], d[i, c2, k], d[i, c3, k]
                v[4 * i, r, k] = e0 - e2
                v[4 * i + 1, r, k] = e1 + e2
                v[4 * i + 2, r, k] = e2 - e1
                v[4 * i + 3, r, k] = e1 - e3


@njit(error_model="numpy", nogil=True, inline="always")
def _output(mm, m, ys):
    """ys[2*a + b, r] = (A^T M A)[a, b] for M = mm[:, r]: tile r's 4 outputs. One loop reads all
    16 positions and writes the 4 outputs, A^T M held in registers: 1.5-1.9x faster than
    through a scratch row (measured at 32-64 channels)."""
    for r in range(m):
        for o in range(mm.shape[2]):
            m4, m5, m6, m7 = mm[4, r, o], mm[5, r, o], mm[6, r, o], mm[7, r, o]
            m8, m9, m10, m11 = mm[8, r, o], mm[9, r, o], mm[10, r, o], mm[11, r, o]
            # A^T M: rows m0 + m1 + m2, m1 - m2 - m3 (rows of the 4x4 M: positions 4i..4i+3)
            z0, z1 = mm[0, r, o] + m4 + m8, mm[1, r, o] + m5 + m9
            z2, z3 = mm[2, r, o] + m6 + m10, mm[3, r, o] + m7 + m11
            w0, w1 = m4 - m8 - mm[12, r, o], m5 - m9 - mm[13, r, o]
            w2, w3 = m6 - m10 - mm[14, r, o], m7 - m11 - mm[15, r, o]
            ys[0, r, o] = z0 + z1 + z2  # (A^T M) A
            ys[1, r, o] = z1 - z2 - z3
            ys[2, r, o] = w0 + w1 + w2
            ys[3, r, o] = w1 - w2 - w3


@njit(error_model="numpy", nogil=True, inline="always")
def _output_gradient(dy, nty, ntx, t0, m, mm):
    """mm[4*i + j, r] = (A dY A^T)[i, j] for tile t0 + r's 2x2 block dY of the NHWC `dy`
    (zeros past its edge): the filter gradient's transform of the outputs' gradient."""
    oh, ow, o_ = dy.shape[1], dy.shape[2], dy.shape[3]
    z = np.empty((1, 2, 2, o_), dy.dtype)  # dY of a tile past the edge, zeros outside
    for r in range(m):
        t = t0 + r
        n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
        a0, b0 = ty * 2, tx * 2
        if a0 + 2 <= oh and b0 + 2 <= ow:
            _output_gradient_tile(dy, n, a0, b0, r, mm)
        else:
            for a in range(2):
                for b in range(2):
                    if a0 + a < oh and b0 + b < ow:
                        for o in range(o_):
                            z[0, a, b, o] = dy[n, a0 + a, b0 + b, o]
                    else:
                        for o in range(o_):
                            z[0, a, b, o] = 0
            _output_gradient_tile(z, 0, 0, 0, r, mm)


@njit(error_model="numpy", nogil=True, inline="always")
def _output_gradient_tile(y, n, a0, b0, r, mm):
    """mm[:, r] for dY = y[n, a0:a0 + 2, b0:b0 + 2]: row i of A dY (y0, y0 + y1, y0 - y1, -y1 of
    dY's rows y0, y1) times A^T, a loop per row reading dY (1.1x faster than through a scratch
    row, measured)."""
    for o in range(y.shape[3]):
        y00, y01 = y[n, a0, b0, o], y[n, a0, b0 + 1, o]
        mm[0, r, o] = y00
        mm[1, r, o] = y00 + y01
        mm[2, r, o] = y00 - y01
        mm[3, r, o] = -y01
    for o in range(y.shape[3]):
        p0, p1 = y[n, a0, b0, o] + y[n, a0 + 1, b0, o], y[n, a0, b0 + 1, o] + y[n, a0 + 1, b0 + 1, o]
        mm[4, r, o] = p0
        mm[5, r, o] = p0 + p1
        mm[6, r, o] = p0 - p1
        mm[7, r, o] = -p1
    for o in range(y.shape[3]):
        q0, q1 = y[n, a0, b0, o] - y[n, a0 + 1, b0, o], y[n, a0, b0 + 1, o] - y[n, a0 + 1, b0 + 1, o]
        mm[8, r, o] = q0
        mm[9, r, o] = q0 + q1
        mm[10, r, o] = q0 - q1
        mm[11, r, o] = -q1
    for o in range(y.shape[3]):
        y10, y11 = y[n, a0 + 1, b0, o], y[n, a0 + 1, b0 + 1, o]
        mm[12, r, o] = -y10
        mm[13, r, o] = -y10 - y11
        mm[14, r, o] = -y10 + y11
        mm[15, r, o] = y11


# -- the callbacks: pointers as void*, sizes as intp; one per transform and dtype ---------------
_P, _I = types.voidptr, types.intp
_SIGNATURES = {
    "input": types.void(_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I),
    "output": types.void(_P, _I, _I, _I, _P),
    "output_gradient": types.void(_P, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I),
}


def _input_f(xp, n, h, w, c, pt, pl, nty, ntx, t0, m, vp, rows):
    _input(carray(xp, (n, h, w, c), np.float32), pt, pl, nty, ntx, t0, m, carray(vp, (16, rows, c), np.float32))


def _input_d(xp, n, h, w, c, pt, pl, nty, ntx, t0, m, vp, rows):
    _input(carray(xp, (n, h, w, c), np.float64), pt, pl, nty, ntx, t0, m, carray(vp, (16, rows, c), np.float64))


def _output_f(mp, m, rows, o, yp):
    _output(carray(mp, (16, rows, o), np.float32), m, carray(yp, (4, rows, o), np.float32))


def _output_d(mp, m, rows, o, yp):
    _output(carray(mp, (16, rows, o), np.float64), m, carray(yp, (4, rows, o), np.float64))


def _output_gradient_f(dp, n, oh, ow, o, nty, ntx, t0, m, mp, rows):
    _output_gradient(carray(dp, (n, oh, ow, o), np.float32), nty, ntx, t0, m, carray(mp, (16, rows, o), np.float32))


def _output_gradient_d(dp, n, oh, ow, o, nty, ntx, t0, m, mp, rows):
    _output_gradient(carray(dp, (n, oh, ow, o), np.float64), nty, ntx, t0, m, carray(mp, (16, rows, o), np.float64))


_CALLBACKS = {("input", "f"): _input_f, ("input", "d"): _input_d, ("output", "f"): _output_f,
              ("output", "d"): _output_d, ("output_gradient", "f"): _output_gradient_f,
              ("output_gradient", "d"): _output_gradient_d}
_REGISTERED: dict[tuple[str, str], Any] = {}  # the compiled callbacks: kept alive, their code is called
_LOCK = threading.Lock()


def _symbol(name: str, char: str) -> str:
    return f"tfjit_winograd_{name}_{char}"


def register(dtype: np.dtype, *names: str) -> None:
    """Compile (or load from numba's cache) the callbacks `names` ("input", "output",
    "output_gradient") of `dtype` (float32/float64) and register their addresses: before any
    kernel calling them is compiled or loaded."""
    char = np.dtype(dtype).char
    with _LOCK:
        for name in names:
            if (name, char) not in _REGISTERED:
                try:
                    callback = cfunc(_SIGNATURES[name], cache=True, error_model="numpy", nogil=True)(
                        _CALLBACKS[name, char])
                except RuntimeError:  # numba found no writable cache directory: compile uncached
                    callback = cfunc(_SIGNATURES[name], error_model="numpy", nogil=True)(_CALLBACKS[name, char])
                llvm.add_symbol(_symbol(name, char), callback.address)
                _REGISTERED[name, char] = callback


_EXTERNAL = {(name, char): types.ExternalFunction(_symbol(name, char), signature)
             for name, signature in _SIGNATURES.items() for char in "fd"}


def _external(name: str, dtype: types.Type) -> types.ExternalFunction:
    """The callback for arrays of `dtype` (typed at compile time: a kernel references only the
    symbol of its dtype, which `register` has defined)."""
    return _EXTERNAL[name, "f" if dtype == types.float32 else "d"]


@intrinsic
def _address(typingctx, a):
    """A C-contiguous array's data pointer as a void*."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(array.data, cgutils.voidptr_t)
    return types.voidptr(a), codegen


# -- what kernels call (C-contiguous arrays; register(dtype) first) ------------------------------
def input_tiles(x, pt, pl, nty, ntx, t0, m, v):
    """v[4*i + j, r] = (B^T d B)[i, j] for the 4x4 patch d of the NHWC `x` under tile t0 + r;
    v: [16, rows, C]."""


def output_tiles(mm, m, ys):
    """ys[2*a + b, r] = (A^T M A)[a, b] for M = mm[:, r], r < m; mm: [16, rows, O], ys: [4, rows, O]."""


def output_gradient_tiles(dy, nty, ntx, t0, m, mm):
    """mm[4*i + j, r] = (A dY A^T)[i, j] for tile t0 + r's 2x2 block dY of the NHWC `dy`;
    mm: [16, rows, O]."""


def _contiguous(*arrays: types.Array) -> None:
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        raise TypingError(f"Winograd tile transforms take C-contiguous arrays, got {arrays}")


@overload(input_tiles, nogil=True)
def _input_tiles(x, pt, pl, nty, ntx, t0, m, v):
    _contiguous(x, v)
    call = _external("input", x.dtype)

    def impl(x, pt, pl, nty, ntx, t0, m, v):
        n, h, w, c = x.shape
        call(_address(x), n, h, w, c, pt, pl, nty, ntx, t0, m, _address(v), v.shape[1])
    return impl


@overload(output_tiles, nogil=True)
def _output_tiles(mm, m, ys):
    _contiguous(mm, ys)
    call = _external("output", mm.dtype)

    def impl(mm, m, ys):
        call(_address(mm), m, mm.shape[1], mm.shape[2], _address(ys))
    return impl


@overload(output_gradient_tiles, nogil=True)
def _output_gradient_tiles(dy, nty, ntx, t0, m, mm):
    _contiguous(dy, mm)
    call = _external("output_gradient", dy.dtype)

    def impl(dy, nty, ntx, t0, m, mm):
        n, oh, ow, o = dy.shape
        call(_address(dy), n, oh, ow, o, nty, ntx, t0, m, _address(mm), mm.shape[1])
    return impl
