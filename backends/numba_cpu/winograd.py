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
end dW = G^T dU G. The transforms are C callbacks compiled once (winograd_tiles.py); this
module writes the kernels around them: the GEMMs and the epilogue.
"""
from __future__ import annotations

from textwrap import indent

import numpy as np

# F(2x2, 3x3) (Lavin & Gray, 2015): Y = A^T [(G g G^T) * (B^T d B)] A
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def odd_rows(rows: int) -> int:
    """`rows` made odd, for the block buffers of transformed tiles ([positions, rows, channels]):
    with an even count of rows the positions' planes lie a multiple of 4 KiB apart (256 rows of
    32 float32 channels: 32 KiB), so the 16 streams a transform reads or writes fall into the
    same L1 sets and evict each other; one more row spreads them. The CNN's 3x3 layers' input
    transform took 0.68 ms at 257 rows against 1.0-1.3 at 256, the output transforms 0.37-0.49
    against 0.75-0.87 (one thread, measured)."""
    return rows | 1


def filter_transform(f: np.ndarray) -> np.ndarray:
    """U[4*i + j] = (G f G^T)[i, j] for an HWIO 3x3 filter: [16, C, O], contiguous. Two small
    GEMMs (an einsum took 90-340 us a call on the CNN's layers, these 10-20x less)."""
    g = G.astype(f.dtype)
    t = (g @ f.reshape(3, -1)).reshape(4, 3, -1)         # [a, j, C*O]: G over the rows
    return np.matmul(g, t).reshape(16, *f.shape[2:])     # [a, b, C*O]: G^T over the columns


def source(ins: list[str], outs: list[str], direct: str | None, epilogue: list[str], setup: list[str],
           ranges: str) -> str:
    """The kernel: tiles q-th chunk of `chunks`, block by block (`ranges`: conv.py's loop over
    a chunk's blocks of `p0`): V, the 16 GEMMs, each tile's 4 outputs into ys, then one loop
    writes them; `direct` names the output the convolution itself goes to (else only the
    epilogue's outputs are written), `epilogue` is conv.py's element code reading `c` at pixel
    p, channel o."""
    per_output = ([f"{direct}[p, o] = c"] if direct else []) + epilogue
    signature = ", ".join(["x", "u", "pt", "pl", "oh", "ow", "q", "chunks", "slot", "v", "mm", "ys", *ins, *outs])
    setup_lines = "".join("    " + line + "\n" for line in setup)
    body = f'''
def conv_winograd({signature}):
    nout = u.shape[2]
    nty, ntx = (oh + 1) // 2, (ow + 1) // 2
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
{setup_lines}{indent(ranges.replace("p0", "t0"), "    ")}        input_tiles(x, pt, pl, nty, ntx, t0, m, v[slot])
        for s in range(16):
            matmul(v[slot, s, :m], u[s], mm[slot, s, :m], 0.0)
        output_tiles(mm[slot], m, ys[slot])
        for r in range(m):
            t = t0 + r
            n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
            for at in range(4):
                a, b = ty * 2 + at // 2, tx * 2 + at % 2
                if a < oh and b < ow:
                    p = (n * oh + a) * ow + b
                    for o in range(nout):
                        c = ys[slot, at, r, o]
'''
    return body + "".join(" " * 24 + line + "\n" for line in per_output)


def filter_gradient_source(ranges: str) -> str:
    """The filter gradient's kernel: for the q-th chunk of `chunks` of tiles, block by block,
    the tiles' V (as the forward's) and dM = A dY A^T (dY: a tile's 2x2 outputs' gradient)
    into v and mm, then du[slot, s] += V[s]^T @ dM[s] for the 16 positions s (one GEMM each
    over the block's tiles). `filter_gradient` turns the sum of the threads' du into dW."""
    return f'''
def conv_winograd_filter(x, dy, pt, pl, q, chunks, slot, v, mm, du):
    nty, ntx = (dy.shape[1] + 1) // 2, (dy.shape[2] + 1) // 2
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
{indent(ranges.replace("p0", "t0"), "    ")}        input_tiles(x, pt, pl, nty, ntx, t0, m, v[slot])
        output_gradient_tiles(dy, nty, ntx, t0, m, mm[slot])
        for s in range(16):
            matmul(v[slot, s, :m].T, mm[slot, s, :m], du[slot, s], 1.0)
'''


def filter_gradient(du: np.ndarray) -> np.ndarray:
    """dW = G^T dU G for dU [16, C, O] (the 4x4 transform's positions): an HWIO [3, 3, C, O]."""
    g = G.astype(du.dtype)
    t = (g.T @ du.reshape(4, -1)).reshape(3, 4, -1)   # [a, j, C*O]: G^T over the rows i
    return np.matmul(g.T, t).reshape(3, 3, *du.shape[1:])  # [a, b, C*O]: G over the columns j
