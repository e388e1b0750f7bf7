"""`tf.nn` convolution, pooling, dropout and normalisation ops (issue 6; exported into tf.nn).

Argument names, defaults, default op names and error cases follow TF 1.x. Convolutions and
poolings are registry ops (tfjit/ops/conv.py); the normalisations are compositions of
existing ops, as TF's Python writes them, so their gradients come from the parts.
"""
from __future__ import annotations

import numbers
from collections.abc import Sized
from typing import Any

import numpy as np

from ..ir.types import Dim, float16, float32
from ..trace.tensor import Tensor, convert_to_tensor
from .array_ops import reshape, shape, size, stop_gradient
from .layout_ops import expand_dims, int_operand, squeeze
from .math_ops import (cast, constant_value, emit1, floor, maximum, multiply, pow, reduce_mean, reduce_sum,
                       rsqrt, square, squared_difference, tensordot)
from .random_ops import get_seed, random_uniform

__all__ = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter", "conv2d_transpose",
           "depthwise_conv2d", "depthwise_conv2d_native", "depthwise_conv2d_native_backprop_input",
           "depthwise_conv2d_native_backprop_filter", "max_pool", "avg_pool", "max_pool2d", "avg_pool2d",
           "max_pool_v2", "avg_pool_v2", "pool", "dropout", "l2_normalize", "moments", "batch_normalization",
           "fused_batch_norm", "local_response_normalization", "lrn"]

WINDOW_ATTRS = ("strides", "padding", "explicit_paddings", "data_format", "dilations")
POOL_ATTRS = ("ksize", "strides", "padding", "data_format", "dilations")
CONV, DEPTHWISE = "conv2d", "depthwise_conv2d_native"


# -- argument normalisation (TF's `_get_sequence` and `_convert_padding`) --------------------
def _get_sequence(value: Any, n: int, channel_index: int, name: str) -> tuple[int, ...]:
    """An int or a list of 1, n or n + 2 ints as the n + 2 entries of a window attribute."""
    if value is None:
        value = [1]
    elif not isinstance(value, Sized):
        value = [value]
    values = [int(v) for v in value]
    if len(values) == n + 2:
        return tuple(values)
    if len(values) == 1:
        values = values * n
    elif len(values) != n:
        raise ValueError(f"{name} should be of length 1, {n} or {n + 2} but was {len(values)}")
    return tuple([1, 1] + values if channel_index == 1 else [1] + values + [1])


def _convert_padding(padding: Any) -> tuple[Any, tuple[int, ...]]:
    """'SAME'/'VALID' as they are; a list of 4 [before, after] pairs as EXPLICIT padding."""
    if padding == "EXPLICIT":
        raise ValueError('"EXPLICIT" is not a valid value for the padding parameter. To use explicit '
                         "padding, the padding parameter must be a list.")
    if not isinstance(padding, (list, tuple)):
        return padding, ()
    flat: list[int] = []
    for i, pair in enumerate(padding):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError("When padding is a list, each element of padding must be a list/tuple of size 2. "
                             f"Element with index {i} of padding is {pair!r}")
        flat.extend(int(p) for p in pair)
    if len(padding) != 4:
        raise ValueError(f"When padding is a list, it must be of size 4. Got padding of size: {len(padding)}")
    return "EXPLICIT", tuple(flat)


def _channel_index(data_format: str | None) -> int:
    return 1 if (data_format or "NHWC").startswith("NC") else 3


def _window_attrs(strides: Any, padding: Any, data_format: str | None, dilations: Any) -> dict[str, Any]:
    fmt = data_format or "NHWC"
    c = _channel_index(fmt)
    pad, explicit = _convert_padding(padding)
    return {"strides": _get_sequence(strides, 2, c, "strides"), "padding": pad, "explicit_paddings": explicit,
            "data_format": fmt, "dilations": _get_sequence(dilations, 2, c, "dilations")}


def _sizes(value: Any, what: str) -> tuple[tuple[Dim, ...], list[Tensor]]:
    """A 4-vector of sizes: its dims known while building and, unless all are, the tensor."""
    entries, dynamic = int_operand(value, what)
    if entries.shape != (4,):
        raise ValueError(f"{what} must have shape (4,), got {list(entries.shape)}")
    static = tuple(e if isinstance(e, int) else None for e in entries.tolist())
    return static, ([] if dynamic is None else [dynamic])


