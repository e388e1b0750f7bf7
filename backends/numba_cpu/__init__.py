"""The numba CPU backend: generated loop and row kernels, a generated step function, the kernel cache."""
