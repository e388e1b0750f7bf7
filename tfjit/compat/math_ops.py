"""TF1 math API: elementwise ops, comparisons, reductions, matmul; and Tensor operators."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import GraphError
from ..errors import where as at
from ..ir.types import DType, as_dtype, bool_, dims_compatible, float32, float64, int32, int64
from ..ops.shapes import broadcast_shapes, normalize_axes, normalize_axis
from ..trace.graph import get_default_graph
from ..trace.source import user_location
from ..trace.tensor import Tensor, convert_to_tensor


def emit(op: str, inputs: Sequence[Tensor], attrs: dict[str, Any] | None = None,
         name: str | None = None) -> Any:
    """Emit `op` into the inputs' graph (or the default one, also when that is a cond branch or
    loop body enclosed by the inputs' graph); returns the Operation."""
    graph = get_default_graph()
    if inputs and not graph.encloses(inputs[0].graph):
        graph = inputs[0].graph
    for t in inputs:
        if not graph.encloses(t.graph):
            raise ValueError(f"Tensor {t.name} must be from the same graph as {inputs[0].name}; "
                             "tensors of different graphs (or of a @tfjit.function and the "
                             "outer graph) cannot be mixed")
    return graph.emit(op, [t.value for t in inputs], attrs, name=name)


def emit1(op: str, inputs: Sequence[Tensor], attrs: dict[str, Any] | None = None,
          name: str | None = None) -> Tensor:
    """Emit a one-result op and return its Tensor."""
    return emit(op, inputs, attrs, name).outputs[0]


def constant_value(t: Any) -> np.ndarray | None:
    """The value of `t` when it is known while building (a constant), else None."""
    if not isinstance(t, Tensor):
        return None if t is None else np.asarray(t)
    if t.op.node.op == "constant":
        return t.op.get_attr("value").array
    return None