def shape_operand(t: Tensor) -> Any:
    """The 4-D `t`'s shape as a sizes argument: the dims when all are known, else the run-time
    shape (as a 4-vector even when the rank is unknown while building)."""
    if t.type.is_fully_defined:
        return t.type.shape
    return shape(t) if t.type.rank is not None else reshape(shape(t), [4])


# -- convolutions: the op builders the API and the gradient rules share -----------------------
def conv(kind: str, x: Tensor, f: Tensor, attrs: dict[str, Any], name: str | None = None) -> Tensor:
    return emit1(kind, [x, f], attrs, name or ("Conv2D" if kind == CONV else "DepthwiseConv2dNative"))


def backprop_input(kind: str, input_sizes: Any, f: Tensor, dy: Tensor, attrs: dict[str, Any],
                   name: str | None = None) -> Tensor:
    static, dynamic = _sizes(input_sizes, "input_sizes")
    default = "Conv2DBackpropInput" if kind == CONV else "DepthwiseConv2dNativeBackpropInput"
    return emit1(f"{kind}_backprop_input", [f, dy, *dynamic], {**attrs, "input_sizes": static}, name or default)


def backprop_filter(kind: str, x: Tensor, filter_sizes: Any, dy: Tensor, attrs: dict[str, Any],
                    name: str | None = None) -> Tensor:
    static, dynamic = _sizes(filter_sizes, "filter_sizes")
    default = "Conv2DBackpropFilter" if kind == CONV else "DepthwiseConv2dNativeBackpropFilter"
    return emit1(f"{kind}_backprop_filter", [x, dy, *dynamic], {**attrs, "filter_sizes": static}, name or default)


def _pick(new: Any, new_name: str, old: Any, old_name: str) -> Any:
    """TF's deprecated_argument_lookup: one of two names for the same argument."""
    if new is not None and old is not None:
        raise ValueError(f"Cannot specify both '{new_name}' and '{old_name}'")
    return new if new is not None else old


def _operands(x: Any, f: Any) -> tuple[Tensor, Tensor]:
    a = convert_to_tensor(x)
    return a, convert_to_tensor(f, dtype=a.dtype) if not isinstance(f, Tensor) else f


def conv2d(input: Any, filter: Any = None, strides: Any = None, padding: Any = None, use_cudnn_on_gpu: bool = True,
           data_format: str = "NHWC", dilations: Any = (1, 1, 1, 1), name: str | None = None,
           filters: Any = None) -> Tensor:
    """2-D convolution (cross-correlation) of NHWC/NCHW `input` with an HWIO filter."""
    x, f = _operands(input, _pick(filters, "filters", filter, "filter"))
    return conv(CONV, x, f, _window_attrs(strides, padding, data_format, dilations), name)


def conv2d_backprop_input(input_sizes: Any, filter: Any = None, out_backprop: Any = None, strides: Any = None,
                          padding: Any = None, use_cudnn_on_gpu: bool = True, data_format: str = "NHWC",
                          dilations: Any = (1, 1, 1, 1), name: str | None = None, filters: Any = None) -> Tensor:
    """The gradient of conv2d with respect to its input, of shape `input_sizes`."""
    dy, f = _operands(out_backprop, _pick(filters, "filters", filter, "filter"))
    return backprop_input(CONV, input_sizes, f, dy, _window_attrs(strides, padding, data_format, dilations), name)


def conv2d_backprop_filter(input: Any, filter_sizes: Any, out_backprop: Any, strides: Any, padding: Any,
                           use_cudnn_on_gpu: bool = True, data_format: str = "NHWC",
                           dilations: Any = (1, 1, 1, 1), name: str | None = None) -> Tensor:
    """The gradient of conv2d with respect to its filter, of shape `filter_sizes`."""
    x, dy = _operands(input, out_backprop)
    return backprop_filter(CONV, x, filter_sizes, dy, _window_attrs(strides, padding, data_format, dilations), name)


