"""`tf.nn` convolution, pooling, dropout and normalisation ops (issue 6; exported into tf.nn)."""
from __future__ import annotations

__all__: list[str] = []