def _pair(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    """Convert two operands; a Python scalar takes the other operand's dtype, as in TF."""
    if isinstance(x, Tensor) or hasattr(x, "_as_graph_tensor"):
        x = convert_to_tensor(x)
        y = _operand(y, x)
    else:
        y = convert_to_tensor(y)
        x = _operand(x, y)
    return x, y


def _operand(value: Any, like: Tensor) -> Tensor:
    """Convert `value` next to the tensor `like`, into its graph and, if it can, its dtype.

    A numeric NumPy array takes `like`'s dtype too (TF converts it with `dtype=`), except
    that floats never silently become integers.
    """
    if isinstance(value, (np.ndarray, np.generic)) and _array_fits(value.dtype, like.dtype):
        value = np.asarray(value).astype(like.dtype.np_dtype)
    return convert_to_tensor(value, preferred_dtype=like.dtype, graph=like.graph)


def _array_fits(dtype: np.dtype, like: DType) -> bool:
    if dtype.kind not in "iuf" or like.is_bool:
        return False
    return not (dtype.kind == "f" and like.is_integer)


def _binary_api(op: str, tf_name: str) -> Any:
    def fn(x: Any, y: Any, name: str | None = None) -> Tensor:
        a, b = _pair(x, y)
        return emit1(op, [a, b], name=name or tf_name)

    fn.__name__ = op
    fn.__doc__ = f"Elementwise `{op}` with NumPy broadcasting (TF's `{tf_name}`)."
    return fn


def _unary_api(op: str, tf_name: str) -> Any:
    def fn(x: Any, name: str | None = None) -> Tensor:
        return emit1(op, [convert_to_tensor(x)], name=name or tf_name)

    fn.__name__ = op
    fn.__doc__ = f"Elementwise `{op}` (TF's `{tf_name}`)."
    return fn


add = _binary_api("add", "Add")
subtract = _binary_api("subtract", "Sub")
multiply = _binary_api("multiply", "Mul")
floordiv = _binary_api("floordiv", "FloorDiv")
floor_div = floordiv
floormod = _binary_api("mod", "FloorMod")
mod = floormod
pow = _binary_api("pow", "Pow")  # noqa: A001 - TF's name
maximum = _binary_api("maximum", "Maximum")
minimum = _binary_api("minimum", "Minimum")
squared_difference = _binary_api("squared_difference", "SquaredDifference")
equal = _binary_api("equal", "Equal")
not_equal = _binary_api("not_equal", "NotEqual")
less = _binary_api("less", "Less")
less_equal = _binary_api("less_equal", "LessEqual")
greater = _binary_api("greater", "Greater")
greater_equal = _binary_api("greater_equal", "GreaterEqual")
logical_and = _binary_api("logical_and", "LogicalAnd")
logical_or = _binary_api("logical_or", "LogicalOr")
logical_xor = _binary_api("logical_xor", "LogicalXor")

negative = _unary_api("neg", "Neg")
abs = _unary_api("abs", "Abs")  # noqa: A001
sign = _unary_api("sign", "Sign")
exp = _unary_api("exp", "Exp")
log = _unary_api("log", "Log")
log1p = _unary_api("log1p", "Log1p")
expm1 = _unary_api("expm1", "Expm1")
sqrt = _unary_api("sqrt", "Sqrt")
rsqrt = _unary_api("rsqrt", "Rsqrt")
square = _unary_api("square", "Square")
reciprocal = _unary_api("reciprocal", "Reciprocal")
sin = _unary_api("sin", "Sin")
cos = _unary_api("cos", "Cos")
tanh = _unary_api("tanh", "Tanh")
sigmoid = _unary_api("sigmoid", "Sigmoid")
floor = _unary_api("floor", "Floor")
ceil = _unary_api("ceil", "Ceil")
round = _unary_api("round", "Round")  # noqa: A001
logical_not = _unary_api("logical_not", "LogicalNot")
is_nan = _unary_api("is_nan", "IsNan")
is_finite = _unary_api("is_finite", "IsFinite")
is_inf = _unary_api("is_inf", "IsInf")
relu = _unary_api("relu", "Relu")
relu6 = _unary_api("relu6", "Relu6")
elu = _unary_api("elu", "Elu")
selu = _unary_api("selu", "Selu")
softplus = _unary_api("softplus", "Softplus")
softsign = _unary_api("softsign", "Softsign")


def leaky_relu(features: Any, alpha: float = 0.2, name: str | None = None) -> Tensor:
    """TF1 casts integer features to float32 first."""
    x = convert_to_tensor(features)
    if x.dtype.is_integer:
        x = cast(x, float32)
    return emit1("leaky_relu", [x], {"alpha": float(alpha)}, name or "LeakyRelu")


def gelu(features: Any, approximate: bool = False, name: str | None = None) -> Tensor:
    return emit1("gelu", [convert_to_tensor(features)], {"approximate": bool(approximate)}, name or "Gelu")


def truediv(x: Any, y: Any, name: str | None = None) -> Tensor:
    """x / y; integers are converted to float (32 for small ints, 64 for int32/int64) as TF does."""
    a, b = _pair(x, y)
    if a.dtype != b.dtype:
        return emit1("divide", [a, b], name=name or "truediv")  # type rule reports the mismatch
    if a.dtype.is_integer:
        target = float64 if a.dtype in (int32, int64) else float32
        a, b = cast(a, target), cast(b, target)
    return emit1("divide", [a, b], name=name or "truediv")


divide = truediv


def div(x: Any, y: Any, name: str | None = None) -> Tensor:
    """TF1's `tf.div`: floor division for integers, true division for floats."""
    a, b = _pair(x, y)
    if a.dtype.is_integer:
        return emit1("floordiv", [a, b], name=name or "div")
    return emit1("divide", [a, b], name=name or "div")


def cast(x: Any, dtype: Any, name: str | None = None) -> Tensor:
    t = convert_to_tensor(x)
    target = as_dtype(dtype)
    if t.dtype == target:
        return t
    return emit1("cast", [t], {"dtype": target}, name or "Cast")


def to_float(x: Any, name: str = "ToFloat") -> Tensor:
    return cast(x, float32, name)


def to_int32(x: Any, name: str = "ToInt32") -> Tensor:
    return cast(x, int32, name)


def to_int64(x: Any, name: str = "ToInt64") -> Tensor:
    return cast(x, int64, name)


def where(condition: Any, x: Any = None, y: Any = None, name: str | None = None) -> Tensor:
    """TF1 `tf.where`: elementwise select, or the indices of true elements when x, y are None.

    As in TF1, a rank-1 condition with higher-rank x selects whole rows.
    """
    cond = convert_to_tensor(condition)
    if x is None and y is None:
        return emit1("where_indices", [cond], name=name or "Where")
    if x is None or y is None:
        raise ValueError("tf.where needs both x and y, or neither")
    a, b = _pair(x, y)
    if cond.type.rank == 1 and a.type.rank is not None and a.type.rank > 1:
        from .array_ops import reshape

        cond = reshape(cond, [-1] + [1] * (a.type.rank - 1))
    return emit1("select", [cond, a, b], name=name or "Select")


def where_v2(condition: Any, x: Any = None, y: Any = None, name: str | None = None) -> Tensor:
    """TF2 `tf.where`: select with full broadcasting."""
    cond = convert_to_tensor(condition)
    if x is None and y is None:
        return emit1("where_indices", [cond], name=name or "Where")
    a, b = _pair(x, y)
    return emit1("select", [cond, a, b], name=name or "SelectV2")


def add_n(inputs: Sequence[Any], name: str | None = None) -> Tensor:
    """Sum of tensors of one shape and dtype (no broadcasting, as in TF)."""
    tensors = [convert_to_tensor(t) for t in inputs]
    if not tensors:
        raise ValueError("inputs must be a list of at least one Tensor with the same dtype and shape")
    for t in tensors[1:]:
        if not _same_shape(tensors[0].type.shape, t.type.shape):
            raise GraphError(f"{at('add_n', user_location())}: inputs must have the same shape, "
                             f"got {tensors[0].type} and {t.type}")
    if len(tensors) == 1:
        return emit1("identity", tensors, name=name or "AddN")
    total = tensors[0]
    for i, t in enumerate(tensors[1:], start=2):
        total = emit1("add", [total, t], name=(name or "AddN") if i == len(tensors) else None)
    return total


def _same_shape(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(dims_compatible(x, y) for x, y in zip(a, b))


def clip_by_value(t: Any, clip_value_min: Any, clip_value_max: Any, name: str | None = None) -> Tensor:
    """min(t, max) then max(., min), as TF; the bounds may not broadcast t to a larger shape."""
    x = convert_to_tensor(t)
    hi = _operand(clip_value_max, x)
    lo = _operand(clip_value_min, x)
    _check_no_growth("clip_by_value", x, hi, lo)
    upper = emit1("minimum", [x, hi], name="clip_by_value/Minimum")
    return emit1("maximum", [upper, lo], name=name or "clip_by_value")


def _check_no_growth(op: str, x: Tensor, *others: Tensor) -> None:
    """Raise when `others` would broadcast `x` to a larger shape (incompatible ones the op reports)."""
    try:
        shape = broadcast_shapes(x.type.shape, *(o.type.shape for o in others))
    except ValueError:
        return
    if not _same_shape(x.type.shape, shape):
        listed = ", ".join(str(o.type) for o in others)
        raise GraphError(f"{at(op, user_location())}: {listed} would broadcast {x.type} to a larger shape")


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False,
           adjoint_a: bool = False, adjoint_b: bool = False, a_is_sparse: bool = False,
           b_is_sparse: bool = False, name: str | None = None) -> Tensor:
    x, y = _pair(a, b)
    return emit1("matmul", [x, y], {"transpose_a": bool(transpose_a or adjoint_a),
                                    "transpose_b": bool(transpose_b or adjoint_b)}, name or "MatMul")


def tensordot(a: Any, b: Any, axes: Any, name: str | None = None) -> Tensor:
    """Contract `axes` (an int: last n of a with first n of b; or a pair of axis lists)."""
    x, y = _pair(a, b)
    ra, rb = x.type.rank, y.type.rank
    if ra is None or rb is None:
        raise ValueError("tensordot needs operands of known rank")
    if isinstance(axes, int):
        if not 0 <= axes <= min(ra, rb):
            raise GraphError(f"{at('tensordot', user_location())}: axes={axes} must be between 0 and "
                             f"the smaller rank of {x.type} and {y.type}")
        axes_a, axes_b = list(range(ra - axes, ra)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    attrs = {"axes_a": _wrap_axes(axes_a, ra), "axes_b": _wrap_axes(axes_b, rb)}
    return emit1("tensordot", [x, y], attrs, name or "Tensordot")


def _wrap_axes(axes: list[Any], rank: int) -> tuple[int, ...]:
    """Negative axes count from the end; out-of-range ones are left for the type rule to report."""
    return tuple(int(i) + rank if -rank <= int(i) < 0 else int(i) for i in axes)


# -- reductions ---------------------------------------------------------------------------------
def _axes(op: str, x: Tensor, axis: Any, legacy: Any) -> tuple[int, ...] | None:
    """Reduction axes normalised at build time; a bad axis names the op, the shape and the line."""
    if axis is not None and legacy is not None:
        raise ValueError("Can not specify both 'axis' and 'reduction_indices'")
    axis = legacy if axis is None else axis
    if axis is None:
        return None
    if isinstance(axis, Tensor):
        value = constant_value(axis)
        if value is None:
            raise ValueError("reduction axes must be known while the graph is built (a Python int, "
                             "list, or constant tensor)")
        axis = value
    axis = np.asarray(axis).reshape(-1).tolist()
    try:
        return normalize_axes(axis, x.type.rank, x.type)
    except ValueError as e:
        raise GraphError(f"{at(op, user_location())}: {e}") from None


def _keep(keepdims: Any, keep_dims: Any) -> bool:
    if keepdims is not None and keep_dims is not None:
        raise ValueError("Can not specify both 'keepdims' and 'keep_dims'")
    return bool(keepdims if keepdims is not None else (keep_dims or False))


def _reduction_api(op: str, tf_name: str) -> Any:
    def fn(input_tensor: Any, axis: Any = None, keepdims: Any = None, name: str | None = None,
           reduction_indices: Any = None, keep_dims: Any = None) -> Tensor:
        x = convert_to_tensor(input_tensor)
        attrs = {"axes": _axes(op, x, axis, reduction_indices), "keepdims": _keep(keepdims, keep_dims)}
        return emit1(op, [x], attrs, name or tf_name)

    fn.__name__ = f"reduce_{op}"
    fn.__doc__ = f"TF's `reduce_{op}`: reduce along `axis` (int, list, negative or None = all)."
    return fn


reduce_sum = _reduction_api("sum", "Sum")
reduce_mean = _reduction_api("mean", "Mean")
reduce_max = _reduction_api("max", "Max")
reduce_min = _reduction_api("min", "Min")
reduce_prod = _reduction_api("prod", "Prod")
reduce_all = _reduction_api("all", "All")
reduce_any = _reduction_api("any", "Any")
reduce_logsumexp = _reduction_api("logsumexp", "ReduceLogSumExp")


def _arg_api(op: str, tf_name: str) -> Any:
    def fn(input: Any, axis: Any = None, name: str | None = None, dimension: Any = None,
           output_type: Any = int64) -> Tensor:
        x = convert_to_tensor(input)
        ax = axis if axis is not None else (dimension if dimension is not None else 0)
        value = constant_value(ax)
        ax = int(np.asarray(value if value is not None else ax))
        rank = x.type.rank
        if rank is not None:
            try:
                ax = normalize_axis(ax, rank, x.type)
            except ValueError as e:
                raise GraphError(f"{at(op, user_location())}: {e}") from None
        return emit1(op, [x], {"axis": ax, "output_type": as_dtype(output_type)}, name or tf_name)

    fn.__name__ = op
    return fn


argmax = _arg_api("argmax", "ArgMax")
argmin = _arg_api("argmin", "ArgMin")


def count_nonzero(input_tensor: Any = None, axis: Any = None, keepdims: Any = None, dtype: Any = int64,
                  name: str | None = None, reduction_indices: Any = None, keep_dims: Any = None,
                  input: Any = None) -> Tensor:
    """Counts in int64 (as TF) and casts the count to `dtype`."""
    x = convert_to_tensor(input_tensor if input_tensor is not None else input)
    nonzero = not_equal(x, np.zeros((), x.dtype.np_dtype))
    count = reduce_sum(cast(nonzero, int64), axis=axis, keepdims=keepdims, reduction_indices=reduction_indices,
                       keep_dims=keep_dims)
    return cast(count, dtype, name=name or "count_nonzero")


# -- Tensor operators -----------------------------------------------------------------------------
def _reverse(fn: Any) -> Any:
    return lambda self, other: fn(other, self)


def _bool_or_bitwise(bool_op: Any) -> Any:
    def fn(x: Any, y: Any) -> Tensor:
        a, b = _pair(x, y)
        if a.dtype != bool_:
            raise TypeError(f"operator needs bool tensors, got {a.dtype.name}; tfjit has no bitwise ops")
        return bool_op(a, b)

    return fn


def install_operators() -> None:
    """Attach Python operators to `Tensor` (TF1 semantics: `==` stays identity)."""
    ops: dict[str, Any] = {
        "__add__": add, "__radd__": _reverse(add), "__sub__": subtract, "__rsub__": _reverse(subtract),
        "__mul__": multiply, "__rmul__": _reverse(multiply), "__truediv__": truediv,
        "__rtruediv__": _reverse(truediv), "__floordiv__": floordiv, "__rfloordiv__": _reverse(floordiv),
        "__mod__": floormod, "__rmod__": _reverse(floormod), "__pow__": pow, "__rpow__": _reverse(pow),
        "__matmul__": matmul, "__rmatmul__": _reverse(matmul), "__lt__": less, "__le__": less_equal,
        "__gt__": greater, "__ge__": greater_equal,
        "__and__": _bool_or_bitwise(logical_and), "__rand__": _reverse(_bool_or_bitwise(logical_and)),
        "__or__": _bool_or_bitwise(logical_or), "__ror__": _reverse(_bool_or_bitwise(logical_or)),
        "__xor__": _bool_or_bitwise(logical_xor), "__rxor__": _reverse(_bool_or_bitwise(logical_xor)),
    }
    for key, fn in ops.items():
        setattr(Tensor, key, lambda self, other, _fn=fn: _fn(self, other))
    Tensor.__neg__ = lambda self: negative(self)
    Tensor.__abs__ = lambda self: abs(self)
    Tensor.__invert__ = lambda self: logical_not(self)

