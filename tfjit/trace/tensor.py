"""The symbolic `Tensor` and `Operation` users hold, and conversion of Python values to tensors."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..ir.attrs import ArrayAttr
from ..ir.graph import Node, Value
from ..ir.types import DType, TensorType, as_dtype
from .source import user_location


class Dimension:
    """TF1's `Dimension`: an int or None with `.value`; behaves like an int where known."""

    __slots__ = ("value",)

    def __init__(self, value: int | None | str):
        self.value = value if isinstance(value, int) or value is None else None

    def __int__(self) -> int:
        if self.value is None:
            raise ValueError("Cannot convert an unknown Dimension to an int")
        return self.value

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        other_v = other.value if isinstance(other, Dimension) else other
        if self.value is None or other_v is None:
            return False  # an unknown dim equals nothing, as in TF1
        return self.value == other_v

    def __hash__(self) -> int:
        return hash(self.value)

    def _arith(self, other: Any, fn: Any) -> "Dimension":
        o = other.value if isinstance(other, Dimension) else other
        return Dimension(None if self.value is None or o is None else fn(self.value, o))

    def __add__(self, o: Any) -> "Dimension":
        return self._arith(o, lambda a, b: a + b)

    def __sub__(self, o: Any) -> "Dimension":
        return self._arith(o, lambda a, b: a - b)

    def __mul__(self, o: Any) -> "Dimension":
        return self._arith(o, lambda a, b: a * b)

    def __floordiv__(self, o: Any) -> "Dimension":
        return self._arith(o, lambda a, b: a // b)

    __radd__, __rmul__ = __add__, __mul__

    def __repr__(self) -> str:
        return f"Dimension({self.value})"

    def __str__(self) -> str:
        return "?" if self.value is None else str(self.value)


class TensorShape:
    """TF1's `TensorShape`; `dims is None` means unknown rank."""

    def __init__(self, dims: Any):
        if isinstance(dims, TensorShape):
            dims = dims.as_list()
        self._dims = None if dims is None else tuple(
            d.value if isinstance(d, Dimension) else (d if isinstance(d, int) else None) for d in dims)

    @property
    def ndims(self) -> int | None:
        return None if self._dims is None else len(self._dims)

    rank = ndims

    @property
    def dims(self) -> list[Dimension] | None:
        return None if self._dims is None else [Dimension(d) for d in self._dims]

    def as_list(self) -> list[int | None]:
        if self._dims is None:
            raise ValueError("as_list() is not defined on an unknown TensorShape.")
        return list(self._dims)

    def is_fully_defined(self) -> bool:
        return self._dims is not None and all(d is not None for d in self._dims)

    def num_elements(self) -> int | None:
        return int(np.prod(self._dims)) if self.is_fully_defined() else None

    def is_compatible_with(self, other: Any) -> bool:
        other = other if isinstance(other, TensorShape) else TensorShape(other)
        if self._dims is None or other._dims is None:
            return True
        return len(self._dims) == len(other._dims) and all(
            a is None or b is None or a == b for a, b in zip(self._dims, other._dims))

    def assert_is_compatible_with(self, other: Any) -> None:
        if not self.is_compatible_with(other):
            raise ValueError(f"Shapes {self} and {TensorShape(other) if not isinstance(other, TensorShape) else other} are incompatible")

    def __len__(self) -> int:
        if self._dims is None:
            raise ValueError("Cannot take the length of shape with unknown rank.")
        return len(self._dims)

    def __iter__(self) -> Iterator[Dimension]:
        if self._dims is None:
            raise ValueError("Cannot iterate over a shape with unknown rank.")
        return iter(Dimension(d) for d in self._dims)

    def __getitem__(self, key: Any) -> Any:
        if self._dims is None:
            return Dimension(None) if isinstance(key, int) else TensorShape(None)
        if isinstance(key, slice):
            return TensorShape(self._dims[key])
        return Dimension(self._dims[key])

    def __eq__(self, other: object) -> bool:
        try:
            other = other if isinstance(other, TensorShape) else TensorShape(other)
        except TypeError:
            return NotImplemented
        return self._dims == other._dims

    def __repr__(self) -> str:
        return f"TensorShape({None if self._dims is None else list(self._dims)})"

    def __str__(self) -> str:
        if self._dims is None:
            return "<unknown>"
        return "(" + ", ".join("?" if d is None else str(d) for d in self._dims) + ("," if len(self._dims) == 1 else "") + ")"


class Operation:
    """A node in a TF1 graph, as users see it (`op.name`, `op.type`, `op.run()`)."""

    def __init__(self, node: Node, graph: Any):
        self.node = node
        self.graph = graph
        self.outputs = [Tensor(v, graph, self) for v in node.outputs]

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def type(self) -> str:
        """TF's op type name ('MatMul', 'Add', ...); `op.node.op` is tfjit's IR op name."""
        from ..compat.op_types import tf_op_type

        return tf_op_type(self.node.op)

    @property
    def device(self) -> str:
        return self.node.device or ""

    @property
    def inputs(self) -> list["Tensor"]:
        return [self.graph.operation(v.node).outputs[v.index] for v in self.node.inputs]

    @property
    def control_inputs(self) -> list["Operation"]:
        return [self.graph.operation(n) for n in self.node.control_inputs]

    def get_attr(self, name: str) -> Any:
        return self.node.attr(name)

    def run(self, feed_dict: dict | None = None, session: Any = None) -> None:
        from ..compat.session import get_default_session_or_fail

        (session or get_default_session_or_fail()).run(self, feed_dict=feed_dict)

    def __repr__(self) -> str:
        return f"<tf.Operation '{self.name}' type={self.type}>"


class Tensor:
    """A symbolic value: output `value_index` of an `Operation`. Hashed by identity, like TF1."""

    def __init__(self, value: Value, graph: Any, op: Operation):
        self.value = value
        self.graph = graph
        self.op = op
        self._static_shape: TensorShape | None = None

    # -- TF1 Tensor API ------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def dtype(self) -> DType:
        return self.value.type.dtype

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value.index}"

    @property
    def value_index(self) -> int:
        return self.value.index

    @property
    def shape(self) -> TensorShape:
        if self._static_shape is not None:
            return self._static_shape
        shape = self.value.type.shape
        return TensorShape(None if shape is None else [d if isinstance(d, int) else None for d in shape])

    def get_shape(self) -> TensorShape:
        return self.shape

    def set_shape(self, shape: Any) -> None:
        """Refines the static shape users see (TF1's `set_shape`); it must be compatible."""
        new = TensorShape(shape)
        if not self.shape.is_compatible_with(new):
            raise ValueError(f"Shapes {self.shape} and {new} are incompatible")
        merged = new if self.shape.ndims is None else TensorShape(
            [a if a is not None else b for a, b in zip(self.shape.as_list(), new.as_list())]) if new.ndims is not None else self.shape
        self._static_shape = merged

    @property
    def device(self) -> str:
        return self.op.device

    def consumers(self) -> list[Operation]:
        return [self.graph.operation(n) for n in self.graph.nodes if self.value in n.inputs]

    def eval(self, feed_dict: dict | None = None, session: Any = None) -> np.ndarray:
        from ..compat.session import get_default_session_or_fail

        return (session or get_default_session_or_fail()).run(self, feed_dict=feed_dict)

    def __repr__(self) -> str:
        return f"<tf.Tensor '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    def __bool__(self) -> bool:
        loc = user_location()
        at = f" (at {loc})" if loc else ""
        raise TypeError(
            f"Using a tf.Tensor as a Python bool is not allowed{at}: its value is not known while "
            "the graph is built. Use tfjit.cond(pred, true_fn, false_fn) for data-dependent "
            "branches, or tfjit.where to select elementwise.")

    def __len__(self) -> int:
        shape = self.value.type.shape
        if shape is None or not shape or not isinstance(shape[0], int):
            raise TypeError(f"len is not well defined for a tensor of shape {self.shape}")
        return shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        shape = self.value.type.shape
        if shape is None or not shape or not isinstance(shape[0], int):
            raise TypeError(f"Tensor of shape {self.shape} is not iterable: its first dimension is unknown")
        for i in range(shape[0]):
            yield self[i]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(f"Cannot convert symbolic tensor {self.name} to a NumPy array; "
                        "fetch it with sess.run() instead")

    __array_priority__ = 100  # so ndarray + Tensor calls Tensor.__radd__

    # -- operators (defined in compat.math_ops, attached in tfjit/__init__) -------------------


