"""The columns of a convolution's input, a block of output pixels at a time (conv.py's GEMMs).

One shared function rather than a copy in every generated kernel: a cold process compiles it
once instead of once per kernel module.
"""
from __future__ import annotations

from numba import njit

RGB_SEGMENT = 9  # a 3-wide window row of a 3-channel image: KW * C values copied as one segment


@njit(error_model="numpy", nogil=True)
def im2col(x, g, p0, m, col):
    """col[r] = the window of output pixel p0 + r of the NHWC `x` (zeros where it falls on the
    padding), as KH*KW*C values in (i, j, channel) order; `g` is conv.py's geometry vector.

    Without dilation along the width, a window row inside the image is KW*C contiguous values
    of `x`. Where that is RGB_SEGMENT values (a 3x3 window on an RGB image) one loop of that
    constant length copies it, which LLVM unrolls into vector moves: 2.4x faster than the
    per-tap loops on the CNN's first layer, measured. Other widths keep the per-tap loops (a
    segment of run-time length was 1.3x faster at 3 channels but 1.35x slower at 16).
    """
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    flat = x.reshape(x.size)
    rgb = kw * c == RGB_SEGMENT and dw == 1
    n, a, b = p0 // (oh * ow), (p0 // ow) % oh, p0 % ow  # pixel r's position, stepped below
    for r in range(m):
        iw0 = b * sw - pl
        if rgb and iw0 >= 0 and iw0 + kw <= w:
            for i in range(kh):
                ih = a * sh - pt + i * dh
                base = i * RGB_SEGMENT
                if 0 <= ih < h:
                    src = ((n * h + ih) * w + iw0) * c
                    for k in range(RGB_SEGMENT):
                        col[r, base + k] = flat[src + k]
                else:
                    for k in range(RGB_SEGMENT):
                        col[r, base + k] = 0
        else:
            for i in range(kh):
                ih = a * sh - pt + i * dh
                for j in range(kw):
                    iw = iw0 + j * dw
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
