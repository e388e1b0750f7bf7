"""Convolution, pooling and dropout-noise ops (issue 6).

Every window op shares one geometry (TF's `GetWindowedOutputSizeVerbose`: SAME puts the odd
padding row on the bottom/right) and one NumPy picture: the padded input seen through a
strided view of its windows ("patches", [N, OH, OW, KH, KW, C]), contracted for a
convolution and reduced for a pooling; each gradient scatters window gradients back
("unpatch"). References work in NHWC (NCHW operands are transposed in and out) and compute
float16 in float32, rounding once at the end.

Ops whose gradient needs an input's shape (conv2d_backprop_input/_filter, avg_pool_grad)
hold the static dims as an attribute and, only when some dim is unknown while building, the
run-time shape as an extra int input, as `fill` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import OpTypeError
from ..ir.types import DType, Dim, TensorType, dims_compatible, merge_dims
from ..runtime.state import RuntimeState
from .registry import Fusion, register
from .shapes import require_float, require_numeric, same_dtype

Shape = tuple[Dim, ...]
Quad = tuple[int, int, int, int]
PADDINGS = ("SAME", "VALID", "EXPLICIT")


# -- attributes shared by every window op --------------------------------------------------
def spatial_axes(data_format: str) -> tuple[int, int]:
    return (2, 3) if data_format == "NCHW" else (1, 2)


def channel_axis(data_format: str) -> int:
    return 1 if data_format == "NCHW" else 3


def _check_quad(values: tuple[int, ...], what: str, data_format: str) -> None:
    """strides/dilations/ksize: 4 positive ints, 1 on the batch and channel dims (as TF asks)."""
    if len(values) != 4:
        raise OpTypeError(f"{what} must have 4 entries, got {list(values)}")
    if any(v < 1 for v in values):
        raise OpTypeError(f"{what} must be positive, got {list(values)}")
    if values[0] != 1 or values[channel_axis(data_format)] != 1:
        raise OpTypeError(f"{what} {list(values)} must be 1 in the batch and channel dimensions "
                          f"(data_format {data_format})")


def _check_window_attrs(strides: Quad, padding: str, explicit_paddings: tuple[int, ...], data_format: str,
                        dilations: Quad) -> None:
    if data_format not in ("NHWC", "NCHW"):
        raise OpTypeError(f"data_format must be NHWC or NCHW, got {data_format!r}")
    if padding not in PADDINGS:
        raise OpTypeError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    _check_quad(strides, "strides", data_format)
    _check_quad(dilations, "dilations", data_format)
    if padding != "EXPLICIT":
        if explicit_paddings:
            raise OpTypeError(f"explicit_paddings {list(explicit_paddings)} need padding 'EXPLICIT'")
        return
    pads = explicit_paddings
    c = channel_axis(data_format)
    if len(pads) != 8 or any(p < 0 for p in pads):
        raise OpTypeError(f"explicit paddings must be 4 pairs of non-negative ints, got {list(pads)}")
    if pads[0] or pads[1] or pads[2 * c] or pads[2 * c + 1]:
        raise OpTypeError(f"explicit paddings {list(pads)} must be 0 in the batch and channel dimensions")


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (toward zero), which TF's output-size formula uses."""
    q = abs(a) // b
    return q if a >= 0 else -q


def window_size(size: int, k: int, stride: int, dilation: int, padding: str,
                explicit: tuple[int, int]) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of one spatial dim, exactly as TF."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        need = max(0, (out - 1) * stride + eff - size)
        before, after = need // 2, need - need // 2
    else:
        before, after = explicit if padding == "EXPLICIT" else (0, 0)
        out = _trunc_div(size + before + after - eff + stride, stride)
    if out < 0:
        raise OpTypeError(f"computed output size would be negative: {out} [input_size: {size}, "
                          f"effective_filter_size: {eff}, stride: {stride}]")
    return out, before, after


def _explicit_pair(explicit_paddings: tuple[int, ...], axis: int) -> tuple[int, int]:
    return (explicit_paddings[2 * axis], explicit_paddings[2 * axis + 1]) if explicit_paddings else (0, 0)


def _out_dim(size: Dim, k: Dim, axis: int, strides: Quad, padding: str, explicit_paddings: tuple[int, ...],
             dilations: Quad) -> Dim:
    if not (isinstance(size, int) and isinstance(k, int)):
        return None
    pair = _explicit_pair(explicit_paddings, axis)
    return window_size(size, k, strides[axis], dilations[axis], padding, pair)[0]


