"""Generating numba source for fused kernels: a line builder and the element expressions.

A body value is computed by `ElementWriter.value(v)` as a local scalar inside the kernel's
loop; loads of kernel inputs come from `load`, which the kernel kind (loop, row-reduction)
supplies. Every line carries the user's `# file:line`, so a kernel reads like their model;
the compilers cache and compile a kernel by its code alone (`strip_comments`).
"""
from __future__ import annotations

import io
import tokenize
from typing import Callable

from tfjit.ir.graph import Graph, Node, Value

from . import scalar

# Ops that only re-index: inside a kernel whose values share one iteration space they are
# the identity on elements (the backend prepares inputs so that this holds).
INDEX_ONLY = {"broadcast_to", "expand_dims", "squeeze", "reshape", "unreduce", "identity", "stop_gradient"}


class Lines:
    """Indented source lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def add(self, line: str, comment: str | None = None) -> None:
        self.lines.append("    " * self.depth + line + (f"  # {comment}" if comment else ""))

    def indent(self) -> None:
        self.depth += 1

    def dedent(self) -> None:
        self.depth -= 1

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"


def strip_comments(source: str) -> str:
    """`source` without its comments and the lines only they filled, so that the kernel's
    identity is its code. Code without string literals is cut at each line's `#`; other code
    is tokenized (which cost 1 ms a kernel on a warm first call, measured)."""
    lines = source.splitlines()
    if "'" not in source and '"' not in source:
        return "\n".join(line.partition("#")[0].rstrip() for line in lines if line.partition("#")[0].strip()) + "\n"
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col].rstrip()
    return "\n".join(line for line in lines if line.strip()) + "\n"


class ElementWriter:
    """Writes the scalar computation of body values, each once, as named locals; `vector=False`
    where the code cannot vectorise (float32 transcendentals then call libm, `scalar.expression`)."""

    def __init__(self, lines: Lines, load: Callable[[Value], str], prefix: str = "v", vector: bool = True):
        self.lines = lines
        self.load = load
        self.prefix = prefix
        self.vector = vector
        self.names: dict[Value, str] = {}

    def value(self, v: Value) -> str:
        if v in self.names:
            return self.names[v]
        node = v.node
        if node.op == "param":
            name = self.load(v)
        elif node.op == "constant":
            name = self._constant(node)
        elif node.op in INDEX_ONLY:
            name = self.value(node.inputs[0])
        else:
            args = [self.value(i) for i in node.inputs]
            expr = element_expression(node, args, self.vector)
            if expr is None:
                raise NotImplementedError(f"no element expression for {node.op}")
            name = f"{self.prefix}{len(self.names)}"
            self.lines.add(f"{name} = {expr}", node.loc.short if node.loc else None)
        self.names[v] = name
        return name

    def _constant(self, node: Node) -> str:
        array = node.attr("value").array
        if array.size != 1:
            raise NotImplementedError("a non-scalar constant inside a kernel")
        dtype = node.types[0].dtype
        item = array.reshape(()).item()
        literal = repr(bool(item)) if dtype.is_bool else repr(item)
        return f"_{dtype.short}({literal})"


def element_expression(node: Node, args: list[str], vector: bool = True) -> str | None:
    operand = next((v.type.dtype for v in node.inputs if not v.type.dtype.is_bool), None)
    if node.op == "select":
        operand = node.inputs[1].type.dtype
    dtype = operand or (node.inputs[0].type.dtype if node.inputs else node.types[0].dtype)
    if node.types[0].dtype.short not in scalar.SUPPORTED_DTYPES:
        return None
    return scalar.expression(node.op, args, node.attr_dict, dtype, vector)


def supported(body: Graph) -> bool:
    """Whether every node of a kernel body has an element form (else: reference fallback)."""
    for node in body.nodes:
        if node.op in INDEX_ONLY or node.op == "constant":
            if node.op == "constant" and node.attr("value").array.size != 1:
                return False
            continue
        if element_expression(node, ["a"] * len(node.inputs)) is None:
            return False
    return all(p.type.dtype.short in scalar.SUPPORTED_DTYPES for p in body.params)
