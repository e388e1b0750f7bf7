"""The op registry and the ops it holds; importing this package registers every op."""
from . import (contraction, control_flow, conv, creation, device, elementwise, fused, layout, meta,  # noqa: F401
               nn, queue, reduction, state)
from .registry import REGISTRY, Fusion, OpDef, get_op, register, set_gradient

__all__ = ["REGISTRY", "Fusion", "OpDef", "get_op", "register", "set_gradient"]
