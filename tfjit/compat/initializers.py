"""Variable initializers (TF1's `tf.*_initializer` and `tf.initializers.*`)."""
from __future__ import annotations

import math
from typing import Any


from ..ir.types import DType, as_dtype, float32
from ..trace.tensor import Tensor
from . import array_ops, random_ops

# Standard deviation of a unit normal truncated to [-2, 2]: truncated draws are rescaled by it
# so that the variance is the one asked for.
_TRUNCATED_STDDEV = 0.87962566103423978


class Initializer:
    """Called as `init(shape, dtype=None, partition_info=None)`; returns a Tensor.

    `dtype` falls back to the one given when the initializer was made, then to float32.
    """

    def __init__(self, dtype: Any = None):
        self.dtype = as_dtype(dtype) if dtype is not None else None

    def _dtype(self, dtype: Any) -> DType:
        return as_dtype(dtype) if dtype is not None else (self.dtype or float32)

    def _float_dtype(self, dtype: Any) -> DType:
        dt = self._dtype(dtype)
        if not dt.is_floating:
            raise ValueError(f"Expected floating point type, got {dt.name}.")
        return dt


class Zeros(Initializer):
    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return array_ops.zeros(_dims(shape), self._dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return array_ops.ones(_dims(shape), self._dtype(dtype))


class Constant(Initializer):
    """`tf.constant(value, dtype, shape)`: a shorter value is padded with its last element."""

    def __init__(self, value: Any = 0, dtype: Any = None, verify_shape: bool = False):
        super().__init__(dtype)
        self.value = value
        self.verify_shape = verify_shape

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None,
                 verify_shape: bool | None = None) -> Tensor:
        verify = self.verify_shape if verify_shape is None else verify_shape
        return array_ops.constant(self.value, self._dtype(dtype), _dims(shape), verify_shape=verify)


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None, dtype: Any = None):
        super().__init__(dtype)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        dt = self._float_dtype(dtype)
        return random_ops.random_normal(_dims(shape), self.mean, self.stddev, dt, self.seed)


class TruncatedNormal(RandomNormal):
    """Normal draws beyond two standard deviations are redrawn."""

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        dt = self._float_dtype(dtype)
        return random_ops.truncated_normal(_dims(shape), self.mean, self.stddev, dt, self.seed)


class RandomUniform(Initializer):
    def __init__(self, minval: float = 0, maxval: float | None = None, seed: int | None = None,
                 dtype: Any = None):
        super().__init__(dtype)
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_ops.random_uniform(_dims(shape), self.minval, self.maxval, self._dtype(dtype), self.seed)


class VarianceScaling(Initializer):
    """Draws with variance `scale / n`, n the fan-in, fan-out or their mean.

    `glorot_uniform` (the default initializer of `get_variable`) is scale 1, fan_avg, uniform.
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None, dtype: Any = None):
        super().__init__(dtype)
        if scale <= 0.0:
            raise ValueError("`scale` must be positive float.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode}")
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"Invalid `distribution` argument: {distribution}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape: Any, dtype: Any = None, partition_info: Any = None) -> Tensor:
        dims, dt = _dims(shape), self._float_dtype(dtype)
        fan_in, fan_out = _fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _TRUNCATED_STDDEV
            return random_ops.truncated_normal(dims, 0.0, stddev, dt, self.seed)
        if self.distribution == "untruncated_normal":
            return random_ops.random_normal(dims, 0.0, math.sqrt(variance), dt, self.seed)
        limit = math.sqrt(3.0 * variance)
        return random_ops.random_uniform(dims, -limit, limit, dt, self.seed)


def glorot_uniform_initializer(seed: int | None = None, dtype: Any = None) -> VarianceScaling:
    """Uniform on [-limit, limit] with limit = sqrt(6 / (fan_in + fan_out))."""
    return VarianceScaling(1.0, "fan_avg", "uniform", seed, dtype)


def glorot_normal_initializer(seed: int | None = None, dtype: Any = None) -> VarianceScaling:
    return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed, dtype)


def he_normal(seed: int | None = None) -> VarianceScaling:
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed: int | None = None) -> VarianceScaling:
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed: int | None = None) -> VarianceScaling:
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed: int | None = None) -> VarianceScaling:
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """TF's fans: a matrix is [in, out]; a conv kernel is [*receptive field, in, out]."""
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(math.prod(shape[:-2]))
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
