"""TF1 math API: elementwise ops, comparisons, reductions, matmul; and Tensor operators."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import GraphError
from ..errors import where as at
from ..ir.types import as_dtype, bool_, float32, float64, int32, int64
from ..trace.graph import get_default_graph
from ..trace.source import user_location
from ..ops.shapes import normalize_axis
from ..trace.tensor import Tensor, convert_to_tensor


def emit(op: str, inputs: Sequence[Tensor], attrs: dict[str, Any] | None = None,
         name: str | None = None) -> Any:
    """Emit `op` into the inputs' graph (or the default one); returns the Operation."""
    graph = inputs[0].graph if inputs else get_default_graph()
    for t in inputs:
        if t.graph is not graph:
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
    if t.op.type == "constant":
        return t.op.get_attr("value").array
    return None


def _pair(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    """Convert two operands; a Python scalar takes the other operand's dtype, as in TF."""
    if isinstance(x, Tensor) or hasattr(x, "_as_graph_tensor"):
        x = convert_to_tensor(x)
        y = convert_to_tensor(y, preferred_dtype=x.dtype, graph=x.graph)
    else:
        y = convert_to_tensor(y)
        x = convert_to_tensor(x, preferred_dtype=y.dtype, graph=y.graph)
    return x, y


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
    return emit1("leaky_relu", [convert_to_tensor(features)], {"alpha": float(alpha)}, name or "LeakyRelu")


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
    tensors = [convert_to_tensor(t) for t in inputs]
    if not tensors:
        raise ValueError("add_n needs at least one input")
    total = tensors[0]
    for t in tensors[1:]:
        total = emit1("add", [total, t], name=name or "AddN")
    return total if len(tensors) > 1 else emit1("identity", [total], name=name or "AddN")


def clip_by_value(t: Any, clip_value_min: Any, clip_value_max: Any, name: str | None = None) -> Tensor:
    x = convert_to_tensor(t)
    lo = convert_to_tensor(clip_value_min, preferred_dtype=x.dtype)
    hi = convert_to_tensor(clip_value_max, preferred_dtype=x.dtype)
    return emit1("minimum", [emit1("maximum", [x, lo]), hi], name=name or "clip_by_value")


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False,
           adjoint_a: bool = False, adjoint_b: bool = False, a_is_sparse: bool = False,
           b_is_sparse: bool = False, name: str | None = None) -> Tensor:
    x, y = _pair(a, b)
    return emit1("matmul", [x, y], {"transpose_a": bool(transpose_a or adjoint_a),
                                    "transpose_b": bool(transpose_b or adjoint_b)}, name or "MatMul")


def tensordot(a: Any, b: Any, axes: Any, name: str | None = None) -> Tensor:
    x, y = _pair(a, b)
    ra, rb = x.type.rank, y.type.rank
    if ra is None or rb is None:
        raise ValueError("tensordot needs operands of known rank")
    if isinstance(axes, int):
        axes_a, axes_b = list(range(ra - axes, ra)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = tuple(int(i) % ra for i in axes_a)
    axes_b = tuple(int(i) % rb for i in axes_b)
    return emit1("tensordot", [x, y], {"axes_a": axes_a, "axes_b": axes_b}, name or "Tensordot")


# -- reductions ---------------------------------------------------------------------------------
def _axes(axis: Any, legacy: Any, rank: int | None) -> tuple[int, ...] | None:
    from ..ops.shapes import normalize_axes

    if axis is None:
        axis = legacy
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
        return normalize_axes(axis, rank)
    except ValueError as e:
        raise GraphError(f"{at('reduce', user_location())}: {e}") from None


def _reduction_api(op: str, tf_name: str) -> Any:
    def fn(input_tensor: Any, axis: Any = None, keepdims: Any = None, name: str | None = None,
           reduction_indices: Any = None, keep_dims: Any = None) -> Tensor:
        x = convert_to_tensor(input_tensor)
        keep = bool(keepdims if keepdims is not None else (keep_dims or False))
        attrs = {"axes": _axes(axis, reduction_indices, x.type.rank), "keepdims": keep}
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


def count_nonzero(input_tensor: Any, axis: Any = None, keepdims: bool = False, dtype: Any = int64,
                  name: str | None = None) -> Tensor:
    x = convert_to_tensor(input_tensor)
    nonzero = not_equal(x, np.zeros((), x.dtype.np_dtype))
    return reduce_sum(cast(nonzero, dtype), axis=axis, keepdims=keepdims, name=name)


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