def conv2d_transpose(value: Any = None, filter: Any = None, output_shape: Any = None, strides: Any = None,
                     padding: str = "SAME", data_format: str = "NHWC", name: str | None = None, input: Any = None,
                     filters: Any = None, dilations: Any = None) -> Tensor:
    """The transpose of conv2d (its input gradient): `value` [.., in_c] to `output_shape` [.., out_c]
    through a filter [h, w, out_c, in_c]."""
    if data_format not in ("NCHW", "NHWC"):
        raise ValueError("data_format has to be either NCHW or NHWC.")
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding must be either VALID or SAME: {padding}")
    dy, f = _operands(_pick(input, "input", value, "value"), _pick(filters, "filters", filter, "filter"))
    axis = _channel_index(data_format)
    fdims = f.type.shape or (None,) * 4
    in_c = dy.type.shape[axis] if dy.type.shape is not None else None
    if not _compatible(in_c, fdims[3]):
        raise ValueError(f"input channels does not match filter's input channels, {in_c} != {fdims[3]}")
    static, _ = _sizes(output_shape, "output_shape")
    if not _compatible(static[axis], fdims[2]):
        raise ValueError(f"output_shape does not match filter's output channels, {static[axis]} != {fdims[2]}")
    with dy.graph.name_scope(name or "conv2d_transpose") as scope:
        attrs = _window_attrs(strides, padding, data_format, dilations)
        return backprop_input(CONV, output_shape, f, dy, attrs, scope)


def _compatible(a: Any, b: Any) -> bool:
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def depthwise_conv2d_native(input: Any, filter: Any, strides: Any, padding: Any, data_format: str = "NHWC",
                            dilations: Any = (1, 1, 1, 1), name: str | None = None) -> Tensor:
    """Each input channel convolved with its own `channel_multiplier` filters [h, w, in_c, mult]."""
    x, f = _operands(input, filter)
    return conv(DEPTHWISE, x, f, _window_attrs(strides, padding, data_format, dilations), name)


def depthwise_conv2d_native_backprop_input(input_sizes: Any, filter: Any, out_backprop: Any, strides: Any,
                                           padding: Any, data_format: str = "NHWC", dilations: Any = (1, 1, 1, 1),
                                           name: str | None = None) -> Tensor:
    dy, f = _operands(out_backprop, filter)
    attrs = _window_attrs(strides, padding, data_format, dilations)
    return backprop_input(DEPTHWISE, input_sizes, f, dy, attrs, name)


def depthwise_conv2d_native_backprop_filter(input: Any, filter_sizes: Any, out_backprop: Any, strides: Any,
                                            padding: Any, data_format: str = "NHWC", dilations: Any = (1, 1, 1, 1),
                                            name: str | None = None) -> Tensor:
    x, dy = _operands(input, out_backprop)
    attrs = _window_attrs(strides, padding, data_format, dilations)
    return backprop_filter(DEPTHWISE, x, filter_sizes, dy, attrs, name)


def depthwise_conv2d(input: Any, filter: Any, strides: Any, padding: Any, rate: Any = None, name: str | None = None,
                     data_format: str | None = None, dilations: Any = None) -> Tensor:
    """TF1's depthwise convolution; `rate` [rh, rw] dilates the filter (then strides must be 1)."""
    rate = _pick(dilations, "dilations", rate, "rate")
    rates = [1, 1] if rate is None else [int(r) for r in np.reshape(rate, -1)]
    if len(rates) != 2 or min(rates) < 1:
        raise ValueError(f"rate must be 2 positive ints, got {rate!r}")
    attrs = _window_attrs(strides, padding, data_format, rates)
    if max(rates) > 1 and max(attrs["strides"]) > 1:
        raise ValueError("strides > 1 not supported in conjunction with dilation_rate > 1")
    x, f = _operands(input, filter)
    with x.graph.name_scope(name or "depthwise") as scope:
        return conv(DEPTHWISE, x, f, attrs, scope)


# -- pooling ---------------------------------------------------------------------------------
def _pool_attrs(ksize: Any, strides: Any, padding: Any, data_format: str | None) -> dict[str, Any]:
    fmt = data_format or "NHWC"
    c = _channel_index(fmt)
    k = _get_sequence(ksize, 2, c, "ksize")
    if 0 in k:
        raise ValueError("ksize cannot be zero.")
    return {"ksize": k, "strides": _get_sequence(strides, 2, c, "strides"), "padding": padding,
            "data_format": fmt, "dilations": (1, 1, 1, 1)}


