"""3x3 stride-1 convolutions by Winograd's F(2x2, 3x3): 16 GEMMs of 2.25x fewer FLOPs.

Each 2x2 tile of output pixels needs the 4x4 input patch d under it: V = B^T d B (adds only),
then for each of the 16 positions (i, j) of the 4x4 transform a GEMM over the block's tiles,
M[i, j] = V[i, j] @ U[i, j] with U = G g G^T the transformed filter ([16, C, O], computed once
a call), and the tile's outputs Y = A^T M A (adds only). The 16 GEMMs do 16*C*O multiply-adds
per tile where the columns' GEMM does 4*9*C*O; transforms cost a few adds per value. As in
conv.py the kernel runs a block of tiles at a time (its V and M stay in cache) and applies the
fused epilogue to each output as it is written.

The filter gradient runs the same algebra backwards: dM = A dY A^T per tile, dU[i, j] =
V[i, j]^T @ dM[i, j] summed over the tiles (16 GEMMs a block, accumulating), and once at the
end dW = G^T dU G.
"""
from __future__ import annotations

from textwrap import indent

import numpy as np

# F(2x2, 3x3) (Lavin & Gray, 2015): Y = A^T [(G g G^T) * (B^T d B)] A
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = ((1, 1, 1, 0), (0, 1, -1, -1))


def filter_transform(f: np.ndarray) -> np.ndarray:
    """U[4*i + j] = (G f G^T)[i, j] for an HWIO 3x3 filter: [16, C, O], contiguous."""
    u = np.einsum("ai,ijco,bj->abco", G.astype(f.dtype), f, G.astype(f.dtype))
    return np.ascontiguousarray(u.reshape(16, f.shape[2], f.shape[3]))


def _output_sum(da: int, db: int) -> str:
    """The expression of output (da, db) of a tile from M: sum of A^T[da][i] A^T[db][j] M[i, j]."""
    terms = []
    for i in range(4):
        for j in range(4):
            coef = A_T[da][i] * A_T[db][j]
            if coef:
                terms.append(("+ " if coef > 0 else "- ") + f"mm[slot, {4 * i + j}, r, o]")
    return " ".join(terms).lstrip("+ ")


# Tile t's 4x4 input patch d (zeros on the padding) and its transform V = B^T d B into
# v[slot, 4*i + j, r] (r: the tile's row in the block); t's image n and tile position ty, tx
# are set.
_INPUT_TILE = """\
for i in range(4):
    ih = ty * 2 - pt + i
    for j in range(4):
        iw = tx * 2 - pl + j
        if 0 <= ih < h and 0 <= iw < w:
            for k in range(c_in):
                d[i, j, k] = x[n, ih, iw, k]
        else:
            for k in range(c_in):
                d[i, j, k] = 0
for j in range(4):  # B^T d
    for k in range(c_in):
        d0, d1, d2, d3 = d[0, j, k], d[1, j, k], d[2, j, k], d[3, j, k]
        d[0, j, k] = d0 - d2
        d[1, j, k] = d1 + d2
        d[2, j, k] = d2 - d1
        d[3, j, k] = d1 - d3
for i in range(4):  # (B^T d) B
    for k in range(c_in):
        e0, e1, e2, e3 = d[i, 0, k], d[i, 1, k], d[i, 2, k], d[i, 3, k]
        v[slot, 4 * i, r, k] = e0 - e2
        v[slot, 4 * i + 1, r, k] = e1 + e2
        v[slot, 4 * i + 2, r, k] = e2 - e1
        v[slot, 4 * i + 3, r, k] = e1 - e3
"""


