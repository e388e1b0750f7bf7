"""Structured control flow ops holding sub-graphs: cond, while (issue 6)."""
