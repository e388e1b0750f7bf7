"""Structured control flow: `tf.cond`, `tf.while_loop`, `tf.case`, `tf.map_fn`, `tf.scan`,
`tf.foldl` (issue 6; exported at the top level)."""
from __future__ import annotations

__all__: list[str] = []