def max_pool(value: Any, ksize: Any, strides: Any, padding: Any, data_format: str = "NHWC", name: str | None = None,
             input: Any = None) -> Tensor:
    """The max of each window (padding never wins)."""
    x = convert_to_tensor(_pick(input, "input", value, "value"))
    return emit1("max_pool", [x], _pool_attrs(ksize, strides, padding, data_format), name or "MaxPool")


def avg_pool(value: Any, ksize: Any, strides: Any, padding: Any, data_format: str = "NHWC", name: str | None = None,
             input: Any = None) -> Tensor:
    """The mean of each window's real entries: SAME padding is not counted."""
    x = convert_to_tensor(_pick(input, "input", value, "value"))
    return emit1("avg_pool", [x], _pool_attrs(ksize, strides, padding, data_format), name or "AvgPool")


def max_pool2d(input: Any, ksize: Any, strides: Any, padding: Any, data_format: str = "NHWC",
               name: str | None = None) -> Tensor:
    return max_pool(input, ksize, strides, padding, data_format, name)


def avg_pool2d(input: Any, ksize: Any, strides: Any, padding: Any, data_format: str = "NHWC",
               name: str | None = None) -> Tensor:
    return avg_pool(input, ksize, strides, padding, data_format, name)


def max_pool_v2(input: Any, ksize: Any, strides: Any, padding: Any, data_format: str | None = None,
                name: str | None = None) -> Tensor:
    return max_pool(input, ksize, strides, padding, data_format or "NHWC", name)


def avg_pool_v2(input: Any, ksize: Any, strides: Any, padding: Any, data_format: str | None = None,
                name: str | None = None) -> Tensor:
    return avg_pool(input, ksize, strides, padding, data_format or "NHWC", name)


def max_pool_grad(x: Tensor, y: Tensor, dy: Tensor, attrs: dict[str, Any]) -> Tensor:
    """TF's MaxPoolGrad: dy routed to each window's first maximum of x (y = max_pool(x))."""
    return emit1("max_pool_grad", [x, y, dy], attrs, "MaxPoolGrad")


def max_pool_grad_grad(x: Tensor, y: Tensor, g: Tensor, attrs: dict[str, Any]) -> Tensor:
    """TF's MaxPoolGradGrad: g (shaped like x) read at each window's first maximum."""
    return emit1("max_pool_grad_grad", [x, y, g], attrs, "MaxPoolGradGrad")


def avg_pool_grad(input_sizes: Any, dy: Tensor, attrs: dict[str, Any]) -> Tensor:
    """TF's AvgPoolGrad: each window's dy shared among its real entries."""
    static, dynamic = _sizes(input_sizes, "orig_input_shape")
    return emit1("avg_pool_grad", [dy, *dynamic], {**attrs, "input_sizes": static}, "AvgPoolGrad")


def _strides_and_rates(n: int, strides: Any, dilation_rate: Any) -> tuple[list[int], list[int]]:
    """TF's `_get_strides_and_dilation_rate`: one positive int per spatial dim each."""
    rates = [1] * n if dilation_rate is None else [int(r) for r in dilation_rate]
    steps = [1] * n if strides is None else [int(s) for s in strides]
    for what, values in (("dilation_rate", rates), ("strides", steps)):
        if len(values) != n:
            raise ValueError(f"len({what})={len(values)} but should be {n}")
        if min(values) < 1:
            raise ValueError(f"all values of {what} must be positive")
    if max(steps) > 1 and max(rates) > 1:
        raise ValueError("strides > 1 not supported in conjunction with dilation_rate > 1")
    return steps, rates


