"""Algebraic simplification: rewrites that are exact for every input, NaN and inf included.

Each rule looks at one node (with its inputs already rewritten) and returns the value that
replaces it, a new node, or None. A rule only fires when the replacement has exactly the
node's type, so broadcasting is never lost. Left out on purpose, because they are not exact:
`exp(log x)` (rounding), `log(exp x)` (overflow), `pow(x, 0.5) -> sqrt(x)` (pow(-inf, 0.5) is
inf, sqrt(-inf) is NaN).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from .rewrite import Rewriter

Rule = Callable[[Node, tuple[Value, ...]], "Value | Node | None"]


def _const(v: Value) -> np.ndarray | None:
    return v.node.attr("value").array if v.node.op == "constant" else None


def _is_all(v: Value, number: float) -> bool:
    c = _const(v)
    return c is not None and c.size > 0 and bool(np.all(c == number))


def _same_type(node: Node, v: Value) -> Value | None:
    return v if v.type == node.types[0] else None


def _neutral(number: float, commutative: bool) -> Rule:
    """x op c -> x (and c op x -> x when commutative) for a constant c of all `number`."""

    def rule(node: Node, ins: tuple[Value, ...]) -> Value | None:
        a, b = ins
        if _is_all(b, number):
            return _same_type(node, a)
        if commutative and _is_all(a, number):
            return _same_type(node, b)
        return None

    return rule


def _involution(node: Node, ins: tuple[Value, ...]) -> Value | None:
    """neg(neg(x)) -> x."""
    inner = ins[0].node
    if inner.op == node.op and not inner.control_inputs:
        return _same_type(node, inner.inputs[0])
    return None


def _passthrough(node: Node, ins: tuple[Value, ...]) -> Value | None:
    """identity(x), stop_gradient(x) at run time, unfed placeholder defaults -> x."""
    return _same_type(node, ins[0])


def _cast(node: Node, ins: tuple[Value, ...]) -> Value | None:
    """cast(x) to x's own dtype -> x."""
    return _same_type(node, ins[0]) if node.attr("dtype") == ins[0].type.dtype else None


def _transpose(node: Node, ins: tuple[Value, ...]) -> Value | Node | None:
    """transpose(transpose(x, p), q) -> transpose(x, p[q]), or x when that is the identity."""
    inner = ins[0].node
    if inner.op != "transpose" or inner.control_inputs:
        return None
    p, q = inner.attr("perm"), node.attr("perm")
    if p is None or q is None:
        return None
    perm = tuple(p[i] for i in q)
    if perm == tuple(range(len(perm))):
        return _same_type(node, inner.inputs[0])
    return node.evolve(inputs=(inner.inputs[0],), attrs=(("perm", perm),))


def _reshape(node: Node, ins: tuple[Value, ...]) -> Value | Node | None:
    """reshape(reshape(x)) -> reshape(x); a reshape to x's own static shape -> x."""
    if len(ins) != 1:
        return None
    if ins[0].type.is_fully_defined and ins[0].type == node.types[0]:
        return ins[0]
    inner = ins[0].node
    if inner.op == "reshape" and len(inner.inputs) == 1 and not inner.control_inputs:
        return node.evolve(inputs=(inner.inputs[0],))
    return None


def _same_static_shape(node: Node, ins: tuple[Value, ...]) -> Value | None:
    """sum_to_shape / unreduce to the shape the value already has (fully known) -> the value."""
    x = ins[0]
    if x.type.is_fully_defined and x.type == node.types[0]:
        return x
    return None


def _broadcast_to(node: Node, ins: tuple[Value, ...]) -> Value | None:
    return _same_type(node, ins[0]) if ins[0].type.is_fully_defined else None  # an unknown dim may be 1


def _pow(node: Node, ins: tuple[Value, ...]) -> Value | Node | None:
    """pow(x, 1) -> x; pow(x, 2) -> square(x) (both exact)."""
    x, y = ins
    if _is_all(y, 1):
        return _same_type(node, x)
    if _is_all(y, 2) and x.type == node.types[0]:
        return node.evolve(op="square", inputs=(x,), attrs=())
    return None


RULES: dict[str, Rule] = {
    "multiply": _neutral(1, commutative=True),
    "add": _neutral(0, commutative=True),
    "subtract": _neutral(0, commutative=False),
    "divide": _neutral(1, commutative=False),
    "neg": _involution,
    "identity": _passthrough,
    "stop_gradient": _passthrough,
    "placeholder_with_default": _passthrough,
    "cast": _cast,
    "transpose": _transpose,
    "reshape": _reshape,
    "broadcast_to": _broadcast_to,
    "sum_to_shape": _same_static_shape,
    "unreduce": _same_static_shape,
    "pow": _pow,
}


def simplify(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        rule = RULES.get(node.op)
        result = rule(node, rw.inputs(node)) if rule is not None and not node.control_inputs else None
        if result is None:
            rw.keep(node)
        elif isinstance(result, Node):
            rw.emit(node, result)
        else:
            rw.replace(node, [result])
    return rw.finish()
