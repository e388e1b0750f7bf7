"""3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) or F(2x4, 3x3): GEMMs of 2.25x or 3x
fewer FLOPs.

Each tile of 2 x w output pixels (w = 2 or 4, `tile_width`) needs the 4 x (w + 2) input patch d
under it: V = B^T d B (adds only), then for each of the 4 (w + 2) positions (i, j) of the
transform a GEMM over the block's tiles, M[i, j] = V[i, j] @ U[i, j] with U = G g G^T the
transformed filter ([positions, C, O], computed once a call), and the tile's outputs
Y = A^T M A (adds only). F(2x2)'s 16 GEMMs do 16*C*O multiply-adds per 4 outputs where the
columns' GEMM does 4*9*C*O, F(2x4)'s 24 do 24*C*O per 8; transforms cost a few adds per value.
As in conv.py the kernel runs a block of tiles at a time (its V and M stay in cache) and
applies the fused epilogue to each output as it is written.

The filter gradient runs the same algebra backwards: dM = A dY A^T per tile, dU[i, j] =
V[i, j]^T @ dM[i, j] summed over the tiles (one GEMM a position and block, accumulating), and
once at the end dW = G^T dU G. The transforms are C callbacks compiled once
(winograd_tiles.py); this module writes the kernels around them: the GEMMs and the epilogue.
"""
from __future__ import annotations

from textwrap import indent

import numpy as np

# F(2x2, 3x3) (Lavin & Gray, 2015): Y = A^T [(G g G^T) * (B^T d B)] A; F(2x4, 3x3) takes F(4, 3)'s
# matrices along the columns: Y = A2^T [(G2 g G4^T) * (B2^T d B4)] A4 (winograd_tiles.py has B, A)
G = {2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
     4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


def tile_width(ow: int) -> int:
    """Output columns a tile: 4 (F(2x4, 3x3): 24 GEMM positions for 8 outputs, 3 a pixel against
    F(2x2)'s 4) unless the row's last tile wastes so many columns that 2 does fewer GEMM rows
    (ow = 1, 2, 5, 6). Only F(4, 3) along one axis: along both (F(4x4)) float32 results were
    20-40x further from exact than direct convolution's, past float32 tolerance; one axis stays
    within a few times F(2x2)'s error (measured, 32 channels)."""
    return 4 if 24 * -(-ow // 4) < 16 * -(-ow // 2) else 2


def positions(width: int) -> int:
    """The transform's positions (GEMMs) of a tile `width` columns wide: (2 + 2) x (width + 2)."""
    return 4 * (width + 2)


def odd_rows(rows: int) -> int:
    """`rows` made odd, for the block buffers of transformed tiles ([positions, rows, channels]):
    with an even count of rows the positions' planes lie a multiple of 4 KiB apart (256 rows of
    32 float32 channels: 32 KiB), so the 16 streams a transform reads or writes fall into the
    same L1 sets and evict each other; one more row spreads them. The CNN's 3x3 layers' input
    transform took 0.68 ms at 257 rows against 1.0-1.3 at 256, the output transforms 0.37-0.49
    against 0.75-0.87 (one thread, measured)."""
    return rows | 1


def filter_transform(f: np.ndarray, width: int) -> np.ndarray:
    """U[(width + 2) * i + j] = (G2 f Gw^T)[i, j] for an HWIO 3x3 filter: [positions, C, O],
    contiguous. Two small GEMMs (an einsum took 90-340 us a call on the CNN's layers, these
    10-20x less)."""
    gh, gw = G[2].astype(f.dtype), G[width].astype(f.dtype)
    t = (gh @ f.reshape(3, -1)).reshape(4, 3, -1)          # [a, j, C*O]: G over the rows
    return np.matmul(gw, t).reshape(positions(width), *f.shape[2:])  # [a, b, C*O]: G^T over the columns


def _names(width: int) -> str:
    """The suffix of the transforms' names for tiles `width` columns wide (winograd_tiles.py)."""
    return "" if width == 2 else f"_2x{width}"


def source(ins: list[str], outs: list[str], direct: str | None, epilogue: list[str], setup: list[str],
           ranges: str, width: int) -> str:
    """The kernel: tiles (2 x `width` outputs) of the q-th chunk of `chunks`, block by block
    (`ranges`: conv.py's loop over a chunk's blocks of `p0`): V, the GEMMs, each tile's outputs
    into ys, then one loop writes them; `direct` names the output the convolution itself goes
    to (else only the epilogue's outputs are written), `epilogue` is conv.py's element code
    reading `c` at pixel p, channel o."""
    per_output = ([f"{direct}[p, o] = c"] if direct else []) + epilogue
    signature = ", ".join(["x", "u", "pt", "pl", "oh", "ow", "q", "chunks", "slot", "v", "mm", "ys", *ins, *outs])
    setup_lines = "".join("    " + line + "\n" for line in setup)
    suffix = _names(width)
    body = f'''
def conv_winograd({signature}):
    nout = u.shape[2]
    nty, ntx = (oh + 1) // 2, (ow + {width - 1}) // {width}
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
{setup_lines}{indent(ranges.replace("p0", "t0"), "    ")}        input_tiles{suffix}(x, pt, pl, nty, ntx, t0, m, v[slot])
        for s in range({positions(width)}):
            matmul(v[slot, s, :m], u[s], mm[slot, s, :m], 0.0)
        output_tiles{suffix}(mm[slot], m, ys[slot])
        for r in range(m):
            t = t0 + r
            n, ty, tx = t // (nty * ntx), (t // ntx) % nty, t % ntx
            for at in range({2 * width}):
                a, b = ty * 2 + at // {width}, tx * {width} + at % {width}
                if a < oh and b < ow:
                    p = (n * oh + a) * ow + b
                    for o in range(nout):
                        c = ys[slot, at, r, o]
'''
    return body + "".join(" " * 24 + line + "\n" for line in per_output)


def filter_gradient_source(ranges: str, width: int) -> str:
    """The filter gradient's kernel: for the q-th chunk of `chunks` of tiles (2 x `width`
    outputs), block by block, the tiles' V (as the forward's) and dM = A dY A^T (dY: a tile's
    outputs' gradient) into v and mm, then du[slot, s] += V[s]^T @ dM[s] for each position s
    (one GEMM each over the block's tiles). `filter_gradient` turns the sum of the threads' du
    into dW."""
    suffix = _names(width)
    return f'''
def conv_winograd_filter(x, dy, pt, pl, q, chunks, slot, v, mm, du):
    nty, ntx = (dy.shape[1] + 1) // 2, (dy.shape[2] + {width - 1}) // {width}
    total = x.shape[0] * nty * ntx
    rows = v.shape[2]
{indent(ranges.replace("p0", "t0"), "    ")}        input_tiles{suffix}(x, pt, pl, nty, ntx, t0, m, v[slot])
        output_gradient_tiles{suffix}(dy, nty, ntx, t0, m, mm[slot])
        for s in range({positions(width)}):
            matmul(v[slot, s, :m].T, mm[slot, s, :m], du[slot, s], 1.0)
'''


def filter_gradient(du: np.ndarray, width: int) -> np.ndarray:
    """dW = G2^T dU Gw for dU [positions, C, O] (the transform's positions): an HWIO [3, 3, C, O]."""
    gh, gw = G[2].astype(du.dtype), G[width].astype(du.dtype)
    t = (gh.T @ du.reshape(4, -1)).reshape(3, width + 2, -1)     # [a, j, C*O]: G^T over the rows i
    return np.matmul(gw.T, t).reshape(3, 3, *du.shape[1:])      # [a, b, C*O]: G over the columns j
