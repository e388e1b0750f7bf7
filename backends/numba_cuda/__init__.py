"""The numba CUDA backend: generated CUDA kernels (fused loops, row and any-axes reductions,
tiled GEMMs with fused epilogues, in-place variable updates, gather/scatter/one_hot, pooling
and im2col convolutions), a runtime that keeps intermediates on the device, and a counter
of host-device copies."""
from .runtime import reset_transfer_stats, transfer_stats

__all__ = ["reset_transfer_stats", "transfer_stats"]
