"""Variable initializers (TF1's `tf.*_initializer` and `tf.initializers.*`)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ir.types import as_dtype, float32
from ..trace.tensor import Tensor, convert_to_tensor
from . import random_ops
from .math_ops import emit1


class Initializer:
    """Called as `init(shape, dtype=None, partition_info=None)`; returns a Tensor."""

    def __init__(self, dtype: Any = None):
        self.dtype = as_dtype(dtype) if dtype is not None else None

    def _dtype(self, dtype: Any) -> Any:
        return as_dtype(dtype) if dtype is not None else (self.dtype or float32)

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        raise NotImplementedError


def fill(shape: tuple[int, ...], value: Any, dtype: Any, name: str | None = None) -> Tensor:
    scalar = convert_to_tensor(np.asarray(value, as_dtype(dtype).np_dtype))
    return emit1("fill", [scalar], {"shape": tuple(int(d) for d in shape)}, name or "Fill")


class Zeros(Initializer):
    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return fill(_dims(shape), 0, self._dtype(dtype), "zeros")


class Ones(Initializer):
    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return fill(_dims(shape), 1, self._dtype(dtype), "ones")


class Constant(Initializer):
    def __init__(self, value: Any = 0, dtype: Any = None, verify_shape: bool = False):
        super().__init__(dtype)
        self.value = value
        self.verify_shape = verify_shape

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        dims, dt = _dims(shape), self._dtype(dtype)
        value = np.asarray(self.value, dt.np_dtype)
        if value.ndim == 0:
            return fill(dims, value, dt, "Const")
        if value.size != int(np.prod(dims)):
            raise ValueError(f"constant_initializer value has {value.size} elements, "
                             f"the variable's shape {list(dims)} has {int(np.prod(dims))}")
        return convert_to_tensor(value.reshape(dims), name="Const")


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None, dtype: Any = None):
        super().__init__(dtype)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_ops.random_normal(_dims(shape), self.mean, self.stddev, self._dtype(dtype), self.seed)


class TruncatedNormal(RandomNormal):
    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_ops.truncated_normal(_dims(shape), self.mean, self.stddev, self._dtype(dtype), self.seed)


class RandomUniform(Initializer):
    def __init__(self, minval: float = 0.0, maxval: float | None = None, seed: int | None = None, dtype: Any = None):
        super().__init__(dtype)
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_ops.random_uniform(_dims(shape), self.minval, self.maxval, self._dtype(dtype), self.seed)


class VarianceScaling(Initializer):
    """TF1's variance scaling; `glorot_uniform` is the default initializer of `get_variable`."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None, dtype: Any = None):
        super().__init__(dtype)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode}")
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"Invalid `distribution` argument: {distribution}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        dims = _dims(shape)
        fan_in, fan_out = _fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        dt = self._dtype(dtype)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / 0.87962566103423978  # std of a unit normal truncated at 2
            return random_ops.truncated_normal(dims, 0.0, stddev, dt, self.seed)
        if self.distribution == "untruncated_normal":
            return random_ops.random_normal(dims, 0.0, math.sqrt(scale), dt, self.seed)
        limit = math.sqrt(3.0 * scale)
        return random_ops.random_uniform(dims, -limit, limit, dt, self.seed)


def glorot_uniform_initializer(seed: int | None = None, dtype: Any = None) -> VarianceScaling:
    return VarianceScaling(1.0, "fan_avg", "uniform", seed, dtype)


def glorot_normal_initializer(seed: int | None = None, dtype: Any = None) -> VarianceScaling:
    return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed, dtype)


def he_normal(seed: int | None = None) -> VarianceScaling:
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _dims(shape: Any) -> tuple[int, ...]:
    if hasattr(shape, "as_list"):
        shape = shape.as_list()
    dims = tuple(int(d) if d is not None else -1 for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"initializers need a fully defined shape, got {list(shape)}")
    return dims


zeros_initializer = Zeros
ones_initializer = Ones
constant_initializer = Constant
random_normal_initializer = RandomNormal
truncated_normal_initializer = TruncatedNormal
random_uniform_initializer = RandomUniform
variance_scaling_initializer = VarianceScaling
