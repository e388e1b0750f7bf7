"""Reads the text form written by `printer.print_graph` back into a `Graph`."""
from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np

from .attrs import ArrayAttr
from .graph import Graph, Loc, Node, Value
from .printer import long_device
from .types import ALL_DTYPES, DType, TensorType, as_dtype

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<b64>b64"[A-Za-z0-9+/=]*")
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<ctrl>\^%\d+)
  | (?P<value>%\d+)
  | (?P<func>@[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<arrow>->)
  | (?P<number>-?(?:inf\b|nan\b|\d+\.?\d*(?:[eE][+-]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[()\[\]{}<>,:=?*])
    """,
    re.VERBOSE,
)
_DTYPE_SHORTS = {d.short for d in ALL_DTYPES}


class ParseError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        if kind != "ws":
            tokens.append((kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}

    # -- token helpers -------------------------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("eof", "", -1)

    def next(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, got, line = self.next()
        if got != text:
            raise ParseError(f"line {line}: expected {text!r}, got {got!r}")

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text:
            self.i += 1
            return True
        return False

    def fail(self, what: str) -> ParseError:
        kind, got, line = self.peek()
        return ParseError(f"line {line}: expected {what}, got {got!r}")

    # -- grammar -------------------------------------------------------------------------
    def graph(self) -> Graph:
        self.expect("func")
        kind, name, _ = self.next()
        if kind != "func":
            raise ParseError(f"expected @name after func, got {name!r}")
        self.expect("(")
        params: list[Value] = []
        while not self.accept(")"):
            if params:
                self.expect(",")
            params.append(self.param(len(params)))
        self.expect("->")
        self.expect("(")
        while not self.accept(")"):
            self.next()  # result types are implied by the returned values
        self.expect("{")
        nodes: list[Node] = []
        while self.peek()[1] != "return":
            nodes.append(self.node())
        self.expect("return")
        results: list[Value] = []
        if self.peek()[0] == "value":
            results.append(self.use())
            while self.accept(","):
                results.append(self.use())
        self.expect("}")
        return Graph(name[1:], params, nodes, results)

    def nested_graph(self) -> Graph:
        """A sub-graph has its own value names: parse it with a fresh scope."""
        outer = self.values, self.nodes
        self.values, self.nodes = {}, {}
        try:
            return self.graph()
        finally:
            self.values, self.nodes = outer

    def param(self, index: int) -> Value:
        label = self.label()
        self.expect(":")
        ttype = self.tensor_type()
        meta = self.meta()
        loc = _parse_loc(meta.pop("loc")) if "loc" in meta else None
        node = Node("param", (), (("index", index),), (ttype,), loc=loc, **meta)
        self.values[label] = node.out
        self.nodes[label] = node
        return node.out

    def node(self) -> Node:
        labels: list[str] = []
        types: list[TensorType] = []
        first = self.label()
        if self.accept(":"):
            labels.append(first)
            types.append(self.tensor_type())
            while self.accept(","):
                labels.append(self.label())
                self.expect(":")
                types.append(self.tensor_type())
        self.expect("=")
        kind, op, line = self.next()
        if kind != "ident":
            raise ParseError(f"line {line}: expected an op name, got {op!r}")
        attrs = self.attrs()
        inputs, controls = self.args()
        meta = self.meta()
        loc = None
        if self.peek()[0] == "comment":
            loc = _parse_loc(self.next()[1][1:].strip())
        while self.peek()[0] == "ident" and self.peek(1)[1] == "func":
            key = self.next()[1]
            attrs = tuple(sorted((*attrs, (key, self.nested_graph()))))
        node = Node(op, tuple(inputs), attrs, tuple(types), loc=loc,
                    control_inputs=tuple(controls), **meta)
        if labels:
            for i, label in enumerate(labels):
                self.values[label] = node.outputs[i]
                self.nodes.setdefault(label, node)
        else:
            self.nodes[first] = node
        return node

    def label(self) -> str:
        kind, text, line = self.next()
        if kind != "value":
            raise ParseError(f"line {line}: expected a %name, got {text!r}")
        return text

    def use(self) -> Value:
        label = self.label()
        if label not in self.values:
            raise ParseError(f"{label} is used before it is defined")
        return self.values[label]

    def args(self) -> tuple[list[Value], list[Node]]:
        self.expect("(")
        inputs: list[Value] = []
        controls: list[Node] = []
        first = True
        while not self.accept(")"):
            if not first:
                self.expect(",")
            first = False
            if self.peek()[0] == "ctrl":
                label = self.next()[1][1:]
                if label not in self.nodes:
                    raise ParseError(f"control input {label} is used before it is defined")
                controls.append(self.nodes[label])
            else:
                inputs.append(self.use())
        return inputs, controls

    def attrs(self) -> tuple[tuple[str, Any], ...]:
        if not self.accept("["):
            return ()
        items = []
        while not self.accept("]"):
            if items:
                self.expect(",")
            kind, key, line = self.next()
            self.expect("=")
            items.append((key, self.attr_value()))
        return tuple(items)

    def meta(self) -> dict[str, str]:
        if not self.accept("{"):
            return {}
        out: dict[str, str] = {}
        while not self.accept("}"):
            if out:
                self.expect(",")
            key = self.next()[1]
            self.expect("=")
            out[key] = self.meta_value()
        if "device" in out:
            out["device"] = long_device(out["device"])
        if "buffers" in out:
            out["buffers"] = tuple(out["buffers"])
        return out

    def meta_value(self) -> Any:
        """A string, or a list of ints (planned buffers)."""
        if self.accept("["):
            items: list[int] = []
            while not self.accept("]"):
                if items:
                    self.expect(",")
                items.append(int(self.next()[1]))
            return items
        return json.loads(self.next()[1])

    def attr_value(self) -> Any:
        kind, text, line = self.peek()
        if kind == "number":
            self.i += 1
            return _parse_number(text)
        if kind == "string":
            self.i += 1
            return json.loads(text)
        if text == "[":
            self.i += 1
            items = []
            while not self.accept("]"):
                if items:
                    self.expect(",")
                items.append(self.attr_value())
            return tuple(items)
        if kind == "ident":
            if text in ("true", "false"):
                self.i += 1
                return text == "true"
            if text == "none":
                self.i += 1
                return None
            if text == "dense":
                return self.dense()
            if text in _DTYPE_SHORTS:
                if self.peek(1)[1] == "[":
                    return self.tensor_type()
                self.i += 1
                return as_dtype(text)
        raise self.fail("an attribute value")

    def dense(self) -> ArrayAttr:
        self.expect("dense")
        self.expect("<")
        ttype = self.tensor_type()
        self.expect(">")
        np_dtype = ttype.dtype.np_dtype
        if self.peek()[0] == "b64":
            raw = base64.b64decode(self.next()[1][4:-1])
            arr = np.frombuffer(raw, dtype=np_dtype).reshape(ttype.shape)
            return ArrayAttr(arr)
        self.expect("(")
        items: list[str] = []
        while not self.accept(")"):
            if items:
                self.expect(",")
            items.append(self.next()[1])
        if ttype.dtype.is_bool:
            flat = np.array([s == "true" for s in items], dtype=np.bool_)
        else:
            flat = np.array([np_dtype.type(s) for s in items], dtype=np_dtype)
        return ArrayAttr(flat.reshape(ttype.shape))

    def tensor_type(self) -> TensorType:
        kind, short, line = self.next()
        if short not in _DTYPE_SHORTS:
            raise ParseError(f"line {line}: expected a dtype, got {short!r}")
        dtype: DType = as_dtype(short)
        self.expect("[")
        if self.accept("*"):
            self.expect("]")
            return TensorType(dtype, None)
        dims: list[Any] = []
        while not self.accept("]"):
            if dims:
                self.expect(",")
            kind, text, line = self.next()
            if text == "?":
                dims.append(None)
            elif kind == "number":
                dims.append(int(text))
            elif kind == "ident":
                dims.append(text)
            else:
                raise ParseError(f"line {line}: bad dimension {text!r}")
        return TensorType(dtype, tuple(dims))


def _parse_number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


def _parse_loc(text: str) -> Loc:
    file, _, line = text.rpartition(":")
    return Loc(file, int(line))


def parse_graph(text: str) -> Graph:
    """Parse one `func` in the printer's text form."""
    p = _Parser(text)
    g = p.graph()
    if p.peek()[0] != "eof":
        raise p.fail("end of input")
    return g