def _check_rank4(t: TensorType, what: str) -> None:
    if t.shape is not None and len(t.shape) != 4:
        raise OpTypeError(f"{what} must be 4-D, got {t}")


def _nhwc_shape(shape: Shape, data_format: str) -> Shape:
    return (shape[0], shape[2], shape[3], shape[1]) if data_format == "NCHW" else shape


def _from_nhwc_shape(shape: Shape, data_format: str) -> Shape:
    return (shape[0], shape[3], shape[1], shape[2]) if data_format == "NCHW" else shape


# -- convolution type rules ----------------------------------------------------------------
def _filter_dims(f: TensorType) -> Shape:
    return f.shape if f.shape is not None else (None,) * 4


def _out_channels(f: Shape, depthwise: bool) -> Dim:
    if not depthwise:
        return f[3]
    return f[2] * f[3] if isinstance(f[2], int) and isinstance(f[3], int) else None


def _conv_output(x: Shape, f: Shape, depthwise: bool, strides: Quad, padding: str,
                 explicit_paddings: tuple[int, ...], data_format: str, dilations: Quad) -> Shape:
    """The output shape of a convolution of an input of shape `x` (in `data_format`)."""
    n, h, w, c = _nhwc_shape(x, data_format)
    if not dims_compatible(c, f[2]):
        raise OpTypeError(f"input depth {c} must equal the filter's input depth {f[2]} "
                          f"(input {list(x)}, filter {list(f)}, data_format {data_format})")
    sh, sw = spatial_axes(data_format)
    oh = _out_dim(h, f[0], sh, strides, padding, explicit_paddings, dilations)
    ow = _out_dim(w, f[1], sw, strides, padding, explicit_paddings, dilations)
    return _from_nhwc_shape((n, oh, ow, _out_channels(f, depthwise)), data_format)


def _merge(a: Shape, b: Shape, what: str) -> Shape:
    if not all(map(dims_compatible, a, b)):
        raise OpTypeError(f"{what}: shape {list(b)} does not match the expected {list(a)}")
    return tuple(map(merge_dims, a, b))


def _sizes_input(in_types: tuple[TensorType, ...], extra: int) -> None:
    """The optional run-time sizes operand: an int vector of 4."""
    if len(in_types) == extra:
        return
    sizes = in_types[-1]
    if not sizes.dtype.is_integer or (sizes.shape is not None and sizes.shape not in ((4,), (None,))):
        raise OpTypeError(f"the sizes operand must be an int vector of 4, got {sizes}")


def _conv_family(depthwise: bool) -> tuple[Any, Any, Any]:
    """The type rules of a convolution and of its two gradients."""

    def forward(in_types: tuple[TensorType, ...], strides: Quad, padding: str, explicit_paddings: tuple[int, ...],
                data_format: str, dilations: Quad) -> tuple[TensorType, ...]:
        x, f = in_types
        dtype = same_dtype(in_types, "input and filter")
        require_float(x)
        _check_window_attrs(strides, padding, explicit_paddings, data_format, dilations)
        _check_rank4(x, "input")
        _check_rank4(f, "filter")
        if x.shape is None:
            return (TensorType(dtype, None),)
        return (TensorType(dtype, _conv_output(x.shape, _filter_dims(f), depthwise, strides, padding,
                                               explicit_paddings, data_format, dilations)),)

    def backprop_input(in_types: tuple[TensorType, ...], input_sizes: Shape, strides: Quad, padding: str,
                       explicit_paddings: tuple[int, ...], data_format: str,
                       dilations: Quad) -> tuple[TensorType, ...]:
        f, dy = in_types[:2]
        dtype = same_dtype((f, dy), "filter and out_backprop")
        require_float(f)
        _check_window_attrs(strides, padding, explicit_paddings, data_format, dilations)
        _sizes_input(in_types, 2)
        _check_rank4(f, "filter")
        _check_rank4(dy, "out_backprop")
        fd = _filter_dims(f)
        sizes = list(input_sizes)
        sizes[channel_axis(data_format)] = merge_dims(sizes[channel_axis(data_format)], fd[2])
        expected = _conv_output(tuple(sizes), fd, depthwise, strides, padding, explicit_paddings, data_format,
                                dilations)
        if dy.shape is not None:
            merged = _merge(expected, dy.shape, "out_backprop")
            sizes[0] = merge_dims(sizes[0], merged[0])
        return (TensorType(dtype, tuple(sizes)),)

    def backprop_filter(in_types: tuple[TensorType, ...], filter_sizes: Shape, strides: Quad, padding: str,
                        explicit_paddings: tuple[int, ...], data_format: str,
                        dilations: Quad) -> tuple[TensorType, ...]:
        x, dy = in_types[:2]
        dtype = same_dtype((x, dy), "input and out_backprop")
        require_float(x)
        _check_window_attrs(strides, padding, explicit_paddings, data_format, dilations)
        _sizes_input(in_types, 2)
        _check_rank4(x, "input")
        _check_rank4(dy, "out_backprop")
        sizes = list(filter_sizes)
        if x.shape is not None:
            sizes[2] = merge_dims(sizes[2], _nhwc_shape(x.shape, data_format)[3])
            expected = _conv_output(x.shape, tuple(sizes), depthwise, strides, padding, explicit_paddings,
                                    data_format, dilations)
            if dy.shape is not None:
                _merge(expected, dy.shape, "out_backprop")
        return (TensorType(dtype, tuple(sizes)),)

    return forward, backprop_input, backprop_filter


