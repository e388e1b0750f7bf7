"""The numba CUDA backend: generated CUDA kernels (fused loops, row and any-axes reductions,
tiled GEMMs with fused epilogues, in-place variable updates, gather/scatter/one_hot, pooling
and im2col convolutions) on a GPU placement, a runtime that keeps intermediates and variables
on the device, and a counter of host-device copies (with a guard that makes an implicit one an
error)."""
import numpy as _np

if not hasattr(_np, "row_stack"):  # NumPy 2.5 removed this alias of vstack; numba-cuda 0.30 still
    _np.row_stack = _np.vstack     # registers it when its CUDA target loads (else every launch fails)

from .placement import GPU0, has_kernel, kernel_gap
from .runtime import no_implicit_transfers, reset_transfer_stats, transfer_stats

__all__ = ["GPU0", "has_kernel", "kernel_gap", "no_implicit_transfers", "reset_transfer_stats", "transfer_stats"]
