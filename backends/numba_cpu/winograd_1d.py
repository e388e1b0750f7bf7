"""1xK and Kx1 stride-1 convolutions (K = 3, 5, 7) by 1-D Winograd F(2, K): K+1 GEMMs where
the columns' GEMM does 2K per pair of outputs (1.75x fewer multiplies for K = 7).

Two neighbouring outputs along the window's axis (a tile) need the K+1 inputs under them, d.
With the K+1 interpolation points 0, 1, -1, 2, -2, 1/2, -1/2 (the first K) and infinity,
V the (K+1)x(K+1) Vandermonde matrix of the points and V_n its first n columns:
y = A^T [(G w) * (B^T d)] with A^T = V_2^T, G = V_K and B^T = V^-T (Toom-Cook). The filter
transform U = G w ([K+1, C, O]) runs once a call; a block of tiles at a time the kernel
writes B^T d into V[K+1, tiles, C], runs the K+1 GEMMs M[j] = V[j] @ U[j] (BLAS, gemm.py)
and applies A^T to M together with conv.py's fused epilogue, as winograd.py does in 2-D.
F(2, 7) on the Inception block's 1x7, 128-channel layer with bias and relu: 4.1 ms against
im2col's 6.3 (one thread); its largest error is 2.2e-6 of the output's scale in float32
(im2col's: 7e-7) and 3.6e-15 in float64 (1.1e-15). More points (F(3, 7), F(4, 7)) would cut
the GEMMs further but lose another 4-13x of float32 accuracy (measured), so they are not used.

Both orientations run one kernel: the NHWC input is viewed as [outer, L, inner, C] with the
window along L (1xK: [N*H, W, 1, C]; Kx1: [N, H, W, C]), so output pixel (u, a, b) is row
(u * OL + a) * inner + b of the [pixels, O] output, as conv.py's kernels index it.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from textwrap import indent

import numpy as np

from . import winograd
from .scratch import scratch

POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2))
SIZES = (3, 5, 7)
BLOCK_BYTES = 1 << 20  # a block's transformed tiles (V: (K+1) x tiles x C); 256 rows of 128 channels
                      # at K = 7: 4.4 ms against 4.6 at 128 rows (1x7, 128 channels, one thread)


def _vandermonde(k: int, cols: int) -> list[list[Fraction]]:
    """Rows p^0 .. p^(cols-1) for the first k points, then infinity's row (0, ..., 0, 1)."""
    return [[p ** e for e in range(cols)] for p in POINTS[:k]] + [[Fraction(int(e == cols - 1)) for e in range(cols)]]


