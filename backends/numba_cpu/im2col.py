"""The columns of a convolution's input, a block of output pixels at a time (conv.py's GEMMs).

One shared function rather than a copy in every generated kernel: a cold process compiles it
once instead of once per kernel module.
"""
from __future__ import annotations

from numba import njit


@njit(error_model="numpy", nogil=True)
def im2col(x, g, p0, m, col):
    """col[r] = the window of output pixel p0 + r of the NHWC `x` (zeros where it falls on the
    padding), as KH*KW*C values in (i, j, channel) order; `g` is conv.py's geometry vector."""
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    n, a, b = p0 // (oh * ow), (p0 // ow) % oh, p0 % ow  # pixel r's position, stepped below
    for r in range(m):
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
        b += 1
        if b == ow:
            b = 0
            a += 1
            if a == oh:
                a = 0
                n += 1
