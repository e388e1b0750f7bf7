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

from tfjit.ir.attrs import ArrayAttr
from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op

from .rewrite import Rewriter

# A rule gives the value standing for the node, a node to emit in its place (after any nodes
# it needs, when it gives a tuple), or None.
Rule = Callable[[Node, tuple[Value, ...]], "Value | Node | tuple[Node, ...] | None"]


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
    """sum_to_shape to the shape the value already has (fully known) -> the value."""
    x = ins[0]
    if x.type.is_fully_defined and x.type == node.types[0]:
        return x
    return None


# -- splats: a scalar broadcast to a static shape ------------------------------------------------
# A scalar loss's gradient seed is ones_like(loss), spread by each reduction's gradient with
# unreduce and scaled elementwise. Spelled as broadcasts of one folded scalar it depends on
# nothing computed, so the loss's gradient can fuse into the loss's own kernel (the seed is
# then a constant inside it) instead of waiting for the loss in a kernel of its own.
def _constant(node: Node, array: np.ndarray) -> Node:
    attr = ArrayAttr(array)
    return Node("constant", (), (("value", attr),), (attr.type,), device=node.device, loc=node.loc, name=node.name)


def _splat(node: Node, scalar: Value) -> Node:
    """broadcast_to(scalar) to `node`'s static shape, standing for `node`."""
    return node.evolve(op="broadcast_to", inputs=(scalar,), attrs=(("shape", tuple(node.types[0].shape)),))


def _splatted(v: Value) -> Value | None:
    """The scalar `v` holds everywhere: `v` itself when it is a scalar, the scalar a
    broadcast_to spreads, else None."""
    if v.type.shape == ():
        return v
    if v.node.op == "broadcast_to" and len(v.node.inputs) == 1 and v.node.inputs[0].type.shape == ():
        return v.node.inputs[0]
    return None


def _scalar_like(node: Node, ins: tuple[Value, ...]) -> Node | None:
    """ones_like / zeros_like of a scalar -> the constant."""
    t = node.types[0]
    if t.shape != () or ins[0].type.shape != ():
        return None
    return _constant(node, np.full((), 1 if node.op == "ones_like" else 0, t.dtype.np_dtype))


def _unreduce(node: Node, ins: tuple[Value, ...]) -> Value | Node | None:
    """unreduce to the value's own static shape -> the value; unreduce of a splat to a static
    shape -> the splat at that shape (it no longer waits for the value whose shape it takes)."""
    x = ins[0]
    if x.type.is_fully_defined and x.type == node.types[0]:
        return x
    scalar = _splatted(x)
    if scalar is None or not node.types[0].is_fully_defined or scalar.type.dtype != node.types[0].dtype:
        return None
    return _splat(node, scalar)


def _splat_arithmetic(node: Node, ins: tuple[Value, ...]) -> tuple[Node, Node] | None:
    """An elementwise op of constant splats and scalar constants -> the splat of its value,
    computed by the op's reference as constant folding does (exact: the same op on the same
    values)."""
    scalars = [_splatted(v) for v in ins]
    if any(s is None or s.node.op != "constant" for s in scalars) or all(v.type.shape == () for v in ins):
        return None
    t = node.types[0]
    if not t.is_fully_defined:
        return None
    with np.errstate(all="ignore"):
        value = get_op(node.op).reference(*(s.node.attr("value").array for s in scalars), **node.attr_dict)
    value = np.asarray(value)
    if value.shape != () or value.dtype != t.dtype.np_dtype:
        return None
    c = _constant(node, value)
    return c, _splat(node, c.out)


def _splat_operand(node: Node, ins: tuple[Value, ...]) -> Node | None:
    """An elementwise op of a splat and an operand of the result's own type -> the op of the
    splatted scalar (exact: the same op on the same values). Kernels read a scalar once, where
    they index a broadcast array element by element (a strided read that kept a fused loss
    gradient's loop from vectorising: the regression step ran 10% slower, measured)."""
    t = node.types[0]
    scalars = [v.node.inputs[0] if v.node.op == "broadcast_to" and v.type.shape != () and _splatted(v) is not None
               else None for v in ins]
    if all(s is None for s in scalars) or not any(s is None and v.type == t for s, v in zip(scalars, ins)):
        return None
    return node.evolve(inputs=tuple(v if s is None else s for s, v in zip(scalars, ins)))


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
    "unreduce": _unreduce,
    "ones_like": _scalar_like,
    "zeros_like": _scalar_like,
    "pow": _pow,
}
for _op in ("add", "subtract", "multiply", "divide"):
    RULES[_op] = (lambda neutral: lambda node, ins: neutral(node, ins) or _splat_arithmetic(node, ins)
                  or _splat_operand(node, ins))(RULES[_op])


def simplify(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    for node in graph.nodes:
        rule = RULES.get(node.op)
        result = rule(node, rw.inputs(node)) if rule is not None and not node.control_inputs else None
        if result is None:
            rw.keep(node)
        elif isinstance(result, tuple):
            for needed in result[:-1]:
                rw.emit(None, needed)
            rw.emit(node, result[-1])
        elif isinstance(result, Node):
            rw.emit(node, result)
        else:
            rw.replace(node, [result])
    return rw.finish()
