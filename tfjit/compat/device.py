"""TF device strings: '/gpu:0' and friends in their canonical long form."""
from __future__ import annotations

import re

_SHORT = re.compile(r"^/?(?:device:)?(cpu|gpu|CPU|GPU)(?::(\d+))?$")
_PREFIX = "/job:localhost/replica:0/task:0/device:"


def canonical_device(spec: str) -> str:
    """'/gpu:0' -> '/job:localhost/replica:0/task:0/device:GPU:0'; full forms pass through."""
    m = _SHORT.match(spec.strip())
    if m:
        return f"{_PREFIX}{m.group(1).upper()}:{m.group(2) or 0}"
    if spec.startswith("/job:"):
        return spec
    raise ValueError(f"Unsupported device specification {spec!r}; use '/cpu:0', '/gpu:0' or a full "
                     f"'/job:localhost/replica:0/task:0/device:CPU:0' string")


CPU0 = _PREFIX + "CPU:0"