def _inverse(m: list[list[Fraction]]) -> list[list[Fraction]]:
    """The exact inverse of a square matrix (Gauss-Jordan; the Vandermonde one is regular)."""
    n = len(m)
    a = [row + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if a[r][col] != 0)
        a[col], a[pivot] = a[pivot], a[col]
        a[col] = [e / a[col][col] for e in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0:
                a[r] = [e - a[r][col] * f for e, f in zip(a[r], a[col])]
    return [row[n:] for row in a]


@functools.cache  # 1.6 ms a call in exact arithmetic
def matrices(k: int) -> tuple[list[list[Fraction]], list[list[Fraction]], list[list[Fraction]]]:
    """(A^T [2, K+1], G [K+1, K], B^T [K+1, K+1]) of F(2, K), exact."""
    a_t = [list(col) for col in zip(*_vandermonde(k, 2))]
    v_inv = _inverse(_vandermonde(k, k + 1))
    return a_t, _vandermonde(k, k), [list(col) for col in zip(*v_inv)]


class Line:
    """A convolution that runs as F(2, K): its view of the input, tiles and block rows."""

    def __init__(self, x_nhwc: tuple[int, ...], out_nhwc: tuple[int, ...], f_shape: tuple[int, ...], axis: int,
                 pad: int, dtype: np.dtype):
        n, h, w, _ = x_nhwc
        self.k = f_shape[axis - 1]
        self.pad, self.length = pad, out_nhwc[axis]
        self.view = (n * h, w, 1, x_nhwc[3]) if axis == 2 else tuple(x_nhwc)
        self.tiles = self.view[0] * -(-self.length // 2) * self.view[2]
        self.c, self.o, self.dtype = f_shape[2], f_shape[3], dtype
        rows = max(1, min(self.tiles, BLOCK_BYTES // ((self.k + 1) * max(self.c, self.o, 1) * dtype.itemsize)))
        self.rows = winograd.odd_rows(rows)  # planes not 4 KiB apart: see winograd.odd_rows
        a_t, g, b_t = matrices(self.k)
        self.g, self.a_t, self.b_t = np.array(g, dtype), np.array(a_t, dtype), np.array(b_t, dtype)

    def operands(self, x: np.ndarray, w: np.ndarray) -> tuple:
        """The kernel's leading arguments from the NHWC input and the [K*C, O] filter matrix."""
        # [K+1, C, O]; einsum, not tensordot: NumPy's own BLAS threads spin against the kernels'
        # (30-50x slower on the loaded 2-core machine, measured)
        u = np.ascontiguousarray(np.einsum("jl,lco->jco", self.g, w.reshape(self.k, self.c, self.o)))
        return x.reshape(self.view), u, self.b_t, self.a_t, self.pad, self.length

    def scratch(self, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Each thread's transformed tiles V and GEMM products M."""
        v, mm = scratch(self.dtype, (threads, self.k + 1, self.rows, self.c), (threads, self.k + 1, self.rows, self.o))
        return v, mm


def plan(x_nhwc: tuple[int, ...], out_nhwc: tuple[int, ...], f_shape: tuple[int, ...], g: np.ndarray,
         dtype: np.dtype, min_channels: int) -> Line | None:
    """The F(2, K) plan of a convolution (conv.py's geometry `g` of its forward form), or None unless the
    window is 1xK or Kx1 (K in SIZES), stride 1, undilated, unpadded across the window, with
    at least `min_channels` input channels."""
    kh, kw, pt, pl = (int(v) for v in (g[0], g[1], g[6], g[7]))
    if not all(int(v) == 1 for v in g[2:6]) or f_shape[2] < min_channels:
        return None
    if kh == 1 and kw in SIZES and pt == 0 and out_nhwc[1] == x_nhwc[1]:
        return Line(x_nhwc, out_nhwc, f_shape, 2, pl, dtype)
    if kw == 1 and kh in SIZES and pl == 0 and out_nhwc[2] == x_nhwc[2]:
        return Line(x_nhwc, out_nhwc, f_shape, 1, pt, dtype)
    return None


def _combination(coefs: list[Fraction], names: list[str], scalar: str, only: range | None = None) -> str:
    """sum coefs[j] * names[j] (over `only`'s j), skipping zeros; other factors than +-1 are
    the kernel's scalars `{scalar}{j}` (loaded from the typed matrix: float32 stays float32)."""
    terms = []
    for j, (coef, name) in enumerate(zip(coefs, names)):
        if only is not None and j not in only:
            continue
        if coef in (1, -1):
            terms.append(("+ " if coef > 0 else "- ") + name)
        elif coef:
            terms.append(f"+ {scalar}{j} * {name}")
    return " ".join(terms).lstrip("+ ") if terms else "0"


def _input_transform(b_t: list[list[Fraction]], xs: list[str]) -> list[str]:
    """Loops writing V = B^T d for tile r, one per row of B^T or pair of rows: the rows of
    points p and -p differ only in the sign of the odd powers' terms, so they are the even
    part plus and minus the odd part (0.37 ms against 0.50 for the Inception block's 1x7).
    A loop per row rather than one loop over all rows: 0.44 ms against 0.50 (measured; 8 load
    and 8 store streams that may alias are likely too many for LLVM's vectoriser)."""
    n = len(b_t)
    lines: list[str] = []
    j = 0
    while j < n:
        if j + 1 < n and all(b_t[j + 1][l] == (-1) ** l * b_t[j][l] for l in range(n)):
            lines += ["for e in range(c_in):",
                      f"    ev = {_combination(b_t[j], xs, f'tb{j}_', range(0, n, 2))}",
                      f"    od = {_combination(b_t[j], xs, f'tb{j}_', range(1, n, 2))}",
                      f"    v[slot, {j}, r, e] = ev + od",
                      f"    v[slot, {j + 1}, r, e] = ev - od"]
            j += 2
        else:
            lines += ["for e in range(c_in):", f"    v[slot, {j}, r, e] = {_combination(b_t[j], xs, f'tb{j}_')}"]
            j += 1
    return lines


def source(k: int, ins: list[str], outs: list[str], direct: str | None, epilogue: list[str], setup: list[str],
           ranges: str) -> str:
    """The F(2, k) kernel, tiles in the q-th chunk of `chunks`, block by block (`ranges`:
    conv.py's loop over a chunk's blocks of `p0`); `direct` names the output the convolution
    itself goes to (else only the epilogue's outputs are written), `epilogue` is conv.py's
    element code reading `c` at pixel p, channel o."""
    a_t, _, b_t = matrices(k)
    n = k + 1
    ms = [f"mj{j}" for j in range(n)]
    transform = _input_transform(b_t, [f"d[{l}, e]" for l in range(n)])
    outputs = [f"{', '.join(ms)} = {', '.join(f'mm[slot, {j}, r, o]' for j in range(n))}"]
    outputs += [f"ys[{i}, o] = {_combination(a_t[i], ms, f'ta{i}_')}" for i in range(2)]
    used = "\n".join(transform + outputs)
    scalars = [f"{name} = {matrix}[{i}, {j}]" for name, matrix, i, j in
               [(f"tb{j}_{l}", "bt", j, l) for j in range(n) for l in range(n)]
               + [(f"ta{i}_{j}", "at", i, j) for i in range(2) for j in range(n)] if f"{name} * " in used]
    per_output = ([f"{direct}[p, o] = c"] if direct else []) + epilogue
    signature = ", ".join(["x", "u", "bt", "at", "pad", "ol", "q", "chunks", "slot", "v", "mm", *ins, *outs])
    head = "\n".join([
        "outer, length, inner, c_in = x.shape[0], x.shape[1], x.shape[2], x.shape[3]",
        "nout = u.shape[2]",
        "nt = (ol + 1) // 2",
        "total = outer * nt * inner",
        "rows = v.shape[2]",
        *setup, *scalars,
        f"d = np.empty(({n}, c_in), x.dtype)",
        "ys = np.empty((2, nout), mm.dtype)"])
    block = "\n".join([
        "for r in range(m):",
        "    t = t0 + r",
        "    ou, tt, b = t // (nt * inner), (t // inner) % nt, t % inner",
        f"    for l in range({n}):",
        "        il = 2 * tt - pad + l",
        "        if 0 <= il < length:",
        "            for e in range(c_in):",
        "                d[l, e] = x[ou, il, b, e]",
        "        else:",
        "            for e in range(c_in):",
        "                d[l, e] = 0",
        *("    " + line for line in transform),
        f"for s in range({n}):",
        "    matmul(v[slot, s, :m], u[s], mm[slot, s, :m], 0.0)",
        "for r in range(m):",
        "    t = t0 + r",
        "    ou, tt, b = t // (nt * inner), (t // inner) % nt, t % inner",
        "    for o in range(nout):",
        *("        " + line for line in outputs),
        "    for i in range(2):",
        "        a = 2 * tt + i",
        "        if a < ol:",
        "            p = (ou * ol + a) * inner + b",
        "            for o in range(nout):",
        "                c = ys[i, o]",
        *("                " + line for line in per_output)])
    loops = ranges.replace("p0", "t0") + indent(block, "    ")
    return f"\ndef conv_winograd_1d({signature}):\n" + indent(head + "\n" + loops, "    ") + "\n"
