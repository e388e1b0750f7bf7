"""`tf.contrib.slim` (and `tf.contrib.layers`): slim's layers with its variable names and
defaults, and `arg_scope` (issue 6).

`slim.conv2d(net, 32, [3, 3], scope='Conv2d_1x1')` makes `<scope>/Conv2d_1x1/weights` and
`biases` (default scopes `Conv`, `Conv_1`, ...), applies `normalizer_fn` instead of biases when
one is given, then `activation_fn`. Variables also go to `tf.GraphKeys.MODEL_VARIABLES`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

from ..ir.types import DType
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from . import array_ops, cnn, initializers, nn_ops
from .graph_keys import GraphKeys
from .layers import (channels_last, conv_2d, flatten_batch, float_inputs, known_depth, layer_scope,
                     matmul_last_axis, normalize, norm_axis, pair, pool_2d, smart_select, fused_applies)
from .losses import l2_regularizer
from .math_ops import relu
from .variables import Variable, get_variable, variable_scope

__all__ = ["arg_scope", "add_arg_scope", "has_arg_scope", "arg_scoped_arguments", "current_arg_scope",
           "conv2d", "convolution2d", "fully_connected", "max_pool2d", "avg_pool2d", "flatten", "dropout",
           "batch_norm", "model_variable", "variable", "xavier_initializer", "xavier_initializer_conv2d",
           "variance_scaling_initializer", "l1_regularizer", "l2_regularizer", "get_variables",
           "get_model_variables", "get_trainable_variables"]


# -- arg_scope ------------------------------------------------------------------------------------
_ARG_STACK: list[dict[str, dict[str, Any]]] = [{}]


def _key(op: Any) -> str:
    return getattr(op, "_key_op", str(op))


def current_arg_scope() -> dict[str, dict[str, Any]]:
    return _ARG_STACK[-1]


@contextlib.contextmanager
def arg_scope(list_ops_or_scope: Any, **kwargs: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """Default keyword arguments for the listed `add_arg_scope` functions inside the block
    (inner scopes override outer ones; an explicit argument overrides both). Given a dict (a
    scope yielded before), re-enters that scope."""
    if isinstance(list_ops_or_scope, dict):
        if kwargs:
            raise ValueError("When attempting to re-use a scope by suppling a dictionary, kwargs must be empty.")
        scope = dict(list_ops_or_scope)
    else:
        if not isinstance(list_ops_or_scope, (list, tuple)):
            raise TypeError("list_ops_or_scope must either be a list/tuple or reused scope (i.e. dict)")
        scope = dict(current_arg_scope())
        for op in list_ops_or_scope:
            if not has_arg_scope(op):
                raise ValueError(f"{op} is not decorated with @add_arg_scope")
            scope[_key(op)] = {**scope.get(_key(op), {}), **kwargs}
    _ARG_STACK.append(scope)
    try:
        yield scope
    finally:
        _ARG_STACK.pop()


def add_arg_scope(func: Callable[..., Any]) -> Callable[..., Any]:
    """Let `arg_scope` supply default keyword arguments of `func`."""
    @functools.wraps(func)
    def with_defaults(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **{**current_arg_scope().get(_key(with_defaults), {}), **kwargs})

    with_defaults._key_op = _key(func)  # type: ignore[attr-defined]
    return with_defaults


def has_arg_scope(func: Any) -> bool:
    return hasattr(func, "_key_op")


def arg_scoped_arguments(func: Any) -> list[str]:
    import inspect

    return list(inspect.signature(func).parameters)


# -- initializers and regularizers of tf.contrib.layers ---------------------------------------------
def variance_scaling_initializer(factor: float = 2.0, mode: str = "FAN_IN", uniform: bool = False,
                                 seed: int | None = None, dtype: Any = None) -> initializers.VarianceScaling:
    """contrib's variance scaling: variance factor / n; truncated normal draws (stddev
    sqrt(1.3 * factor / n), as contrib does) or uniform on +-sqrt(3 * factor / n)."""
    if mode not in ("FAN_IN", "FAN_OUT", "FAN_AVG"):
        raise TypeError(f"Unknown mode {mode} [FAN_IN, FAN_OUT, FAN_AVG]")
    scale = factor if uniform else 1.3 * factor * 0.87962566103423978 ** 2
    return initializers.VarianceScaling(scale, mode.lower(), "uniform" if uniform else "truncated_normal", seed, dtype)


def xavier_initializer(uniform: bool = True, seed: int | None = None,
                       dtype: Any = None) -> initializers.VarianceScaling:
    """Glorot: variance 1 / fan_avg, uniform by default."""
    return variance_scaling_initializer(1.0, "FAN_AVG", uniform, seed, dtype)


xavier_initializer_conv2d = xavier_initializer


def l1_regularizer(scale: float, scope: str | None = None) -> Callable[[Any], Tensor | None]:
    """weights -> scale * sum(|w|) (None at scale 0)."""
    if isinstance(scale, int):
        raise ValueError(f"scale cannot be an integer: {scale}")
    if scale < 0.0:
        raise ValueError(f"Setting a scale less than 0 on a regularizer: {scale:g}")
    if scale == 0.0:
        return lambda _: None

    def l1(weights: Any) -> Tensor:
        from .math_ops import abs as tf_abs, multiply, reduce_sum

        w = convert_to_tensor(weights)
        with get_default_graph().name_scope(scope or "l1_regularizer") as name:
            return multiply(convert_to_tensor(scale, dtype=w.dtype, name="scale"), reduce_sum(tf_abs(w)), name=name)

    return l1


# -- variables ------------------------------------------------------------------------------------
def _collections(extra: Any, *base: str) -> list[str]:
    names = list(base)
    for c in ([extra] if isinstance(extra, str) else (extra or [])):
        if c not in names:
            names.append(c)
    return names


@add_arg_scope
def variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None, regularizer: Any = None,
             trainable: bool = True, collections: Any = None, caching_device: Any = None, device: Any = None,
             partitioner: Any = None, custom_getter: Any = None, use_resource: Any = None) -> Variable:
    """`tf.get_variable` into GLOBAL_VARIABLES plus `collections`."""
    with get_default_graph().device(device):
        return get_variable(name, shape, dtype, initializer, regularizer, trainable,
                            _collections(collections, GraphKeys.GLOBAL_VARIABLES))


@add_arg_scope
def model_variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None,
                   regularizer: Any = None, trainable: bool = True, collections: Any = None,
                   caching_device: Any = None, device: Any = None, partitioner: Any = None,
                   custom_getter: Any = None, use_resource: Any = None) -> Variable:
    """A variable that is also a model variable (`tf.GraphKeys.MODEL_VARIABLES`)."""
    return variable(name, shape, dtype, initializer, regularizer, trainable,
                    _collections(collections, GraphKeys.MODEL_VARIABLES), device=device)


def get_variables(scope: str | None = None, suffix: str | None = None,
                  collection: str = GraphKeys.GLOBAL_VARIABLES) -> list[Variable]:
    found = get_default_graph().get_collection(collection, scope)
    return [v for v in found if suffix is None or v.name.split(":")[0].endswith(suffix)]


def get_model_variables(scope: str | None = None, suffix: str | None = None) -> list[Variable]:
    return get_variables(scope, suffix, GraphKeys.MODEL_VARIABLES)


def get_trainable_variables(scope: str | None = None, suffix: str | None = None) -> list[Variable]:
    return get_variables(scope, suffix, GraphKeys.TRAINABLE_VARIABLES)


def _collect(collections: Any, outputs: Tensor) -> Tensor:
    """slim's `collect_named_outputs`: add the layer's output to `outputs_collections`."""
    for key in ([collections] if isinstance(collections, str) else (collections or [])):
        get_default_graph().add_to_collection(key, outputs)
    return outputs


def _weights_and_biases(shape: list[int], num_outputs: int, dtype: DType, weights_initializer: Any,
                        weights_regularizer: Any, biases_initializer: Any, biases_regularizer: Any,
                        use_bias: bool, variables_collections: Any, trainable: bool) -> tuple[Variable, Any]:
    weights = model_variable("weights", shape, dtype, weights_initializer, weights_regularizer, trainable,
                             _var_collections(variables_collections, "weights"))
    if not use_bias:
        return weights, None
    biases = model_variable("biases", [num_outputs], dtype, biases_initializer, biases_regularizer, trainable,
                            _var_collections(variables_collections, "biases"))
    return weights, biases


def _var_collections(collections: Any, name: str) -> Any:
    """slim's `variables_collections` is a list for every variable or a dict by name."""
    return collections.get(name) if isinstance(collections, dict) else collections


