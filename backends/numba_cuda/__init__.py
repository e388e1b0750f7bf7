"""The numba CUDA backend: generated CUDA kernels for fused loops and row reductions, a
runtime that keeps intermediates on the device, and a counter of host-device copies."""
from .runtime import reset_transfer_stats, transfer_stats

__all__ = ["reset_transfer_stats", "transfer_stats"]
