"""A register-blocked GEMM tile for numba kernels: an RNN's `h @ W`, run a column block per
thread inside one parallel region (recurrence.py).

BLAS cannot be split that way cheaply: NumPy's threaded OpenBLAS took 215-228 us for the
LSTM benchmark's 64x256x1024 cell product, one-thread OpenBLAS 388 us, and waking numba's
threads for each cell cost ~60 us (`OMP_WAIT_POLICY=passive`). This tile, written as LLVM
vector code (numba has no SIMD types and its loops keep such accumulators in memory), ran
that product in 312 us on one core (108 GFLOP/s) and 166 us on two.

`W` is packed once per call into panels of `panel_width(dtype)` columns, `(panels, K, NR)`,
so each step of the inner loop loads two contiguous vectors of W and broadcasts one element
of each of `MR` rows of `a` into 2 x MR vector accumulators.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

MR = 8  # rows of `a` per tile: 16 accumulators of the 32 vector registers
_LANES = {"float32": 16, "float64": 8}  # elements of one 512-bit vector


def panel_width(dtype: np.dtype) -> int:
    """Columns of W per packed panel (two vectors)."""
    return 2 * _LANES[np.dtype(dtype).name]


def packed_shape(k: int, n: int, dtype: np.dtype) -> tuple[int, int, int]:
    nr = panel_width(dtype)
    return (-(-n // nr), k, nr)


@njit(cache=True, nogil=True)
def pack_panel(w: np.ndarray, out: np.ndarray, panel: int) -> None:
    """Panel `panel` of `w` (K, N) into `out` (packed_shape): columns panel*NR..panel*NR+NR-1,
    row by row, zeros past N."""
    k, n = w.shape
    nr = out.shape[2]
    start = panel * nr
    width = min(nr, n - start)
    for row in range(k):
        for c in range(width):  # a contiguous copy where w's rows are: it vectorises
            out[panel, row, c] = w[row, start + c]
        for c in range(width, nr):
            out[panel, row, c] = 0


@intrinsic
def tile(typingctx, a, packed, src, dst, row0, rows, panel):  # type: ignore[no-untyped-def]
    """`dst[r, c] = src[r, c] + sum_k a[r, k] * W[k, c]` for the `rows` (1..MR) rows from
    `row0` and the panel's NR columns. The product is summed over k first, then added to
    `src` (as `matmul(a, W) + src` rounds). `a`, `src`, `dst`: 2-D with contiguous rows;
    `packed`: 3-D C-contiguous (pack_panel)."""
    dtype = getattr(packed, "dtype", None)
    if str(dtype) not in _LANES or any(getattr(x, "dtype", None) != dtype for x in (a, src, dst)):
        return None
    sig = types.void(a, packed, src, dst, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        lanes = _LANES[str(dtype)]
        scalar_type = ir.FloatType() if str(dtype) == "float32" else ir.DoubleType()
        size = 4 if str(dtype) == "float32" else 8
        vector = ir.VectorType(scalar_type, lanes)
        suffix = f"v{lanes}f{size * 8}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{suffix}")
        i64 = ir.IntType(64)
        arrays = [context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:4], args[:4])]
        a_arr, p_arr, s_arr, d_arr = arrays
        start, count, panel_index = args[4:]
        k = builder.extract_value(p_arr.shape, 1)
        nr = 2 * lanes

        def row_stride(array):  # type: ignore[no-untyped-def]
            return builder.sdiv(builder.extract_value(array.strides, 0), i64(size))

        lda, lds, ldd = row_stride(a_arr), row_stride(s_arr), row_stride(d_arr)
        column = builder.mul(panel_index, i64(nr))
        panel = builder.gep(p_arr.data, [builder.mul(panel_index, builder.mul(k, i64(nr)))])
        last = builder.sub(count, i64(1))
        rows = []  # row r of the tile, clamped to the last real row for loads
        for r in range(MR):
            below = builder.icmp_signed("<", i64(r), count)
            rows.append(builder.add(start, builder.select(below, i64(r), last)))
        a_rows = [builder.gep(a_arr.data, [builder.mul(r, lda)]) for r in rows]
        zero = ir.Constant(vector, [0.0] * lanes)
        slots = [cgutils.alloca_once_value(builder, zero) for _ in range(2 * MR)]
        undef = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        with cgutils.for_range(builder, k) as loop:
            at = builder.gep(panel, [builder.mul(loop.index, i64(nr))])
            w = [builder.load(builder.bitcast(builder.gep(at, [i64(h * lanes)]), vector.as_pointer()), align=size)
                 for h in range(2)]
            for r in range(MR):
                x = builder.load(builder.gep(a_rows[r], [loop.index]))
                xs = builder.shuffle_vector(builder.insert_element(undef, x, ir.IntType(32)(0)), undef, splat)
                for h in range(2):
                    slot = slots[2 * r + h]
                    builder.store(builder.call(fma, [xs, w[h], builder.load(slot)]), slot)
        for r in range(MR):
            with builder.if_then(builder.icmp_signed("<", i64(r), count)):
                for h in range(2):
                    offset = builder.add(column, i64(h * lanes))
                    s_ptr = builder.gep(s_arr.data, [builder.add(builder.mul(rows[r], lds), offset)])
                    d_ptr = builder.gep(d_arr.data, [builder.add(builder.mul(rows[r], ldd), offset)])
                    s_vec = builder.load(builder.bitcast(s_ptr, vector.as_pointer()), align=size)
                    total = builder.fadd(builder.load(slots[2 * r + h]), s_vec)
                    builder.store(total, builder.bitcast(d_ptr, vector.as_pointer()), align=size)
        return context.get_dummy_value()

    return sig, codegen
