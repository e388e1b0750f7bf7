"""TF1 `tf.nn` ops beyond activations (filled in by the nn work)."""
from __future__ import annotations