def source(ins: list[str], outs: list[str], direct: str | None, epilogue: list[str], setup: list[str],
           ranges: str) -> str:
    """The kernel: tiles q-th chunk of `chunks`, block by block (`ranges`: conv.py's loop over
    a chunk's blocks of `p0`); `direct` names the output the convolution itself goes to (else
    only the epilogue's outputs are written), `epilogue` is conv.py's element code reading `c`
    at pixel p, channel o."""
    per_output = ([f"{direct}[p, o] = c"] if direct else []) + epilogue
    # the tile's 4 outputs into ys, then one loop writes them (one copy of the epilogue's code)
    writes = ["for o in range(nout):"]
    writes += [f"    ys[{2 * da + db}, o] = {_output_sum(da, db)}" for da in range(2) for db in range(2)]
    writes += ["for at in range(4):",
               "    a, b = ty * 2 + at // 2, tx * 2 + at % 2",
               "    if a < oh and b < ow:",
               "        p = (n * oh + a) * ow + b",
               "        for o in range(nout):",
               "            c = ys[at, o]"] + ["            " + line for line in per_output]
    signature = ", ".join(["x", "u", "pt", "pl", "oh", "ow", "q", "chunks", "slot", "v", "mm", *ins, *outs])
    body = f'''
def conv_winograd({signature}):
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    nout = u.shape[2]
    nty, ntx = (oh + 1) // 2, (ow + 1) // 2
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
{"".join("    " + line + chr(10) for line in setup)}    d = np.empty((4, 4, c_in), x.dtype)
    ys = np.empty((4, nout), mm.dtype)
{indent(ranges.replace("p0", "t0"), "    ")}        for r in range(m):
            t = t0 + r
            n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
{indent(_INPUT_TILE, " " * 12)}        for s in range(16):
            matmul(v[slot, s, :m], u[s], mm[slot, s, :m], 0.0)
        for r in range(m):
            t = t0 + r
            n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
'''
    return body + "".join("            " + line + "\n" for line in writes)


def filter_gradient_source(ranges: str) -> str:
    """The filter gradient's kernel: for the q-th chunk of `chunks` of tiles, block by block,
    each tile's V (as the forward's) and its dy's transform dM = A dY A^T (dY: the tile's 2x2
    outputs, zeros past the edge) into v and mm, then du[slot, s] += V[s]^T @ dM[s] for the 16
    positions s (one GEMM each over the block's tiles). `filter_gradient` turns the sum of the
    threads' du into dW."""
    return f'''
def conv_winograd_filter(x, dy, pt, pl, q, chunks, slot, v, mm, du):
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    oh, ow, nout = dy.shape[1], dy.shape[2], dy.shape[3]
    nty, ntx = (oh + 1) // 2, (ow + 1) // 2
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
    d = np.empty((4, 4, c_in), x.dtype)
    z = np.empty((4, 2, nout), dy.dtype)
{indent(ranges.replace("p0", "t0"), "    ")}        for r in range(m):
            t = t0 + r
            n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
{indent(_INPUT_TILE, " " * 12)}            for a in range(2):
                for b in range(2):
                    if ty * 2 + a < oh and tx * 2 + b < ow:
                        for o in range(nout):
                            z[a, b, o] = dy[n, ty * 2 + a, tx * 2 + b, o]
                    else:
                        for o in range(nout):
                            z[a, b, o] = 0
            for b in range(2):  # A dY: rows y0, y0 + y1, y0 - y1, -y1
                for o in range(nout):
                    y0, y1 = z[0, b, o], z[1, b, o]
                    z[0, b, o] = y0
                    z[1, b, o] = y0 + y1
                    z[2, b, o] = y0 - y1
                    z[3, b, o] = -y1
            for i in range(4):  # (A dY) A^T
                for o in range(nout):
                    y0, y1 = z[i, 0, o], z[i, 1, o]
                    mm[slot, 4 * i, r, o] = y0
                    mm[slot, 4 * i + 1, r, o] = y0 + y1
                    mm[slot, 4 * i + 2, r, o] = y0 - y1
                    mm[slot, 4 * i + 3, r, o] = -y1
        for s in range(16):
            matmul(v[slot, s, :m].T, mm[slot, s, :m], du[slot, s], 1.0)
'''


def filter_gradient(du: np.ndarray) -> np.ndarray:
    """dW = G^T dU G for dU [16, C, O] (the 4x4 transform's positions): an HWIO [3, 3, C, O]."""
    g = G.astype(du.dtype)
    t = (g.T @ du.reshape(4, -1)).reshape(3, 4, -1)   # [a, j, C*O]: G^T over the rows i
    return np.matmul(g.T, t).reshape(3, 3, *du.shape[1:])  # [a, b, C*O]: G over the columns j
