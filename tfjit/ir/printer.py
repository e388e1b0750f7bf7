"""Deterministic text form of a graph; value names (%0, %1, ...) are assigned at print time.

    func @loss(%0: f32[?,784] {name="x"}, %1: f32[784,10]) -> (f32[]) {
      %2: f32[?,10] = matmul[transpose_a=false, transpose_b=false](%0, %1)  # model.py:12
      return %2
    }

`parser.parse_graph` reads it back; `print(parse(print(g))) == print(g)` is tested.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from .attrs import ArrayAttr
from .graph import Graph, Node, Value
from .types import DType, TensorType

# Constants up to this many elements print as readable numbers, larger ones as base64.
INLINE_ELEMENTS = 16


def format_attr(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _format_float(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, DType):
        return v.short
    if isinstance(v, TensorType):
        return str(v)
    if isinstance(v, ArrayAttr):
        return _format_array(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _format_float(f: float) -> str:
    r = repr(f)
    if r in ("inf", "-inf", "nan"):
        return r
    if "." not in r and "e" not in r:
        r += ".0"
    return r


def _format_scalar(x: np.generic) -> str:
    if isinstance(x, np.bool_):
        return "true" if x else "false"
    if isinstance(x, np.floating):
        s = str(x)  # numpy prints the shortest string that round-trips in this dtype
        return s if any(c in s for c in ".einan") else s + ".0"
    return str(x)


def _format_array(a: ArrayAttr) -> str:
    arr = a.array
    head = f"dense<{a.type}>"
    if arr.size <= INLINE_ELEMENTS:
        return head + "(" + ", ".join(_format_scalar(x) for x in arr.reshape(-1)) + ")"
    data = base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()
    return head + 'b64"' + data + '"'


_LOCAL_PREFIX = "/job:localhost/replica:0/task:0/device:"


def short_device(device: str) -> str:
    """'/job:localhost/replica:0/task:0/device:CPU:0' prints as 'CPU:0'; others as they are."""
    return device[len(_LOCAL_PREFIX):] if device.startswith(_LOCAL_PREFIX) else device


def long_device(text: str) -> str:
    """Inverse of `short_device`."""
    return text if text.startswith("/") else _LOCAL_PREFIX + text


class _Names:
    """Print-time names: one per value, and one per result-less node (for `^%n` control edges)."""

    def __init__(self) -> None:
        self._names: dict[Value, str] = {}
        self._nodes: dict[Node, str] = {}
        self._count = 0

    def define(self, v: Value) -> str:
        name = self._fresh()
        self._names[v] = name
        self._nodes.setdefault(v.node, name)
        return name

    def define_node(self, node: Node) -> str:
        name = self._fresh()
        self._nodes[node] = name
        return name

    def control(self, node: Node) -> str:
        return "^" + self._nodes.get(node, f"%<undefined {node.op}#{node.uid}>")

    def _fresh(self) -> str:
        name = f"%{self._count}"
        self._count += 1
        return name

    def __getitem__(self, v: Value) -> str:
        try:
            return self._names[v]
        except KeyError:
            return f"%<undefined {v.node.op}#{v.node.uid}:{v.index}>"


def _meta(node: Node, with_loc: bool) -> str:
    items = []
    if node.name is not None:
        items.append(f"name={json.dumps(node.name)}")
    if node.device is not None:
        items.append(f"device={json.dumps(short_device(node.device))}")
    if node.buffers is not None:
        items.append(f"buffers={json.dumps(list(node.buffers))}")
    if with_loc and node.loc is not None:
        items.append(f"loc={json.dumps(node.loc.short)}")
    return " {" + ", ".join(items) + "}" if items else ""


def format_node(node: Node, names: _Names) -> str:
    if node.types:
        results = ", ".join(f"{names.define(v)}: {v.type}" for v in node.outputs)
    else:
        results = names.define_node(node)
    attrs = ""
    plain = [(k, v) for k, v in node.attrs if not isinstance(v, Graph)]
    if plain:
        attrs = "[" + ", ".join(f"{k}={format_attr(v)}" for k, v in plain) + "]"
    args = [names[v] for v in node.inputs]
    args += [names.control(c) for c in node.control_inputs]
    line = f"{results} = {node.op}{attrs}({', '.join(args)}){_meta(node, with_loc=False)}"
    if node.loc is not None:
        line += f"  # {node.loc.short}"
    for key, body in node.attrs:  # a fused kernel's sub-graph, indented under its node
        if isinstance(body, Graph):
            line += f"\n    {key} " + print_graph(body).replace("\n", "\n    ")
    return line


def print_graph(g: Graph) -> str:
    names = _Names()
    params = ", ".join(f"{names.define(p)}: {p.type}{_meta(p.node, with_loc=True)}" for p in g.params)
    result_types = ", ".join(str(r.type) for r in g.results)
    lines = [f"func @{g.name}({params}) -> ({result_types}) {{"]
    for node in g.nodes:
        lines.append("  " + format_node(node, names))
    lines.append(" ".join(["  return", ", ".join(names[r] for r in g.results)]).rstrip())
    lines.append("}")
    return "\n".join(lines)
