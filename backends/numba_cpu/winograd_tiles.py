"""The transforms of Winograd F(2x2, 3x3) and F(2x4, 3x3) over a block of 2x2 or 2x4 output
tiles (winograd.py's kernels).

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
    """ys[2*a + b, r] = (A^T M A)[a, b] for M = mm[:, r]: tile r's 4 outputs."""
    z = np.empty((2, 4, mm.shape[2]), mm.dtype)
    for r in range(m):
        for j in range(4):  # A^T M: rows m0 + m1 + m2, m1 - m2 - m3
            for o in range(mm.shape[2]):
                m0, m1, m2, m3 = mm[j, r, o], mm[4 + j, r, o], mm[8 + j, r, o], mm[12 + j, r, o]
                z[0, j, o] = m0 + m1 + m2
                z[1, j, o] = m1 - m2 - m3
        for a in range(2):  # (A^T M) A
            for o in range(mm.shape[2]):
                z0, z1, z2, z3 = z[a, 0, o], z[a, 1, o], z[a, 2, o], z[a, 3, o]
                ys[2 * a, r, o] = z0 + z1 + z2
                ys[2 * a + 1, r, o] = z1 - z2 - z3


@njit(error_model="numpy", nogil=True, inline="always")
def _output_gradient(dy, nty, ntx, t0, m, mm):
    """mm[4*i + j, r] = (A dY A^T)[i, j] for tile t0 + r's 2x2 block dY of the NHWC `dy`
    (zeros past its edge): the filter gradient's transform of the outputs' gradient."""
    oh, ow, o_ = dy.shape[1], dy.shape[2], dy.shape[3]
    z = np.empty((4, 2, o_), dy.dtype)
    for r in range(m):
        t = t0 + r
        n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
        a0, b0 = ty * 2, tx * 2
        if a0 + 2 <= oh and b0 + 2 <= ow:
            for b in range(2):  # A dY: rows y0, y0 + y1, y0 - y1, -y1; dY read from dy
                for o in range(o_):
                    y0, y1 = dy[n, a0, b0 + b, o], dy[n, a0 + 1, b0 + b, o]
                    z[0, b, o] = y0
                    z[1, b, o] = y0 + y1
                    z[2, b, o] = y0 - y1
                    z[3, b, o] = -y1
        else:  # past the edge: dY into z[:2] (zeros outside), then the same transform
            for a in range(2):
                for b in range(2):
                    if a0 + a < oh and b0 + b < ow:
                        for o in range(o_):
                            z[a, b, o] = dy[n, a0 + a, b0 + b, o]
                    else:
                        for o in range(o_):
                            z[a, b, o] = 0
            for b in range(2):
                for o in range(o_):
                    y0, y1 = z[0, b, o], z[1, b, o]
                    z[0, b, o] = y0
                    z[1, b, o] = y0 + y1
                    z[2, b, o] = y0 - y1
                    z[3, b, o] = -y1
        for i in range(4):  # (A dY) A^T
            for o in range(o_):
                y0, y1 = z[i, 0, o], z[i, 1, o]
                mm[4 * i, r, o] = y0
                mm[4 * i + 1, r, o] = y0 + y1
                mm[4 * i + 2, r, o] = y0 - y1
                mm[4 * i + 3, r, o] = -y1


