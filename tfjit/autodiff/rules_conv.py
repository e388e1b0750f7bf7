"""Gradient rules of convolution, pooling and normalisation ops (issue 6)."""