def pool(input: Any, window_shape: Any, pooling_type: str, padding: str, dilation_rate: Any = None,
         strides: Any = None, name: str | None = None, data_format: str | None = None,
         dilations: Any = None) -> Tensor:
    """N-D (N = 1 or 2) max or average pooling with optional dilation, as TF1's `tf.nn.pool`."""
    window = [int(w) for w in window_shape]
    n = len(window)
    if not 1 <= n <= 3:
        raise ValueError("It is required that 1 <= num_spatial_dims <= 3.")
    steps, rates = _strides_and_rates(n, strides, _pick(dilations, "dilations", dilation_rate, "dilation_rate"))
    if padding == "SAME" and max(rates) > 1:
        raise ValueError("pooling with SAME padding is not implemented for dilation_rate > 1")
    if any(s > w for s, w in zip(steps, window)):
        raise ValueError("strides > window_shape not supported due to inconsistency between CPU and GPU "
                         "implementations")
    if pooling_type not in ("MAX", "AVG") or n == 3:
        raise ValueError(f"{n}-D {pooling_type} pooling is not supported.")
    x = convert_to_tensor(input)
    channels_first = data_format is not None and data_format.startswith("NC")
    if x.type.rank is not None and x.type.rank != n + 2:
        raise ValueError(f"Shape {x.shape} must have rank {n + 2}")
    with x.graph.name_scope(name or f"{pooling_type.lower()}_pool") as scope:
        return _pool_nd(x, window, steps, rates, pooling_type, padding, channels_first, data_format, scope)


def _pool_nd(x: Tensor, window: list[int], steps: list[int], rates: list[int], pooling_type: str, padding: str,
             channels_first: bool, data_format: str | None, scope: str) -> Tensor:
    """The 2-D pooling op; a 1-D pooling is one over a height-1 image."""
    one_d = len(window) == 1
    if one_d:
        if data_format not in (None, "NWC", "NCW"):
            raise ValueError('data_format must be either "NWC" or "NCW".')
        window, steps, rates = [1] + window, [1] + steps, [1] + rates
        x = expand_dims(x, 2 if channels_first else 1)
    quad = (lambda v: (1, 1, *v)) if channels_first else (lambda v: (1, *v, 1))
    attrs = {"ksize": quad(window), "strides": quad(steps), "padding": padding,
             "data_format": "NCHW" if channels_first else "NHWC", "dilations": quad(rates)}
    op = "max_pool" if pooling_type == "MAX" else "avg_pool"
    if not one_d:
        return emit1(op, [x], attrs, scope)
    return squeeze(emit1(op, [x], attrs), [2 if channels_first else 1], name=scope)


# -- dropout ---------------------------------------------------------------------------------
def _keep_probability(keep_prob: Any, rate: Any, dtype: Any) -> Tensor:
    """keep_prob (TF1) or 1 - rate (TF2's name), checked as TF checks Python numbers."""
    if keep_prob is not None and rate is not None:
        raise ValueError("Cannot specify both 'rate' and 'keep_prob'")
    if keep_prob is None and rate is None:
        raise ValueError("You must provide a rate to dropout.")
    if isinstance(keep_prob, numbers.Real) and not 0 < keep_prob <= 1:
        raise ValueError(f"keep_prob must be a scalar tensor or a float in the range (0, 1], got {keep_prob:g}")
    if isinstance(rate, numbers.Real) and not 0 <= rate < 1:
        raise ValueError(f"rate must be a scalar tensor or a float in the range [0, 1), got {rate:g}")
    if keep_prob is not None:
        keep = convert_to_tensor(keep_prob, dtype=dtype, name="keep_prob")
    else:
        keep = 1 - convert_to_tensor(rate, dtype=dtype, name="rate")
    if keep.type.rank not in (None, 0):
        raise ValueError(f"keep_prob must be a scalar, got shape {keep.shape}")
    return keep


def _noise_shape(x: Tensor, noise_shape: Any) -> tuple[tuple[Dim, ...], Tensor | None]:
    """TF's `_get_noise_shape`: x's shape by default; unknown entries of a given shape of x's
    rank are taken from x. Returns the dims known while building and, if needed, the tensor."""
    if noise_shape is None:
        return (x.type.shape, None) if x.type.is_fully_defined else (x.type.shape or (), shape(x))
    listed = not isinstance(noise_shape, Tensor) and not any(isinstance(d, Tensor) for d in noise_shape)
    if listed:
        noise_shape = [-1 if d is None else d for d in noise_shape]
    entries, dynamic = int_operand(noise_shape, "noise_shape")
    dims = [d if isinstance(d, int) and d >= 0 else None for d in entries.reshape(-1).tolist()]
    if x.type.shape is not None and len(dims) == len(x.type.shape):
        dims = [xd if d is None and isinstance(xd, int) else d for d, xd in zip(dims, x.type.shape)]
    if all(isinstance(d, int) for d in dims):
        return tuple(dims), None
    if listed:
        raise ValueError(f"noise_shape {list(noise_shape)} must be fully known (x has shape {x.shape})")
    return tuple(dims), dynamic


