"""Queues, queue runners and the coordinator (issue 6; exported at the top level)."""
from __future__ import annotations

__all__: list[str] = []
