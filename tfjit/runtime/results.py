"""What a run hands back: arrays the caller owns.

A backend may return views (`OpDef.view`): a fetched reshape of a fed array shares the feed's
memory, and two fetched pieces of one split share their input's. The caller must still get
arrays it may keep and write without changing anything else, as TF gives. So a result is
copied when it is read-only (variable values, constants and views of them: the runtime's
storage) or when it shares its memory's owner with a feed or with a result handed back
before it. Anything else, including a view of an intermediate, belongs to no one else and is
handed back as it is; the buffer pool sees the view's reference to its buffer and does not
recycle it while the caller holds it (backends/numba_cpu/buffers.py). (The numba backend's
arena of planned intermediates, reused every run, never holds a result or anything a result
may view: the memory plan leaves those out.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def owner(a: Any) -> Any:
    """The object owning `a`'s memory: the end of its chain of bases."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def owned(outputs: Sequence[np.ndarray], feeds: Sequence[Any]) -> list[np.ndarray]:
    """`outputs` with every array that the caller could not safely own replaced by a copy."""
    taken = {id(owner(f)) for f in feeds}
    out = []
    for a in outputs:
        base = owner(a)
        if not a.flags.writeable or id(base) in taken:
            a = np.array(a, copy=True)
        else:
            taken.add(id(base))
        out.append(a)
    return out