def _uniform(x: Tensor, noise_shape: Any, seed: int | None) -> Tensor:
    """random_uniform of the noise shape; one known only at run time goes through uniform_noise,
    which draws the same numbers for the same seeds and shape."""
    static, dynamic = _noise_shape(x, noise_shape)
    if dynamic is None:
        return random_uniform(static, dtype=x.dtype, seed=seed)
    s1, s2 = get_seed(seed)
    attrs = {"shape": static, "dtype": x.dtype, "seed": s1, "seed2": s2}
    return emit1("uniform_noise", [dynamic], attrs, "random_uniform")


def dropout(x: Any, keep_prob: Any = None, noise_shape: Any = None, seed: int | None = None, name: str | None = None,
            rate: Any = None) -> Tensor:
    """x / keep_prob where floor(keep_prob + uniform) is 1, else 0; keep_prob 1 returns x."""
    x = convert_to_tensor(x, name="x")
    if not x.dtype.is_floating:
        raise ValueError(f"x has to be a floating point tensor since it's going to be scaled. "
                         f"Got a {x.dtype.name} tensor instead.")
    with x.graph.name_scope(name or "dropout") as scope:
        keep = _keep_probability(keep_prob, rate, x.dtype)
        known = constant_value(keep)
        if known is not None and float(known) == 1.0:
            return x
        binary = floor(keep + _uniform(x, noise_shape, seed))
        out = multiply(x / keep, binary, name=scope)
        out.set_shape(x.shape)  # a placeholder keep_prob may be of unknown rank
        return out


# -- normalisation ---------------------------------------------------------------------------
def l2_normalize(x: Any, axis: Any = None, epsilon: float = 1e-12, name: str | None = None, dim: Any = None) -> Tensor:
    """x / sqrt(max(sum(x**2, axis), epsilon)); `dim` is TF1's old name of `axis`."""
    axis = _pick(axis, "axis", dim, "dim")
    x = convert_to_tensor(x, name="x")
    with x.graph.name_scope(name or "l2_normalize") as scope:
        square_sum = reduce_sum(square(x), axis, keepdims=True)
        inv_norm = rsqrt(maximum(square_sum, epsilon))
        return multiply(x, inv_norm, name=scope)


def moments(x: Any, axes: Any, shift: Any = None, name: str | None = None, keep_dims: Any = None,
            keepdims: Any = None) -> tuple[Tensor, Tensor]:
    """Mean and (biased) variance over `axes`; float16 is computed in float32, as TF does."""
    keep = bool(_pick(keepdims, "keepdims", keep_dims, "keep_dims"))
    x = convert_to_tensor(x)
    with x.graph.name_scope(name or "moments"):
        y = cast(x, float32) if x.dtype == float16 else x
        mean = reduce_mean(y, axes, keepdims=True, name="mean")
        variance = reduce_mean(squared_difference(y, stop_gradient(mean)), axes, keepdims=True, name="variance")
        if not keep:
            mean, variance = squeeze(mean, axes, name="Squeeze"), squeeze(variance, axes, name="Squeeze_1")
        if x.dtype == float16:
            mean, variance = cast(mean, float16), cast(variance, float16)
        return mean, variance


def batch_normalization(x: Any, mean: Any, variance: Any, offset: Any, scale: Any, variance_epsilon: float,
                        name: str | None = None) -> Tensor:
    """(x - mean) * scale / sqrt(variance + epsilon) + offset, in TF's operation order."""
    x = convert_to_tensor(x)
    with x.graph.name_scope(name or "batchnorm"):
        inv = rsqrt(convert_to_tensor(variance) + variance_epsilon)
        if scale is not None:
            inv = inv * scale
        shift = offset - mean * inv if offset is not None else -convert_to_tensor(mean) * inv
        return x * cast(inv, x.dtype) + cast(shift, x.dtype)


