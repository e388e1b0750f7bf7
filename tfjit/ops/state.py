"""Ops with effects: parameters and placeholders, variables and assignments, random draws."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, OpTypeError
from ..ir.types import DType, Dim, TensorType, bool_, dims_compatible
from ..runtime.state import RuntimeState
from .registry import Fusion, register


def _declared(in_types: tuple[TensorType, ...], dtype: DType, shape: tuple[Dim, ...] | None,
              **attrs: Any) -> tuple[TensorType, ...]:
    return (TensorType(dtype, shape),)


def _param(*args: Any, **attrs: Any) -> np.ndarray:
    raise RuntimeError("a graph parameter has no value of its own; the executor binds it")


def _placeholder(*args: Any, dtype: DType, shape: Any, state: RuntimeState) -> np.ndarray:
    raise InvalidArgumentError(message=f"You must feed a value for placeholder tensor of dtype "
                                       f"{dtype.name} and shape {shape}")


def _param_rule(in_types: tuple[TensorType, ...], index: int) -> tuple[TensorType, ...]:
    raise OpTypeError("a param's type is given by the graph signature, not derived")


register("param", _param_rule, _param, Fusion.STATEFUL, stateful=True, differentiable=False)
register("placeholder", _declared, _placeholder, Fusion.STATEFUL, stateful=True, differentiable=False)


def _with_default_rule(in_types: tuple[TensorType, ...], shape: tuple[Dim, ...] | None) -> tuple[TensorType, ...]:
    (t,) = in_types
    return (TensorType(t.dtype, shape),)


register("placeholder_with_default", _with_default_rule, lambda x, shape=None: x, Fusion.LAYOUT)


def _variable(*, var: str, dtype: DType, shape: Any, state: RuntimeState) -> np.ndarray:
    return state.read(var)


register("variable", lambda in_types, var, dtype, shape: (TensorType(dtype, shape),), _variable,
         Fusion.STATEFUL, stateful=True, differentiable=False)


def _assign_rule(in_types: tuple[TensorType, ...], var: str, dtype: DType, shape: Any,
                 validate_shape: bool = True) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.dtype != dtype:
        raise OpTypeError(f"cannot assign a {t} value to variable {var!r} of dtype {dtype.name}")
    if validate_shape and t.shape is not None and shape is not None:
        ok = len(t.shape) == len(shape) and all(dims_compatible(a, b) for a, b in zip(t.shape, shape))
        if not ok:
            raise OpTypeError(f"cannot assign a {t} value to variable {var!r} of shape {TensorType(dtype, shape)}")
    return (TensorType(dtype, shape if validate_shape else t.shape),)


def _assign(value: np.ndarray, *, var: str, dtype: DType, shape: Any, state: RuntimeState,
            validate_shape: bool = True) -> np.ndarray:
    if validate_shape and state.is_initialized(var) and state.read(var).shape != value.shape:
        raise InvalidArgumentError(message=f"Assign requires shapes of both tensors to match. "
                                           f"{var} has shape {state.read(var).shape}, value has {value.shape}")
    if not state.is_initialized(var):
        return state.write(var, np.array(value, dtype=dtype.np_dtype, copy=True))
    return state.update(var, np.asarray(value))


def _assign_add(value: np.ndarray, *, var: str, dtype: DType, shape: Any, state: RuntimeState) -> np.ndarray:
    return state.update(var, np.asarray(value), np.add)


def _assign_sub(value: np.ndarray, *, var: str, dtype: DType, shape: Any, state: RuntimeState) -> np.ndarray:
    return state.update(var, np.asarray(value), np.subtract)


def _update_rule(in_types: tuple[TensorType, ...], var: str, dtype: DType, shape: Any) -> tuple[TensorType, ...]:
    return _assign_rule(in_types, var, dtype, shape)


register("assign", _assign_rule, _assign, Fusion.STATEFUL, stateful=True, writes_state=True,
         differentiable=False)
register("assign_add", _update_rule, _assign_add, Fusion.STATEFUL, stateful=True, writes_state=True,
         differentiable=False)
register("assign_sub", _update_rule, _assign_sub, Fusion.STATEFUL, stateful=True, writes_state=True,
         differentiable=False)


def _is_initialized(*, var: str, state: RuntimeState) -> np.ndarray:
    return np.asarray(state.is_initialized(var))


register("is_variable_initialized", lambda in_types, var: (TensorType(bool_, ()),),
         _is_initialized, Fusion.STATEFUL, stateful=True, differentiable=False)
register("no_op", lambda in_types: (), lambda state: (), Fusion.STATEFUL, stateful=True, differentiable=False)


# -- random ---------------------------------------------------------------------------------
def _random_rule(in_types: tuple[TensorType, ...], shape: tuple[int, ...], dtype: DType, seed: int,
                 seed2: int, **params: float) -> tuple[TensorType, ...]:
    if not dtype.is_floating:
        raise OpTypeError(f"random values must be floating point, got {dtype.name}")
    return (TensorType(dtype, tuple(shape)),)


def _random_normal(*, shape: tuple[int, ...], dtype: DType, seed: int, seed2: int, mean: float,
                   stddev: float, state: RuntimeState) -> np.ndarray:
    gen = state.random_generator(seed, seed2)
    return (gen.standard_normal(shape) * stddev + mean).astype(dtype.np_dtype)


def _truncated_normal(*, shape: tuple[int, ...], dtype: DType, seed: int, seed2: int, mean: float,
                      stddev: float, state: RuntimeState) -> np.ndarray:
    """Normal draws re-drawn until within two standard deviations, as TF does."""
    gen = state.random_generator(seed, seed2)
    out = gen.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = gen.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * stddev + mean).astype(dtype.np_dtype)


def _random_uniform(*, shape: tuple[int, ...], dtype: DType, seed: int, seed2: int, minval: float,
                    maxval: float, state: RuntimeState) -> np.ndarray:
    gen = state.random_generator(seed, seed2)
    return (gen.random(shape) * (maxval - minval) + minval).astype(dtype.np_dtype)


register("random_normal", _random_rule, _random_normal, Fusion.RANDOM, stateful=True, differentiable=False)
register("truncated_normal", _random_rule, _truncated_normal, Fusion.RANDOM, stateful=True,
         differentiable=False)
register("random_uniform", _random_rule, _random_uniform, Fusion.RANDOM, stateful=True, differentiable=False)