# -- F(2x4, 3x3): tiles of 2 rows by 4 columns, 4 x 6 input patches, positions p = 6*i + j -------
# The columns' transform is F(4, 3)'s (points 0, +-1, +-2): B^T rows [4, 0, -5, 0, 1, 0],
# [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
# [0, 4, 0, -5, 0, 1]; A^T rows [1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
# [0, 1, -1, 8, -8, 1]. Multiples are sums (x + x): a literal factor would make numba compute
# a float32 value in float64.
@njit(error_model="numpy", nogil=True, inline="always")
def _input_2x4(x, pt, pl, nty, ntx, t0, m, v):
    """v[6*i + j, r] = (B2^T d B4)[i, j] for the 4x6 patch d of the NHWC `x` under tile t0 + r
    (zeros on the padding). As `_input`: B2^T d column by column, column j of a tile's patch
    (input column 4 * tx + j) in slot (4 * tx + j) % 6 of `d`, a tile right of an inner tile
    reusing its neighbour's last two columns."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    d = np.empty((4, 6, c), x.dtype)
    reusable = False  # d holds the inner tile left of this one
    for r in range(m):
        t = t0 + r
        n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
        ih0, iw0 = ty * 2 - pt, tx * 4 - pl
        s0 = (4 * tx) % 6
        if ih0 >= 0 and iw0 >= 0 and ih0 + 4 <= h and iw0 + 6 <= w:
            for j in range(2 if reusable else 0, 6):  # B2^T d, reading d from x
                col = (s0 + j) % 6
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
                for j in range(6):
                    iw = iw0 + j
                    col = (s0 + j) % 6
                    if 0 <= ih < h and 0 <= iw < w:
                        for k in range(c):
                            d[i, col, k] = x[n, ih, iw, k]
                    else:
                        for k in range(c):
                            d[i, col, k] = 0
            for col in range(6):  # B2^T d
                for k in range(c):
                    d0, d1, d2, d3 = d[0, col, k], d[1, col, k], d[2, col, k], d[3, col, k]
                    d[0, col, k] = d0 - d2
                    d[1, col, k] = d1 + d2
                    d[2, col, k] = d2 - d1
                    d[3, col, k] = d1 - d3
            reusable = False
        if tx == ntx - 1:
            reusable = False  # the next tile starts a row
        c0, c1, c2, c3, c4, c5 = s0, (s0 + 1) % 6, (s0 + 2) % 6, (s0 + 3) % 6, (s0 + 4) % 6, (s0 + 5) % 6
        for i in range(4):  # (B2^T d) B4, three positions a loop (six did not vectorise)
            for k in range(c):
                e0, e1, e2, e3, e4 = d[i, c0, k], d[i, c1, k], d[i, c2, k], d[i, c3, k], d[i, c4, k]
                a, b, g = e0 - e2, e1 + e2, e1 - e2
                a, b, g = a + a, b + b, g + g
                v[6 * i, r, k] = a + a + (e4 - e2)
                v[6 * i + 1, r, k] = e3 + e4 - (b + b)
                v[6 * i + 2, r, k] = e4 - e3 + (g + g)
            for k in range(c):
                e1, e2, e3, e4, e5 = d[i, c1, k], d[i, c2, k], d[i, c3, k], d[i, c4, k], d[i, c5, k]
                f, g = e3 - e1, e1 - e3
                f, g = f + f, g + g
                v[6 * i + 3, r, k] = e4 - e2 + f
                v[6 * i + 4, r, k] = e4 - e2 - f
                v[6 * i + 5, r, k] = g + g + (e5 - e3)


@njit(error_model="numpy", nogil=True, inline="always")
def _output_2x4(mm, m, ys):
    """ys[4*a + b, r] = (A2^T M A4)[a, b] for M = mm[:, r] (4 x 6): tile r's 8 outputs. One loop
    per output row a, both transforms in registers (1.3-1.5x faster than through a scratch
    row as `_output` goes, measured at 32-64 channels)."""
    for r in range(m):
        for o in range(mm.shape[2]):  # row 0 of A2^T M: m0 + m1 + m2
            _output_row(ys, r, o, 0, mm[0, r, o] + mm[6, r, o] + mm[12, r, o],
                        mm[1, r, o] + mm[7, r, o] + mm[13, r, o], mm[2, r, o] + mm[8, r, o] + mm[14, r, o],
                        mm[3, r, o] + mm[9, r, o] + mm[15, r, o], mm[4, r, o] + mm[10, r, o] + mm[16, r, o],
                        mm[5, r, o] + mm[11, r, o] + mm[17, r, o])
        for o in range(mm.shape[2]):  # row 1: m1 - m2 - m3
            _output_row(ys, r, o, 1, mm[6, r, o] - mm[12, r, o] - mm[18, r, o],
                        mm[7, r, o] - mm[13, r, o] - mm[19, r, o], mm[8, r, o] - mm[14, r, o] - mm[20, r, o],
                        mm[9, r, o] - mm[15, r, o] - mm[21, r, o], mm[10, r, o] - mm[16, r, o] - mm[22, r, o],
                        mm[11, r, o] - mm[17, r, o] - mm[23, r, o])


@njit(error_model="numpy", nogil=True, inline="always")
def _output_row(ys, r, o, a, z0, z1, z2, z3, z4, z5):
    """Output row a of tile r, channel o: the row z of A2^T M times A4."""
    p, q, s, e = z1 + z2, z1 - z2, z3 + z4, z3 - z4
    s2, e2 = s + s, e + e
    e4 = e2 + e2
    ys[4 * a, r, o] = z0 + p + s
    ys[4 * a + 1, r, o] = q + e2
    ys[4 * a + 2, r, o] = p + (s2 + s2)
    ys[4 * a + 3, r, o] = q + (e4 + e4) + z5


@njit(error_model="numpy", nogil=True, inline="always")
def _output_gradient_2x4(dy, nty, ntx, t0, m, mm):
    """mm[6*i + j, r] = (A2 dY A4^T)[i, j] for tile t0 + r's 2x4 block dY of the NHWC `dy`
    (zeros past its edge)."""
    oh, ow, o_ = dy.shape[1], dy.shape[2], dy.shape[3]
    z = np.empty((4, 4, o_), dy.dtype)
    for r in range(m):
        t = t0 + r
        n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
        a0, b0 = ty * 2, tx * 4
        if a0 + 2 <= oh and b0 + 4 <= ow:
            for b in range(4):  # A2 dY: rows y0, y0 + y1, y0 - y1, -y1; dY read from dy
                for o in range(o_):
                    y0, y1 = dy[n, a0, b0 + b, o], dy[n, a0 + 1, b0 + b, o]
                    z[0, b, o] = y0
                    z[1, b, o] = y0 + y1
                    z[2, b, o] = y0 - y1
                    z[3, b, o] = -y1
        else:  # past the edge: dY into z[:2] (zeros outside), then the same transform
            for a in range(2):
                for b in range(4):
                    if a0 + a < oh and b0 + b < ow:
                        for o in range(o_):
                            z[a, b, o] = dy[n, a0 + a, b0 + b, o]
                    else:
                        for o in range(o_):
                            z[a, b, o] = 0
            for b in range(4):
                for o in range(o_):
                    y0, y1 = z[0, b, o], z[1, b, o]
                    z[0, b, o] = y0
                    z[1, b, o] = y0 + y1
                    z[2, b, o] = y0 - y1
                    z[3, b, o] = -y1
        for i in range(4):  # (A2 dY) A4^T: columns of A4^T's rows
            for o in range(o_):
                y0, y1, y2, y3 = z[i, 0, o], z[i, 1, o], z[i, 2, o], z[i, 3, o]
                e, f = y0 + y2, y1 + y3
                y2x2, y3x2 = y2 + y2, y3 + y3
                y3x4 = y3x2 + y3x2
                g, k = y0 + (y2x2 + y2x2), y1 + y1 + (y3x4 + y3x4)
                mm[6 * i, r, o] = y0
                mm[6 * i + 1, r, o] = e + f
                mm[6 * i + 2, r, o] = e - f
                mm[6 * i + 3, r, o] = g + k
                mm[6 * i + 4, r, o] = g - k
                mm[6 * i + 5, r, o] = y3


# -- the callbacks: pointers as void*, sizes as intp; one per transform and dtype ---------------
_P, _I = types.voidptr, types.intp
_SIGNATURES = {
    "input": types.void(_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I),
    "output": types.void(_P, _I, _I, _I, _P),
    "output_gradient": types.void(_P, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I),
}
_SIGNATURES.update({name + "_2x4": signature for name, signature in _SIGNATURES.items()})


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


def _input_2x4_f(xp, n, h, w, c, pt, pl, nty, ntx, t0, m, vp, rows):
    _input_2x4(carray(xp, (n, h, w, c), np.float32), pt, pl, nty, ntx, t0, m,
               carray(vp, (24, rows, c), np.float32))


def _input_2x4_d(xp, n, h, w, c, pt, pl, nty, ntx, t0, m, vp, rows):
    _input_2x4(carray(xp, (n, h, w, c), np.float64), pt, pl, nty, ntx, t0, m,
               carray(vp, (24, rows, c), np.float64))


def _output_2x4_f(mp, m, rows, o, yp):
    _output_2x4(carray(mp, (24, rows, o), np.float32), m, carray(yp, (8, rows, o), np.float32))


def _output_2x4_d(mp, m, rows, o, yp):
    _output_2x4(carray(mp, (24, rows, o), np.float64), m, carray(yp, (8, rows, o), np.float64))


def _output_gradient_2x4_f(dp, n, oh, ow, o, nty, ntx, t0, m, mp, rows):
    _output_gradient_2x4(carray(dp, (n, oh, ow, o), np.float32), nty, ntx, t0, m,
                         carray(mp, (24, rows, o), np.float32))


def _output_gradient_2x4_d(dp, n, oh, ow, o, nty, ntx, t0, m, mp, rows):
    _output_gradient_2x4(carray(dp, (n, oh, ow, o), np.float64), nty, ntx, t0, m,
                         carray(mp, (24, rows, o), np.float64))


_CALLBACKS = {("input", "f"): _input_f, ("input", "d"): _input_d, ("output", "f"): _output_f,
              ("output", "d"): _output_d, ("output_gradient", "f"): _output_gradient_f,
              ("output_gradient", "d"): _output_gradient_d, ("input_2x4", "f"): _input_2x4_f,
              ("input_2x4", "d"): _input_2x4_d, ("output_2x4", "f"): _output_2x4_f,
              ("output_2x4", "d"): _output_2x4_d, ("output_gradient_2x4", "f"): _output_gradient_2x4_f,
              ("output_gradient_2x4", "d"): _output_gradient_2x4_d}
_REGISTERED: dict[tuple[str, str], Any] = {}  # the compiled callbacks: kept alive, their code is called
_LOCK = threading.Lock()


def _symbol(name: str, char: str) -> str:
    return f"tfjit_winograd_{name}_{char}"


def register(dtype: np.dtype, *names: str) -> None:
    """Compile (or load from numba's cache) the callbacks `names` ("input", "output",
    "output_gradient", each also with "_2x4") of `dtype` (float32/float64) and register their
    addresses: before any kernel calling them is compiled or loaded."""
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


def input_tiles_2x4(x, pt, pl, nty, ntx, t0, m, v):
    """v[6*i + j, r] = (B2^T d B4)[i, j] for the 4x6 patch d of the NHWC `x` under tile t0 + r;
    v: [24, rows, C]."""


def output_tiles_2x4(mm, m, ys):
    """ys[4*a + b, r] = (A2^T M A4)[a, b] for M = mm[:, r], r < m; mm: [24, rows, O], ys: [8, rows, O]."""


def output_gradient_tiles_2x4(dy, nty, ntx, t0, m, mm):
    """mm[6*i + j, r] = (A2 dY A4^T)[i, j] for tile t0 + r's 2x4 block dY of the NHWC `dy`;
    mm: [24, rows, O]."""


def _contiguous(*arrays: types.Array) -> None:
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        raise TypingError(f"Winograd tile transforms take C-contiguous arrays, got {arrays}")


def _overload_input(stub: Any, name: str) -> None:
    @overload(stub, nogil=True)
    def _input_tiles(x, pt, pl, nty, ntx, t0, m, v):
        _contiguous(x, v)
        call = _external(name, x.dtype)

        def impl(x, pt, pl, nty, ntx, t0, m, v):
            n, h, w, c = x.shape
            call(_address(x), n, h, w, c, pt, pl, nty, ntx, t0, m, _address(v), v.shape[1])
        return impl


def _overload_output(stub: Any, name: str) -> None:
    @overload(stub, nogil=True)
    def _output_tiles(mm, m, ys):
        _contiguous(mm, ys)
        call = _external(name, mm.dtype)

        def impl(mm, m, ys):
            call(_address(mm), m, mm.shape[1], mm.shape[2], _address(ys))
        return impl


def _overload_output_gradient(stub: Any, name: str) -> None:
    @overload(stub, nogil=True)
    def _output_gradient_tiles(dy, nty, ntx, t0, m, mm):
        _contiguous(dy, mm)
        call = _external(name, dy.dtype)

        def impl(dy, nty, ntx, t0, m, mm):
            n, oh, ow, o = dy.shape
            call(_address(dy), n, oh, ow, o, nty, ntx, t0, m, _address(mm), mm.shape[1])
        return impl


for _suffix, _stubs in (("", (input_tiles, output_tiles, output_gradient_tiles)),
                        ("_2x4", (input_tiles_2x4, output_tiles_2x4, output_gradient_tiles_2x4))):
    _overload_input(_stubs[0], "input" + _suffix)
    _overload_output(_stubs[1], "output" + _suffix)
    _overload_output_gradient(_stubs[2], "output_gradient" + _suffix)