def convert_to_tensor(value: Any, dtype: Any = None, name: str | None = None,
                      preferred_dtype: Any = None, graph: Any = None) -> Tensor:
    """A Tensor for `value`: Tensors and Variables as they are, other values as constants
    (built in `graph`, by default the default graph)."""
    from .graph import get_default_graph

    if isinstance(value, Tensor):
        if dtype is not None and as_dtype(dtype) != value.dtype:
            raise ValueError(f"Tensor conversion requested dtype {as_dtype(dtype).name} for Tensor "
                             f"with dtype {value.dtype.name}: {value!r}")
        return value
    to_tensor = getattr(value, "_as_graph_tensor", None)
    if to_tensor is not None:
        return convert_to_tensor(to_tensor(), dtype=dtype)
    if isinstance(value, (list, tuple)) and any(isinstance(x, Tensor) or hasattr(x, "_as_graph_tensor") for x in value):
        from ..compat.layout_ops import stack

        return stack([convert_to_tensor(x, dtype=dtype) for x in value], name=name or "packed")
    array = _as_array(value, dtype if dtype is not None else None, preferred_dtype)
    graph = graph if graph is not None else get_default_graph()
    op = graph.emit("constant", [], {"value": ArrayAttr(array)}, name=name or "Const")
    return op.outputs[0]


def _as_array(value: Any, dtype: Any, preferred: Any) -> np.ndarray:
    if dtype is not None:
        target = as_dtype(dtype)
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and target.is_integer:
            raise TypeError(f"Expected {target.name}, got {value!r} of type '{type(value).__name__}' instead.")
        return arr.astype(target.np_dtype)
    arr = np.asarray(value)
    if preferred is not None and arr.dtype.kind in "iuf" and not isinstance(value, np.ndarray):
        target = as_dtype(preferred)
        if not (arr.dtype.kind == "f" and target.is_integer):
            return arr.astype(target.np_dtype)
    if arr.dtype == np.float64 and not isinstance(value, (np.ndarray, np.generic)):
        return arr.astype(np.float32)  # Python floats become float32, as in TF
    if arr.dtype == np.int64 and not isinstance(value, (np.ndarray, np.generic)):
        info = np.iinfo(np.int32)  # Python ints become int32, as in TF, unless they need int64
        if arr.size == 0 or (info.min <= arr.min() and arr.max() <= info.max):
            return arr.astype(np.int32)
    if arr.dtype.kind in "US":
        raise TypeError(f"tfjit has no string tensors; cannot convert {value!r}")
    return arr

