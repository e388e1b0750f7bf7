"""The op registry and the ops it holds; importing this package registers every op."""
from . import contraction, creation, device, elementwise, fused, layout, meta, nn, reduction, state  # noqa: F401
from .registry import REGISTRY, Fusion, OpDef, get_op, register, set_gradient

__all__ = ["REGISTRY", "Fusion", "OpDef", "get_op", "register", "set_gradient"]
