"""Gradient rules of cond and while_loop (issue 6)."""
