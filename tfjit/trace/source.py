"""Finds the user's source line: the innermost stack frame outside tfjit (and NumPy)."""
from __future__ import annotations

import os
import sys

from ..ir.graph import Loc

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP = (
    _PACKAGE_ROOT + os.sep,
    os.path.join(os.path.dirname(_PACKAGE_ROOT), "passes") + os.sep,
    os.path.join(os.path.dirname(_PACKAGE_ROOT), "backends") + os.sep,
    os.path.dirname(os.__file__) + os.sep + "contextlib.py",
    os.path.dirname(os.__file__) + os.sep + "functools.py",
)


def user_location() -> Loc | None:
    """The file:line of the code that called into tfjit, or None when there is none."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            return Loc(filename, frame.f_lineno)
        frame = frame.f_back
    return None


_DEMO = os.path.join(_PACKAGE_ROOT, "demo.py")  # the demo is a user program that ships with tfjit


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    return (path.startswith(_SKIP) and path != _DEMO) or filename.startswith("<frozen")
