"""The TF1 optimizers, each with the update rule of its TF 1.x kernel (`training_ops.cc`).

The formulas keep the kernels' association order (`m += (g - m) * (1 - beta1)`, not
`beta1 * m + ...`) so float32 results match TensorFlow's to the last bits where possible.
Hyperparameters may be Python numbers, Tensors, placeholders or callables; they are cast to
each variable's dtype, as TF does.
"""
from __future__ import annotations

from typing import Any

from ...trace.graph import get_default_graph
from ...trace.tensor import Tensor
from ..array_ops import fill
from ..control_flow import group
from ..math_ops import cast, rsqrt, sqrt, square
from ..variables import Variable
from .optimizer import Optimizer


class GradientDescentOptimizer(Optimizer):
    """`var -= grad * lr`."""

    def __init__(self, learning_rate: Any, use_locking: bool = False, name: str = "GradientDescent"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate

    def _prepare(self) -> None:
        self._lr_t = self._hyper(self._learning_rate, "learning_rate")

    def _apply_dense(self, grad: Tensor, var: Variable) -> Tensor:
        return self._write(var, "assign_sub", grad * cast(self._lr_t, var.dtype))


class MomentumOptimizer(Optimizer):
    """`accum = accum * momentum + grad`; `var -= lr * accum`, or with Nesterov
    `var -= grad * lr + accum * momentum * lr`."""

    def __init__(self, learning_rate: Any, momentum: Any, use_locking: bool = False,
                 name: str = "Momentum", use_nesterov: bool = False):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._momentum = momentum
        self._use_nesterov = use_nesterov

    def _create_slots(self, var_list: list[Variable]) -> None:
        for v in var_list:
            self._zeros_slot(v, "momentum", self._name)

    def _prepare(self) -> None:
        self._lr_t = self._hyper(self._learning_rate, "learning_rate")
        self._momentum_t = self._hyper(self._momentum, "momentum")

    def _apply_dense(self, grad: Tensor, var: Variable) -> Tensor:
        lr, momentum = cast(self._lr_t, var.dtype), cast(self._momentum_t, var.dtype)
        accum = self.get_slot(var, "momentum")
        accum_t = self._write(accum, "assign", accum * momentum + grad)
        if self._use_nesterov:
            return self._write(var, "assign_sub", grad * lr + accum_t * momentum * lr)
        return self._write(var, "assign_sub", accum_t * lr)


class AdamOptimizer(Optimizer):
    """Adam as TF 1.x computes it: `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`,
    `m += (g - m) * (1 - beta1)`, `v += (g^2 - v) * (1 - beta2)`,
    `var -= m * lr_t / (sqrt(v) + epsilon)` (epsilon outside the square root, "epsilon hat")."""

    def __init__(self, learning_rate: Any = 0.001, beta1: Any = 0.9, beta2: Any = 0.999,
                 epsilon: Any = 1e-8, use_locking: bool = False, name: str = "Adam"):
        super().__init__(use_locking, name)
        self._lr, self._beta1, self._beta2, self._epsilon = learning_rate, beta1, beta2, epsilon

    def _create_slots(self, var_list: list[Variable]) -> None:
        self._create_non_slot_variable(self._beta1, "beta1_power")
        self._create_non_slot_variable(self._beta2, "beta2_power")
        for v in var_list:
            self._zeros_slot(v, "m", self._name)
            self._zeros_slot(v, "v", self._name)

    def _prepare(self) -> None:
        self._lr_t = self._hyper(self._lr, "learning_rate")
        self._beta1_t = self._hyper(self._beta1, "beta1")
        self._beta2_t = self._hyper(self._beta2, "beta2")
        self._epsilon_t = self._hyper(self._epsilon, "epsilon")

    def _apply_dense(self, grad: Tensor, var: Variable) -> Tensor:
        dt = var.dtype
        beta1_power = cast(self._get_non_slot_variable("beta1_power"), dt)
        beta2_power = cast(self._get_non_slot_variable("beta2_power"), dt)
        beta1, beta2 = cast(self._beta1_t, dt), cast(self._beta2_t, dt)
        alpha = cast(self._lr_t, dt) * sqrt(1 - beta2_power) / (1 - beta1_power)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        m_t = self._write(m, "assign_add", (grad - m) * (1 - beta1))
        v_t = self._write(v, "assign_add", (square(grad) - v) * (1 - beta2))
        return self._write(var, "assign_sub", m_t * alpha / (sqrt(v_t) + cast(self._epsilon_t, dt)))

    def _finish(self, update_ops: list[Any], name_scope: str) -> Any:
        """After every variable's update, advance `beta1_power` and `beta2_power` by one step."""
        beta1_power = self._get_non_slot_variable("beta1_power")
        beta2_power = self._get_non_slot_variable("beta2_power")
        with get_default_graph().control_dependencies(update_ops):
            update_beta1 = beta1_power.assign(beta1_power * self._beta1_t, use_locking=self._use_locking)
            update_beta2 = beta2_power.assign(beta2_power * self._beta2_t, use_locking=self._use_locking)
        return group(*update_ops, update_beta1, update_beta2, name=name_scope)


class RMSPropOptimizer(Optimizer):
    """`ms += (g^2 - ms) * (1 - decay)`; `mom = mom * momentum + g * lr / sqrt(ms + epsilon)`;
    `var -= mom`. Centered, `mg += (g - mg) * (1 - decay)` and the denominator is
    `sqrt(ms - mg^2 + epsilon)`. TF 1.x starts `ms` at ones."""

    def __init__(self, learning_rate: Any, decay: Any = 0.9, momentum: Any = 0.0, epsilon: Any = 1e-10,
                 use_locking: bool = False, centered: bool = False, name: str = "RMSProp"):
        super().__init__(use_locking, name)
        self._lr, self._decay, self._momentum, self._epsilon = learning_rate, decay, momentum, epsilon
        self._centered = centered

    def _create_slots(self, var_list: list[Variable]) -> None:
        for v in var_list:
            self._slot_with_initializer(v, lambda v=v: fill(v.shape, v.dtype.np_dtype.type(1)), "rms",
                                        self._name)
            if self._centered:
                self._zeros_slot(v, "mg", self._name)
            self._zeros_slot(v, "momentum", self._name)

    def _prepare(self) -> None:
        self._lr_t = self._hyper(self._lr, "learning_rate")
        self._decay_t = self._hyper(self._decay, "decay")
        self._momentum_t = self._hyper(self._momentum, "momentum")
        self._epsilon_t = self._hyper(self._epsilon, "epsilon")

    def _apply_dense(self, grad: Tensor, var: Variable) -> Tensor:
        dt = var.dtype
        one_minus_rho = 1 - cast(self._decay_t, dt)
        rms, mom = self.get_slot(var, "rms"), self.get_slot(var, "momentum")
        ms_t = self._write(rms, "assign_add", (square(grad) - rms) * one_minus_rho)
        denom = ms_t
        if self._centered:
            mg = self.get_slot(var, "mg")
            mg_t = self._write(mg, "assign_add", (grad - mg) * one_minus_rho)
            denom = ms_t - square(mg_t)
        step = grad * cast(self._lr_t, dt) / sqrt(denom + cast(self._epsilon_t, dt))
        mom_t = self._write(mom, "assign", mom * cast(self._momentum_t, dt) + step)
        return self._write(var, "assign_sub", mom_t)


class AdagradOptimizer(Optimizer):
    """`accum += g^2`; `var -= g * lr * rsqrt(accum)`; accumulators start at
    `initial_accumulator_value` (0.1)."""

    def __init__(self, learning_rate: Any, initial_accumulator_value: float = 0.1,
                 use_locking: bool = False, name: str = "Adagrad"):
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: {initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._initial_accumulator_value = initial_accumulator_value

    def _create_slots(self, var_list: list[Variable]) -> None:
        for v in var_list:
            initial = v.dtype.np_dtype.type(self._initial_accumulator_value)
            self._slot_with_initializer(v, lambda v=v, x=initial: fill(v.shape, x), "accumulator", self._name)

    def _prepare(self) -> None:
        self._lr_t = self._hyper(self._learning_rate, "learning_rate")

    def _apply_dense(self, grad: Tensor, var: Variable) -> Tensor:
        accum = self.get_slot(var, "accumulator")
        accum_t = self._write(accum, "assign_add", square(grad))
        return self._write(var, "assign_sub", grad * cast(self._lr_t, var.dtype) * rsqrt(accum_t))
