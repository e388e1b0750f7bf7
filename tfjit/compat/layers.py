"""`tf.layers`: dense, conv2d, pooling, dropout, flatten and batch normalization (issue 6).

Each function opens the variable scope TF's layer would (`name` exactly when given, else
`dense`, `dense_1`, ... made unique in the current scope), creates its variables there with
TF's shapes, names and initializers, and builds the layer from the `tf.nn` ops.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

from ..ir.types import DType, bool_
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from . import array_ops, cnn, initializers, layout_ops, math_ops, nn_ops
from .cond_while import cond
from .control_flow import control_dependencies
from .graph_keys import GraphKeys
from .variables import Variable, get_variable, variable_scope

__all__ = ["dense", "conv2d", "max_pooling2d", "average_pooling2d", "dropout", "flatten",
           "batch_normalization"]


# -- shared by tf.layers and slim -----------------------------------------------------------------
@contextlib.contextmanager
def layer_scope(name: Any, default_name: str, reuse: Any = None) -> Iterator[Any]:
    """The variable scope of a layer: `name` as given, or `default_name` made unique (reused as
    it is when `reuse` is set, as TF's layers do)."""
    if name is None and reuse:
        name = default_name
    with variable_scope(name, default_name=default_name, reuse=reuse or None) as scope:
        yield scope


def pair(value: Any, what: str) -> tuple[int, int]:
    """An int or a pair of ints (a kernel size, stride or rate) as a pair."""
    values = [int(value)] * 2 if isinstance(value, int) or not hasattr(value, "__len__") else [int(v) for v in value]
    if len(values) != 2:
        raise ValueError(f"The `{what}` argument must be a tuple of 2 integers. Received: {value}")
    return values[0], values[1]


def channels_last(data_format: str | None) -> bool:
    """True for 'channels_last'/'NHWC' (the default), False for 'channels_first'/'NCHW'."""
    fmt = data_format or "channels_last"
    if fmt not in ("channels_last", "channels_first", "NHWC", "NCHW"):
        raise ValueError(f"The `data_format` argument must be one of 'channels_first', 'channels_last'. "
                         f"Received: {data_format}")
    return fmt in ("channels_last", "NHWC")


def static_or_dynamic(x: Tensor, axis: int) -> Any:
    """x's size along `axis`: an int when known while building, else a scalar tensor."""
    known = x.shape[axis].value
    return known if known is not None else array_ops.shape(x)[axis]


def known_depth(x: Tensor, axis: int, layer: str) -> int:
    depth = x.shape[axis].value if x.shape.ndims is not None else None
    if depth is None:
        raise ValueError(f"{layer}: the last dimension of the inputs should be defined. Found None "
                         f"(inputs have shape {x.shape}).")
    return depth


def float_inputs(inputs: Any, layer: str) -> Tensor:
    x = convert_to_tensor(inputs)
    if not x.dtype.is_floating:
        raise ValueError(f"{layer}: inputs must be floating point, got {x.dtype.name} ({x.name})")
    return x


def matmul_last_axis(x: Tensor, kernel: Any) -> Tensor:
    """x @ kernel over x's last axis; higher-rank x contracts like TF's Dense (tensordot)."""
    if x.shape.ndims == 2:
        return math_ops.matmul(x, kernel)
    return math_ops.tensordot(x, kernel, [[x.shape.ndims - 1], [0]])


def conv_2d(x: Tensor, kernel: Any, strides: tuple[int, int], padding: str, last: bool,
            rates: tuple[int, int]) -> Tensor:
    """`tf.nn.conv2d` with window attributes spelled for the data format."""
    fmt = "NHWC" if last else "NCHW"
    four = (lambda a, b: [1, a, b, 1]) if last else (lambda a, b: [1, 1, a, b])
    return cnn.conv2d(x, kernel, four(*strides), padding.upper(), data_format=fmt, dilations=four(*rates))


def pool_2d(kind: str, x: Tensor, pool_size: Any, strides: Any, padding: str, last: bool) -> Tensor:
    ksize, steps = pair(pool_size, "pool_size"), pair(strides, "strides")
    fmt = "NHWC" if last else "NCHW"
    four = (lambda a, b: [1, a, b, 1]) if last else (lambda a, b: [1, 1, a, b])
    pool = cnn.max_pool if kind == "max" else cnn.avg_pool
    return pool(x, four(*ksize), four(*steps), padding.upper(), data_format=fmt)


def flatten_batch(x: Tensor) -> Tensor:
    """[batch, ...] -> [batch, prod(...)], keeping a batch dim unknown while building."""
    if x.shape.ndims is None or x.shape.ndims < 2:
        raise ValueError(f"Inputs must have a least 2 dimensions, got shape {x.shape}")
    rest = x.shape.as_list()[1:]
    if all(d is not None for d in rest):
        return array_ops.reshape(x, [-1, int(_product(rest))])
    return array_ops.reshape(x, layout_ops.stack([array_ops.shape(x)[0], -1]))


def _product(values: Sequence[int]) -> int:
    total = 1
    for v in values:
        total *= v
    return total


def smart_select(pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """`true_fn()` or `false_fn()` when `pred` is known while building, else `tf.cond`."""
    known = math_ops.constant_value(pred)
    if known is not None:
        return true_fn() if bool(known) else false_fn()
    return cond(convert_to_tensor(pred, dtype=bool_), true_fn, false_fn)


def assign_moving_average(variable: Variable, value: Tensor, decay: Any) -> Tensor:
    """variable -= (variable - value) * (1 - decay), TF's moving average update."""
    with get_default_graph().name_scope("AssignMovingAvg"):
        decay = convert_to_tensor(decay, dtype=variable.dtype)
        return variable.assign_sub((variable.value() - math_ops.cast(value, variable.dtype)) * (1.0 - decay))


def fused_applies(x: Tensor, axis: int, fused: Any) -> bool:
    """TF uses its fused kernel for 4-D inputs normalised along the channel axis (1 or 3)."""
    rank = x.shape.ndims
    can = rank == 4 and axis in (1, 3)
    if fused and not can:
        raise ValueError(f"fused batch norm needs 4-D inputs with axis 1 or 3; got shape {x.shape}, axis {axis}")
    return can if fused is None else bool(fused)


def batch_statistics(x: Tensor, axis: int, gamma: Any, beta: Any, epsilon: float,
                     fused: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise x by its batch statistics: (y, mean, variance), the variance as the moving
    average sees it (Bessel-corrected by the fused kernel, biased otherwise)."""
    depth = x.shape[axis].value
    ones = gamma if gamma is not None else array_ops.ones([depth], x.dtype)
    zeros = beta if beta is not None else array_ops.zeros([depth], x.dtype)
    if fused:
        fmt = "NHWC" if axis == 3 else "NCHW"
        return cnn.fused_batch_norm(x, ones, zeros, epsilon=epsilon, data_format=fmt, is_training=True)
    axes = [i for i in range(x.shape.ndims) if i != axis]
    mean, variance = cnn.moments(x, axes, keep_dims=True)
    y = cnn.batch_normalization(x, mean, variance, _broadcast(beta, x, axis), _broadcast(gamma, x, axis), epsilon)
    return y, array_ops.reshape(mean, [depth]), array_ops.reshape(variance, [depth])


def moving_statistics(x: Tensor, axis: int, gamma: Any, beta: Any, moving_mean: Variable,
                      moving_variance: Variable, epsilon: float, fused: bool) -> Tensor:
    """Normalise x by the moving mean and variance (inference)."""
    if fused:
        depth = x.shape[axis].value
        ones = gamma if gamma is not None else array_ops.ones([depth], x.dtype)
        zeros = beta if beta is not None else array_ops.zeros([depth], x.dtype)
        fmt = "NHWC" if axis == 3 else "NCHW"
        return cnn.fused_batch_norm(x, ones, zeros, moving_mean.value(), moving_variance.value(), epsilon=epsilon,
                                    data_format=fmt, is_training=False)[0]
    mean, variance = (_broadcast(v.value(), x, axis) for v in (moving_mean, moving_variance))
    return cnn.batch_normalization(x, mean, variance, _broadcast(beta, x, axis), _broadcast(gamma, x, axis), epsilon)


def _broadcast(v: Any, x: Tensor, axis: int) -> Any:
    """A per-channel vector shaped to broadcast against x along `axis`."""
    if v is None or axis == x.shape.ndims - 1:
        return v
    return array_ops.reshape(v, [-1] + [1] * (x.shape.ndims - 1 - axis))


def normalize(x: Tensor, axis: int, params: dict[str, Any], training: Any, decay: float, epsilon: float,
              fused: bool, updates_collections: Any) -> Tensor:
    """Batch norm in training or inference mode (training may be a bool tensor); in training the
    moving averages are updated, through `updates_collections` or, when None, in place."""
    gamma, beta = params.get("gamma"), params.get("beta")
    mean_var, var_var = params["moving_mean"], params["moving_variance"]
    known = math_ops.constant_value(training)
    if known is not None and not bool(known):
        return moving_statistics(x, axis, gamma, beta, mean_var, var_var, epsilon, fused)
    y, mean, variance = batch_statistics(x, axis, gamma, beta, epsilon, fused)
    if known is None:  # a training tensor: select the output, and hold the averages when false
        flag = convert_to_tensor(training, dtype=bool_)
        inference = moving_statistics(x, axis, gamma, beta, mean_var, var_var, epsilon, fused)
        y = math_ops.where_v2(flag, y, inference)
        decay = math_ops.where_v2(flag, convert_to_tensor(decay, dtype=x.dtype), convert_to_tensor(1.0, dtype=x.dtype))
    updates = [assign_moving_average(mean_var, mean, decay), assign_moving_average(var_var, variance, decay)]
    if updates_collections is None:
        with control_dependencies(updates):
            return array_ops.identity(y)
    for update in updates:
        for key in ([updates_collections] if isinstance(updates_collections, str) else updates_collections):
            get_default_graph().add_to_collection(key, update)
    return y


def norm_axis(x: Tensor, axis: int) -> int:
    rank = x.shape.ndims
    if rank is None:
        raise ValueError(f"Input has undefined rank: {x.name}")
    if not -rank <= axis < rank:
        raise ValueError(f"Invalid axis {axis} for input of rank {rank} (shape {x.shape})")
    return axis % rank


def activity_loss(outputs: Tensor, regularizer: Any) -> None:
    if regularizer is not None:
        with get_default_graph().name_scope("ActivityRegularizer"):
            loss = regularizer(outputs)
        if loss is not None:
            get_default_graph().add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)


# -- tf.layers ------------------------------------------------------------------------------------
def dense(inputs: Any, units: int, activation: Any = None, use_bias: bool = True, kernel_initializer: Any = None,
          bias_initializer: Any = None, kernel_regularizer: Any = None, bias_regularizer: Any = None,
          activity_regularizer: Any = None, kernel_constraint: Any = None, bias_constraint: Any = None,
          trainable: bool = True, name: str | None = None, reuse: Any = None) -> Tensor:
    """activation(inputs @ kernel + bias) over the last axis; variables `dense/kernel`, `dense/bias`."""
    x = float_inputs(inputs, "dense")
    with layer_scope(name, "dense", reuse):
        depth = known_depth(x, -1, "dense")
        kernel = get_variable("kernel", [depth, int(units)], x.dtype, kernel_initializer, kernel_regularizer,
                              trainable, constraint=kernel_constraint)
        outputs = matmul_last_axis(x, kernel)
        if use_bias:
            bias = get_variable("bias", [int(units)], x.dtype, bias_initializer or initializers.Zeros(),
                                bias_regularizer, trainable, constraint=bias_constraint)
            outputs = nn_ops.bias_add(outputs, bias)
        outputs = activation(outputs) if activation is not None else outputs
        activity_loss(outputs, activity_regularizer)
        return outputs


def conv2d(inputs: Any, filters: int, kernel_size: Any, strides: Any = (1, 1), padding: str = "valid",
           data_format: str = "channels_last", dilation_rate: Any = (1, 1), activation: Any = None,
           use_bias: bool = True, kernel_initializer: Any = None, bias_initializer: Any = None,
           kernel_regularizer: Any = None, bias_regularizer: Any = None, activity_regularizer: Any = None,
           kernel_constraint: Any = None, bias_constraint: Any = None, trainable: bool = True,
           name: str | None = None, reuse: Any = None) -> Tensor:
    """2-D convolution with `conv2d/kernel` [kh, kw, in, filters] and `conv2d/bias`."""
    x = float_inputs(inputs, "conv2d")
    last = channels_last(data_format)
    with layer_scope(name, "conv2d", reuse):
        kh, kw = pair(kernel_size, "kernel_size")
        depth = known_depth(x, -1 if last else 1, "conv2d")
        kernel = get_variable("kernel", [kh, kw, depth, int(filters)], x.dtype, kernel_initializer,
                              kernel_regularizer, trainable, constraint=kernel_constraint)
        outputs = conv_2d(x, kernel, pair(strides, "strides"), padding, last, pair(dilation_rate, "dilation_rate"))
        if use_bias:
            bias = get_variable("bias", [int(filters)], x.dtype, bias_initializer or initializers.Zeros(),
                                bias_regularizer, trainable, constraint=bias_constraint)
            outputs = nn_ops.bias_add(outputs, bias, data_format="NHWC" if last else "NCHW")
        outputs = activation(outputs) if activation is not None else outputs
        activity_loss(outputs, activity_regularizer)
        return outputs


def max_pooling2d(inputs: Any, pool_size: Any, strides: Any, padding: str = "valid",
                  data_format: str = "channels_last", name: str | None = None) -> Tensor:
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(name or "max_pooling2d"):
        return pool_2d("max", x, pool_size, strides, padding, channels_last(data_format))


def average_pooling2d(inputs: Any, pool_size: Any, strides: Any, padding: str = "valid",
                      data_format: str = "channels_last", name: str | None = None) -> Tensor:
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(name or "average_pooling2d"):
        return pool_2d("avg", x, pool_size, strides, padding, channels_last(data_format))


def dropout(inputs: Any, rate: float = 0.5, noise_shape: Any = None, seed: int | None = None,
            training: Any = False, name: str | None = None) -> Tensor:
    """Dropout with rate `rate` when `training` (a bool or a bool tensor), identity otherwise."""
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(name or "dropout"):
        return smart_select(training, lambda: cnn.dropout(x, rate=rate, noise_shape=noise_shape, seed=seed),
                            lambda: array_ops.identity(x))


def flatten(inputs: Any, name: str | None = None, data_format: str = "channels_last") -> Tensor:
    x = convert_to_tensor(inputs)
    with get_default_graph().name_scope(name or "flatten"):
        if not channels_last(data_format) and x.shape.ndims is not None and x.shape.ndims > 2:
            x = layout_ops.transpose(x, [0, *range(2, x.shape.ndims), 1])
        return flatten_batch(x)


def batch_normalization(inputs: Any, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                        center: bool = True, scale: bool = True, beta_initializer: Any = None,
                        gamma_initializer: Any = None, moving_mean_initializer: Any = None,
                        moving_variance_initializer: Any = None, beta_regularizer: Any = None,
                        gamma_regularizer: Any = None, beta_constraint: Any = None, gamma_constraint: Any = None,
                        training: Any = False, trainable: bool = True, name: str | None = None,
                        reuse: Any = None, renorm: bool = False, renorm_clipping: Any = None,
                        renorm_momentum: float = 0.99, fused: Any = None, virtual_batch_size: Any = None,
                        adjustment: Any = None) -> Tensor:
    """Batch norm along `axis` with `gamma`, `beta`, `moving_mean`, `moving_variance`; in training
    (a bool or a bool tensor) the moving averages' updates go to `tf.GraphKeys.UPDATE_OPS`."""
    if renorm or virtual_batch_size is not None or adjustment is not None:
        raise ValueError("batch_normalization: renorm, virtual_batch_size and adjustment are not supported")
    x = float_inputs(inputs, "batch_normalization")
    with layer_scope(name, "batch_normalization", reuse):
        ax = norm_axis(x, axis)
        depth = known_depth(x, ax, "batch_normalization")
        params = _bn_variables(depth, x.dtype, center, scale, trainable, {
            "gamma": (gamma_initializer or initializers.Ones(), gamma_regularizer, gamma_constraint),
            "beta": (beta_initializer or initializers.Zeros(), beta_regularizer, beta_constraint),
            "moving_mean": (moving_mean_initializer or initializers.Zeros(), None, None),
            "moving_variance": (moving_variance_initializer or initializers.Ones(), None, None)})
        return normalize(x, ax, params, training, momentum, epsilon, fused_applies(x, ax, fused),
                         GraphKeys.UPDATE_OPS)


def _bn_variables(depth: int, dtype: DType, center: bool, scale: bool, trainable: bool,
                  specs: dict[str, tuple[Any, Any, Any]]) -> dict[str, Variable]:
    """gamma (if scale), beta (if center) and the non-trainable moving statistics, in TF's order."""
    wanted = [n for n, on in (("gamma", scale), ("beta", center)) if on] + ["moving_mean", "moving_variance"]
    made = {}
    for n in wanted:
        init, reg, constraint = specs[n]
        train = trainable and not n.startswith("moving")
        made[n] = get_variable(n, [depth], dtype, init, reg, train, constraint=constraint)
    return made