def _finish(outputs: Tensor, normalizer_fn: Any, normalizer_params: Any, activation_fn: Any) -> Tensor:
    if normalizer_fn is not None:
        outputs = normalizer_fn(outputs, **(normalizer_params or {}))
    return activation_fn(outputs) if activation_fn is not None else outputs


# -- layers ---------------------------------------------------------------------------------------
@add_arg_scope
def conv2d(inputs: Any, num_outputs: Any, kernel_size: Any, stride: Any = 1, padding: str = "SAME",
           data_format: str | None = None, rate: Any = 1, activation_fn: Any = relu, normalizer_fn: Any = None,
           normalizer_params: Any = None, weights_initializer: Any = None, weights_regularizer: Any = None,
           biases_initializer: Any = initializers.Zeros(), biases_regularizer: Any = None, reuse: Any = None,
           variables_collections: Any = None, outputs_collections: Any = None, trainable: bool = True,
           scope: Any = None) -> Tensor:
    """Convolution in scope `scope` (default `Conv`): weights [kh, kw, in, num_outputs], then
    biases or `normalizer_fn`, then `activation_fn` (relu by default)."""
    x = float_inputs(inputs, "conv2d")
    if x.shape.ndims not in (None, 4):
        raise ValueError(f"Convolution expects input with rank 4, got shape {x.shape}")
    last = channels_last(data_format)
    n_out = int(num_outputs)
    with layer_scope(scope, "Conv", reuse):
        kh, kw = pair(kernel_size, "kernel_size")
        depth = known_depth(x, -1 if last else 1, "conv2d")
        use_bias = normalizer_fn is None and biases_initializer is not None
        weights, biases = _weights_and_biases([kh, kw, depth, n_out], n_out, x.dtype,
                                              weights_initializer or xavier_initializer(), weights_regularizer,
                                              biases_initializer, biases_regularizer, use_bias,
                                              variables_collections, trainable)
        outputs = conv_2d(x, weights, pair(stride, "stride"), padding, last, pair(rate, "rate"))
        if biases is not None:
            outputs = nn_ops.bias_add(outputs, biases, data_format="NHWC" if last else "NCHW")
        outputs = _finish(outputs, normalizer_fn, normalizer_params, activation_fn)
        return _collect(outputs_collections, outputs)