def _per_channel(v: Tensor, data_format: str) -> Tensor:
    """A [C] vector shaped to broadcast along the channel dim of a 4-D tensor."""
    return reshape(v, [-1, 1, 1]) if data_format == "NCHW" else v


def _bessel(x: Tensor, mean: Tensor) -> Tensor:
    """n / (n - 1) for n values per channel (1 when n is 1), as TF's kernel corrects the variance."""
    n = cast(size(x), x.dtype) / cast(size(mean), x.dtype)
    return n / maximum(n - 1, 1.0)


def fused_batch_norm(x: Any, scale: Any, offset: Any, mean: Any = None, variance: Any = None, epsilon: float = 0.001,
                     data_format: str = "NHWC", is_training: bool = True,
                     name: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm of a 4-D x: (y, batch_mean, batch_var) with the batch's statistics in training
    (variance Bessel-corrected, as TF returns it) or the given ones in inference."""
    x = convert_to_tensor(x, name="input")
    if x.type.rank not in (None, 4):
        raise ValueError(f"fused_batch_norm: x must be 4-D, got shape {x.shape}")
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"data_format must be NHWC or NCHW, got {data_format!r}")
    if not is_training and (mean is None or variance is None):
        raise ValueError("Both 'mean' and 'variance' must be a 1D tensor when is_training is False.")
    epsilon = max(epsilon, 1.001e-5)  # TF's smallest epsilon for cuDNN
    with x.graph.name_scope(name or "FusedBatchNorm"):
        y = cast(x, float32) if x.dtype == float16 else x
        scale, offset = (_per_channel(convert_to_tensor(v, dtype=y.dtype), data_format) for v in (scale, offset))
        if is_training:
            mean, variance = _batch_moments(y, [0, 2, 3] if data_format == "NCHW" else [0, 1, 2])
            stats = (reshape(mean, [-1]), reshape(variance * _bessel(y, mean), [-1]))
        else:
            stats = tuple(convert_to_tensor(v, dtype=y.dtype) for v in (mean, variance))
            mean, variance = (_per_channel(v, data_format) for v in stats)
        out = batch_normalization(y, mean, variance, offset, scale, epsilon)
        out = cast(out, float16) if x.dtype == float16 else out
        return out, stop_gradient(stats[0]), stop_gradient(stats[1])  # TF gives them no gradient


def _batch_moments(x: Tensor, axes: list[int]) -> tuple[Tensor, Tensor]:
    """Mean and biased variance (keepdims), differentiable to any order: `moments` stops the
    mean's gradient inside the variance (exact for first derivatives only), as TF's does."""
    mean = reduce_mean(x, axes, keepdims=True, name="mean")
    return mean, reduce_mean(square(x - mean), axes, keepdims=True, name="variance")


def local_response_normalization(input: Any, depth_radius: int = 5, bias: float = 1.0, alpha: float = 1.0,
                                 beta: float = 0.5, name: str | None = None) -> Tensor:
    """input / (bias + alpha * sum of squares over 2r+1 neighbouring channels) ** beta."""
    x = convert_to_tensor(input)
    if x.type.rank not in (None, 4):
        raise ValueError(f"local_response_normalization: input must be 4-D, got shape {x.shape}")
    channels = x.type.shape[3] if x.type.shape is not None else None
    if not isinstance(channels, int):
        raise ValueError(f"local_response_normalization needs the channel dim known while building, got {x.shape}")
    with x.graph.name_scope(name or "LRN") as scope:
        y = cast(x, float32) if x.dtype == float16 else x
        c = np.arange(channels)
        band = (np.abs(c[:, None] - c[None, :]) <= depth_radius).astype(y.dtype.np_dtype)
        sqr_sum = tensordot(square(y), band, [[3], [0]])
        out = multiply(y, pow(bias + alpha * sqr_sum, -beta), name=None if x.dtype == float16 else scope)
        return cast(out, float16, name=scope) if x.dtype == float16 else out


lrn = local_response_normalization
