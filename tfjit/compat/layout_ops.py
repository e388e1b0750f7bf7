"""TF1 layout API: transpose, concat, stack, slicing, gathering (filled in by the layout work)."""
from __future__ import annotations