convolution2d = conv2d


@add_arg_scope
def fully_connected(inputs: Any, num_outputs: Any, activation_fn: Any = relu, normalizer_fn: Any = None,
                    normalizer_params: Any = None, weights_initializer: Any = None, weights_regularizer: Any = None,
                    biases_initializer: Any = initializers.Zeros(), biases_regularizer: Any = None,
                    reuse: Any = None, variables_collections: Any = None, outputs_collections: Any = None,
                    trainable: bool = True, scope: Any = None) -> Tensor:
    """inputs @ weights (+ biases, or normalizer_fn), then activation_fn; scope `fully_connected`."""
    x = float_inputs(inputs, "fully_connected")
    n_out = int(num_outputs)
    with layer_scope(scope, "fully_connected", reuse):
        depth = known_depth(x, -1, "fully_connected")
        use_bias = normalizer_fn is None and biases_initializer is not None
        weights, biases = _weights_and_biases([depth, n_out], n_out, x.dtype,
                                              weights_initializer or xavier_initializer(), weights_regularizer,
                                              biases_initializer, biases_regularizer, use_bias,
                                              variables_collections, trainable)
        outputs = matmul_last_axis(x, weights)
        if biases is not None:
            outputs = nn_ops.bias_add(outputs, biases)
        return _collect(outputs_collections, _finish(outputs, normalizer_fn, normalizer_params, activation_fn))


@add_arg_scope
def max_pool2d(inputs: Any, kernel_size: Any, stride: Any = 2, padding: str = "VALID",
               data_format: str = "NHWC", outputs_collections: Any = None, scope: Any = None) -> Tensor:
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(scope or "MaxPool2D"):
        outputs = pool_2d("max", x, kernel_size, stride, padding, channels_last(data_format))
        return _collect(outputs_collections, outputs)


