"""Reverse-mode autodiff over the IR: `tf.gradients`, `tf.hessians`, `tf.custom_gradient`.

Importing this package fills every differentiable op's gradient slot (`OpDef.grad`) from
the rule modules below; the driver in `driver.py` is the only code that walks graphs.
"""
from . import (backward_ops, rules_control_flow, rules_conv, rules_layout, rules_math,  # noqa: F401
               rules_nn)  # (registers rules)
from .custom import custom_gradient
from .driver import UnconnectedGradients, backward_location, gradients, sum_to
from .hessians import hessians

__all__ = ["UnconnectedGradients", "backward_location", "custom_gradient", "gradients", "hessians",
           "sum_to"]
