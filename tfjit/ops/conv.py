"""Convolution, pooling, dropout and normalisation ops (issue 6)."""