@add_arg_scope
def avg_pool2d(inputs: Any, kernel_size: Any, stride: Any = 2, padding: str = "VALID",
               data_format: str = "NHWC", outputs_collections: Any = None, scope: Any = None) -> Tensor:
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(scope or "AvgPool2D"):
        outputs = pool_2d("avg", x, kernel_size, stride, padding, channels_last(data_format))
        return _collect(outputs_collections, outputs)


@add_arg_scope
def flatten(inputs: Any, outputs_collections: Any = None, scope: Any = None) -> Tensor:
    """[batch, ...] -> [batch, k]."""
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(scope or "Flatten"):
        return _collect(outputs_collections, flatten_batch(x))


@add_arg_scope
def dropout(inputs: Any, keep_prob: float = 0.5, noise_shape: Any = None, is_training: Any = True,
            outputs_collections: Any = None, scope: Any = None, seed: int | None = None) -> Tensor:
    """`tf.nn.dropout` while `is_training` (a bool or a bool tensor), identity otherwise."""
    x = convert_to_tensor(inputs)
    with variable_scope(scope, default_name="Dropout"):
        outputs = smart_select(is_training,
                               lambda: cnn.dropout(x, rate=1 - keep_prob, noise_shape=noise_shape, seed=seed),
                               lambda: array_ops.identity(x))
        return _collect(outputs_collections, outputs)


@add_arg_scope
def batch_norm(inputs: Any, decay: float = 0.999, center: bool = True, scale: bool = False, epsilon: float = 0.001,
               activation_fn: Any = None, param_initializers: Any = None, param_regularizers: Any = None,
               updates_collections: Any = GraphKeys.UPDATE_OPS, is_training: Any = True, reuse: Any = None,
               variables_collections: Any = None, outputs_collections: Any = None, trainable: bool = True,
               batch_weights: Any = None, fused: Any = None, data_format: str = "NHWC",
               zero_debias_moving_mean: bool = False, scope: Any = None, renorm: bool = False,
               renorm_clipping: Any = None, renorm_decay: float = 0.99, adjustment: Any = None) -> Tensor:
    """Batch norm over all axes but the channel one, in scope `BatchNorm`: `beta` (center),
    `gamma` (scale, off by default), `moving_mean`, `moving_variance`. While training, the
    moving averages' updates go to `updates_collections` (or run in place when it is None)."""
    if batch_weights is not None or zero_debias_moving_mean or renorm or adjustment is not None:
        raise ValueError("batch_norm: batch_weights, zero_debias_moving_mean, renorm and adjustment are not supported")
    x = float_inputs(inputs, "batch_norm")
    with layer_scope(scope, "BatchNorm", reuse):
        axis = norm_axis(x, 1 if data_format == "NCHW" and (x.shape.ndims or 0) > 2 else -1)
        depth = known_depth(x, axis, "batch_norm")
        params = _bn_params(depth, x.dtype, center, scale, trainable, param_initializers or {},
                            param_regularizers or {}, variables_collections)
        outputs = normalize(x, axis, params, is_training, decay, epsilon, fused_applies(x, axis, fused),
                            updates_collections)
        outputs = activation_fn(outputs) if activation_fn is not None else outputs
        return _collect(outputs_collections, outputs)


def _bn_params(depth: int, dtype: DType, center: bool, scale: bool, trainable: bool, inits: dict[str, Any],
               regs: dict[str, Any], collections: Any) -> dict[str, Variable]:
    """beta, gamma and the (never trainable) moving statistics, as model variables in slim's order."""
    defaults = {"beta": initializers.Zeros(), "gamma": initializers.Ones(),
                "moving_mean": initializers.Zeros(), "moving_variance": initializers.Ones()}
    wanted = [n for n, on in (("beta", center), ("gamma", scale)) if on] + ["moving_mean", "moving_variance"]
    made = {}
    for name in wanted:
        moving = name.startswith("moving")
        made[name] = model_variable(name, [depth], dtype, inits.get(name, defaults[name]),
                                    None if moving else regs.get(name), trainable and not moving,
                                    _var_collections(collections, name))
    return made

