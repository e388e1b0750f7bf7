"""Optimisation passes over the IR, each a pure `Graph -> Graph` (the passes issue builds them)."""