# -- NumPy: geometry, patches and their transpose -------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """The windows of one op over an NHWC input: per spatial dim, size/stride/dilation/pads/output."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    out: tuple[int, int]


def geometry(in_hw: tuple[int, int], kernel: tuple[int, int], strides: Quad, padding: str,
             explicit_paddings: tuple[int, ...], data_format: str, dilations: Quad) -> Geometry:
    axes = spatial_axes(data_format)
    dims = [window_size(size, k, strides[a], dilations[a], padding, _explicit_pair(explicit_paddings, a))
            for size, k, a in zip(in_hw, kernel, axes)]
    return Geometry(tuple(kernel), tuple(strides[a] for a in axes), tuple(dilations[a] for a in axes),
                    tuple((d[1], d[2]) for d in dims), tuple(d[0] for d in dims))


def _to_nhwc(a: np.ndarray, data_format: str) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if data_format == "NCHW" else a


def _from_nhwc(a: np.ndarray, data_format: str) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if data_format == "NCHW" else a


def _wide(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype == np.float16 else a


def patches(x: np.ndarray, g: Geometry, fill: Any) -> np.ndarray:
    """A read-only [N, OH, OW, KH, KW, C] view of the windows of the padded NHWC `x`."""
    padded = np.pad(x, ((0, 0), g.pads[0], g.pads[1], (0, 0)), constant_values=fill)
    sn, sh, sw, sc = padded.strides
    shape = (x.shape[0], g.out[0], g.out[1], g.kernel[0], g.kernel[1], x.shape[3])
    steps = (sn, sh * g.strides[0], sw * g.strides[1], sh * g.dilations[0], sw * g.dilations[1], sc)
    return as_strided(padded, shape, steps, writeable=False)


def unpatch(dp: np.ndarray, x_shape: tuple[int, ...], g: Geometry) -> np.ndarray:
    """The transpose of `patches`: window gradients [N, OH, OW, KH, KW, C] summed into the input."""
    n, h, w, c = x_shape
    (pt, pb), (pl, pr) = g.pads
    out = np.zeros((n, h + pt + pb, w + pl + pr, c), dp.dtype)
    (oh, ow), (sh, sw) = g.out, g.strides
    if oh and ow:
        for i in range(g.kernel[0]):
            for j in range(g.kernel[1]):
                r, s = i * g.dilations[0], j * g.dilations[1]
                out[:, r:r + (oh - 1) * sh + 1:sh, s:s + (ow - 1) * sw + 1:sw, :] += dp[:, :, :, i, j, :]
    return out[:, pt:pt + h, pl:pl + w, :]


def _conv_geometry(x_nhwc: tuple[int, ...], f: tuple[int, ...], attrs: dict[str, Any]) -> Geometry:
    return geometry(x_nhwc[1:3], f[:2], **attrs)


def _conv_ref(depthwise: bool) -> tuple[Any, Any, Any]:
    """The references of a convolution and of its two gradients."""

    def forward(x: np.ndarray, f: np.ndarray, **attrs: Any) -> np.ndarray:
        fmt = attrs["data_format"]
        xs = _to_nhwc(_wide(x), fmt)
        p = patches(xs, _conv_geometry(xs.shape, f.shape, attrs), 0)
        if depthwise:
            out = np.einsum("nhwijc,ijcm->nhwcm", p, _wide(f), optimize=True)
            out = out.reshape(out.shape[:3] + (-1,))
        else:
            out = np.tensordot(p, _wide(f), axes=([3, 4, 5], [0, 1, 2]))
        return _from_nhwc(out, fmt).astype(x.dtype)

    def backprop_input(f: np.ndarray, dy: np.ndarray, *sizes: np.ndarray, input_sizes: Shape,
                       **attrs: Any) -> np.ndarray:
        fmt = attrs["data_format"]
        shape = _nhwc_shape(tuple(int(d) for d in (sizes[0] if sizes else input_sizes)), fmt)
        dys = _to_nhwc(_wide(dy), fmt)
        g = _conv_geometry(shape, f.shape, attrs)
        if depthwise:
            d5 = dys.reshape(dys.shape[:3] + f.shape[2:])
            dp = np.einsum("nhwcm,ijcm->nhwijc", d5, _wide(f), optimize=True)
        else:
            dp = np.tensordot(dys, _wide(f), axes=([3], [3]))
        return _from_nhwc(unpatch(dp, shape, g), fmt).astype(f.dtype)

    def backprop_filter(x: np.ndarray, dy: np.ndarray, *sizes: np.ndarray, filter_sizes: Shape,
                        **attrs: Any) -> np.ndarray:
        fmt = attrs["data_format"]
        fshape = tuple(int(d) for d in (sizes[0] if sizes else filter_sizes))
        xs, dys = _to_nhwc(_wide(x), fmt), _to_nhwc(_wide(dy), fmt)
        p = patches(xs, _conv_geometry(xs.shape, fshape, attrs), 0)
        if depthwise:
            d5 = dys.reshape(dys.shape[:3] + fshape[2:])
            out = np.einsum("nhwijc,nhwcm->ijcm", p, d5, optimize=True)
        else:
            out = np.tensordot(p, dys, axes=([0, 1, 2], [0, 1, 2]))
        return out.astype(x.dtype)

    return forward, backprop_input, backprop_filter


for _prefix, _depthwise in (("conv2d", False), ("depthwise_conv2d_native", True)):
    _rules, _refs = _conv_family(_depthwise), _conv_ref(_depthwise)
    for _suffix, _rule, _ref in zip(("", "_backprop_input", "_backprop_filter"), _rules, _refs):
        register(_prefix + _suffix, _rule, _ref, Fusion.CONTRACTION,
                 doc=f"{'depthwise ' if _depthwise else ''}2-D convolution{_suffix.replace('_', ' ')} "
                     "(filter HWIO; strides, padding, dilations as TF)")


# -- pooling -------------------------------------------------------------------------------
def _pool_output(x: TensorType, ksize: Quad, strides: Quad, padding: str, data_format: str,
                 dilations: Quad = (1, 1, 1, 1)) -> Shape | None:
    _check_window_attrs(strides, padding, (), data_format, dilations)
    if padding == "EXPLICIT":
        raise OpTypeError("pooling takes padding 'SAME' or 'VALID', not 'EXPLICIT'")
    _check_quad(ksize, "ksize", data_format)
    _check_rank4(x, "input")
    if x.shape is None:
        return None
    out = list(x.shape)
    for a in spatial_axes(data_format):
        out[a] = _out_dim(x.shape[a], ksize[a], a, strides, padding, (), dilations)
    return tuple(out)


def _pool_rule(numeric: bool) -> Any:
    def rule(in_types: tuple[TensorType, ...], ksize: Quad, strides: Quad, padding: str, data_format: str,
             dilations: Quad = (1, 1, 1, 1)) -> tuple[TensorType, ...]:
        (x,) = in_types
        (require_numeric if numeric else require_float)(x)
        return (TensorType(x.dtype, _pool_output(x, ksize, strides, padding, data_format, dilations)),)

    return rule


def _max_pool_grad_rule(in_types: tuple[TensorType, ...], ksize: Quad, strides: Quad, padding: str,
                        data_format: str, dilations: Quad = (1, 1, 1, 1)) -> tuple[TensorType, ...]:
    """Inputs (orig_input, orig_output, grad) with grad shaped like orig_output: the gradient
    has orig_input's shape."""
    x, y, dy = in_types
    dtype = same_dtype(in_types, "orig_input, orig_output and grad")
    require_float(x)
    out = _pool_output(x, ksize, strides, padding, data_format, dilations)
    for t, what in ((y, "orig_output"), (dy, "grad")):
        _check_rank4(t, what)
        if out is not None and t.shape is not None:
            _merge(out, t.shape, what)
    return (TensorType(dtype, x.shape),)


def _max_pool_grad_grad_rule(in_types: tuple[TensorType, ...], **attrs: Any) -> tuple[TensorType, ...]:
    """Inputs (orig_input, orig_output, grad) with grad shaped like orig_input: the result has
    orig_output's shape."""
    x, y, g = in_types
    dtype = same_dtype(in_types, "orig_input, orig_output and grad")
    require_float(x)
    out = _pool_output(x, **attrs)
    _check_rank4(y, "orig_output")
    if g.shape is not None and x.shape is not None:
        _merge(x.shape, g.shape, "grad")
    if out is not None and y.shape is not None:
        out = _merge(out, y.shape, "orig_output")
    return (TensorType(dtype, out if out is not None else y.shape),)


def _avg_pool_grad_rule(in_types: tuple[TensorType, ...], input_sizes: Shape, ksize: Quad, strides: Quad,
                        padding: str, data_format: str, dilations: Quad = (1, 1, 1, 1)) -> tuple[TensorType, ...]:
    """Inputs (grad[, input_sizes]); the result has the pooled input's shape."""
    dy = in_types[0]
    require_float(dy)
    _sizes_input(in_types, 1)
    _check_rank4(dy, "grad")
    sizes = list(input_sizes)
    out = _pool_output(TensorType(dy.dtype, tuple(sizes)), ksize, strides, padding, data_format, dilations)
    if dy.shape is not None:
        merged = _merge(out, dy.shape, "grad")
        sizes[0] = merge_dims(sizes[0], merged[0])
        c = channel_axis(data_format)
        sizes[c] = merge_dims(sizes[c], merged[c])
    return (TensorType(dy.dtype, tuple(sizes)),)


def _pool_geometry(x_nhwc: tuple[int, ...], ksize: Quad, strides: Quad, padding: str, data_format: str,
                   dilations: Quad = (1, 1, 1, 1)) -> Geometry:
    kernel = tuple(ksize[a] for a in spatial_axes(data_format))
    return geometry(x_nhwc[1:3], kernel, strides, padding, (), data_format, dilations)


def _lowest(dtype: np.dtype) -> Any:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _max_pool(x: np.ndarray, **attrs: Any) -> np.ndarray:
    fmt = attrs["data_format"]
    xs = _to_nhwc(x, fmt)
    p = patches(xs, _pool_geometry(xs.shape, **attrs), _lowest(x.dtype))
    return np.ascontiguousarray(_from_nhwc(p.max(axis=(3, 4)), fmt))


def _window_counts(shape: tuple[int, ...], g: Geometry) -> np.ndarray:
    """How many real (unpadded) inputs each window holds: TF's SAME averages divide by it."""
    ones = np.ones((1, shape[1], shape[2], 1), np.float64)
    return patches(ones, g, 0.0).sum(axis=(3, 4))


def _avg_pool(x: np.ndarray, **attrs: Any) -> np.ndarray:
    fmt = attrs["data_format"]
    xs = _to_nhwc(_wide(x), fmt)
    g = _pool_geometry(xs.shape, **attrs)
    out = patches(xs, g, 0).sum(axis=(3, 4)) / _window_counts(xs.shape, g).astype(xs.dtype)
    return np.ascontiguousarray(_from_nhwc(out, fmt)).astype(x.dtype)


def _first_max(xs: np.ndarray, g: Geometry) -> np.ndarray:
    """One-hot [N, OH, OW, KH*KW, C] of each window's first maximum in row-major order
    (TF's CPU kernels route the gradient there; padding never wins)."""
    p = patches(xs, g, _lowest(xs.dtype))
    flat = p.reshape(p.shape[:3] + (p.shape[3] * p.shape[4], p.shape[5]))  # no -1: N may be 0
    first = np.argmax(flat, axis=3)
    return np.arange(flat.shape[3])[:, None] == first[:, :, :, None, :]


def _max_pool_grad(x: np.ndarray, y: np.ndarray, dy: np.ndarray, **attrs: Any) -> np.ndarray:
    fmt = attrs["data_format"]
    xs, dys = _to_nhwc(x, fmt), _to_nhwc(_wide(dy), fmt)
    g = _pool_geometry(xs.shape, **attrs)
    hot = _first_max(xs, g)
    dp = np.where(hot, dys[:, :, :, None, :], 0).reshape(hot.shape[:3] + g.kernel + hot.shape[4:])
    return np.ascontiguousarray(_from_nhwc(unpatch(dp, xs.shape, g), fmt)).astype(x.dtype)


def _max_pool_grad_grad(x: np.ndarray, y: np.ndarray, grad: np.ndarray, **attrs: Any) -> np.ndarray:
    fmt = attrs["data_format"]
    xs, gs = _to_nhwc(x, fmt), _to_nhwc(_wide(grad), fmt)
    g = _pool_geometry(xs.shape, **attrs)
    hot = _first_max(xs, g)
    p = patches(gs, g, 0)
    picked = np.where(hot, p.reshape(hot.shape), 0).sum(axis=3)
    return np.ascontiguousarray(_from_nhwc(picked, fmt)).astype(x.dtype)


def _avg_pool_grad(dy: np.ndarray, *sizes: np.ndarray, input_sizes: Shape, **attrs: Any) -> np.ndarray:
    fmt = attrs["data_format"]
    shape = _nhwc_shape(tuple(int(d) for d in (sizes[0] if sizes else input_sizes)), fmt)
    dys = _to_nhwc(_wide(dy), fmt)
    g = _pool_geometry(shape, **attrs)
    share = dys / _window_counts(shape, g).astype(dys.dtype)
    dp = np.broadcast_to(share[:, :, :, None, None, :], share.shape[:3] + g.kernel + share.shape[3:])
    return np.ascontiguousarray(_from_nhwc(unpatch(dp, shape, g), fmt)).astype(dy.dtype)


register("max_pool", _pool_rule(numeric=True), _max_pool, Fusion.OPAQUE,
         doc="max over each window; padding never wins")
register("avg_pool", _pool_rule(numeric=False), _avg_pool, Fusion.OPAQUE,
         doc="mean over each window's real (unpadded) entries")
register("max_pool_grad", _max_pool_grad_rule, _max_pool_grad, Fusion.OPAQUE,
         doc="max_pool's gradient: each window's grad goes to its first maximum")
register("max_pool_grad_grad", _max_pool_grad_grad_rule, _max_pool_grad_grad, Fusion.OPAQUE,
         doc="max_pool_grad's gradient: each window picks grad at its first maximum")
register("avg_pool_grad", _avg_pool_grad_rule, _avg_pool_grad, Fusion.OPAQUE,
         doc="avg_pool's gradient: each window's grad shared among its real entries")


# -- dropout's noise -----------------------------------------------------------------------
def _uniform_noise_rule(in_types: tuple[TensorType, ...], shape: Shape, dtype: DType, seed: int,
                        seed2: int) -> tuple[TensorType, ...]:
    (sizes,) = in_types
    if not dtype.is_floating:
        raise OpTypeError(f"uniform noise must be floating point, got {dtype.name}")
    if not sizes.dtype.is_integer or (sizes.shape is not None and len(sizes.shape) != 1):
        raise OpTypeError(f"the shape operand must be an int vector, got {sizes}")
    return (TensorType(dtype, shape),)


def _uniform_noise(sizes: np.ndarray, *, shape: Shape, dtype: DType, seed: int, seed2: int,
                   state: RuntimeState) -> np.ndarray:
    """The draws `random_uniform` makes for the same seeds and shape: one Philox stream per op."""
    gen = state.random_generator(seed, seed2)
    return gen.random(tuple(int(d) for d in sizes)).astype(dtype.np_dtype)


register("uniform_noise", _uniform_noise_rule, _uniform_noise, Fusion.RANDOM, stateful=True,
         differentiable=False, doc="uniform draws on [0, 1) of a shape known only at run time")
