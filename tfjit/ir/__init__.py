"""The SSA IR: types, nodes, graphs, and their text form."""
from .attrs import ArrayAttr
from .graph import Graph, Loc, Node, Value, freeze_attrs
from .parser import ParseError, parse_graph
from .printer import print_graph
from .types import (ALL_DTYPES, DType, TensorType, as_dtype, bool_, float16, float32, float64,
                    int8, int32, int64, make_shape, uint8)

__all__ = [
    "ArrayAttr", "Graph", "Loc", "Node", "Value", "freeze_attrs", "ParseError", "parse_graph",
    "print_graph", "ALL_DTYPES", "DType", "TensorType", "as_dtype", "bool_", "float16",
    "float32", "float64", "int8", "int32", "int64", "make_shape", "uint8",
]
