"""A weight's gradient-descent update by a product, as one GEMM into the weight.

Plain gradient descent fuses `W -= lr * x^T g` into one contraction body (matmul, multiply by
the learning rate, assign_sub). This kernel runs it as `W += (-lr) * x^T g` in one BLAS call
(alpha carries the scale, beta = 1 adds into the variable's array): one pass over the
weights and no product buffer, where the split path (contraction.split_assignments) wrote
the scaled product to scratch and subtracted it in a second kernel. The array is written in
place only under the store's rule (nothing else references it, tfjit/runtime/state.py);
otherwise the sum goes into a fresh copy, so reads still held keep the old value.

Covered: bodies of one float32/float64 2-D matmul of body params, optionally scaled by a
scalar param or constant, assigned with assign_sub or assign_add, whose only result (if
any) is the assignment's.

A step function that returns the new weights instead of assigning them (`W - lr * x^T g` as
a value) runs the same way into a copy of the weights (`GemmStepKernel`): no generated
epilogue loop, whose compile cost 70 ms of a cold first call (the MLP step, measured).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfjit.ir.graph import Graph, Node, Value

from .blas import add_product_into
from .buffers import POOL
from .contraction import covered, product

_SIGNS = {"assign_sub": -1.0, "assign_add": 1.0}


class GemmUpdateKernel:
    """`kernel(*args, state=state)`: `var += sign * scale * (a @ b)`; returns the body's results
    (the stored array, when the assignment is one)."""

    needs_state = True
    returns_tuple = True

    def __init__(self, name: str, assign: Node, matmul: Node, operands: tuple[int, int],
                 scale: int | float | None, returns_value: bool):
        self.var = assign.attr("var")
        self.sign = _SIGNS[assign.op]
        self.operands = operands
        self.scale = scale  # a param's index, a constant's value, or None for no scaling
        self.shape = tuple(matmul.types[0].shape)
        self.dtype = matmul.types[0].dtype.np_dtype
        self.transpose = (bool(matmul.attr("transpose_a")), bool(matmul.attr("transpose_b")))
        self.returns_value = returns_value
        op = "-=" if self.sign < 0 else "+="
        self.source = (f"# {name}: {self.var} {op} scale * matmul(a, b) as one GEMM into the variable "
                       f"(alpha = {'-' if self.sign < 0 else ''}scale, beta = 1)\n")

    def __call__(self, *args: np.ndarray, state: Any) -> tuple[np.ndarray, ...]:
        a, b = (args[i] for i in self.operands)
        scale = self._scale(args)
        a = np.swapaxes(a, -1, -2) if self.transpose[0] else a
        b = np.swapaxes(b, -1, -2) if self.transpose[1] else b
        with np.errstate(all="ignore"):  # inf * 0 is NaN silently, as in TF
            written = state.update_together([self.var], [(self.shape, self.dtype)], [True],
                                            lambda ws: add_product_into(ws[0], a, b, self.sign * scale))
            # None: the variable holds another shape or layout (or none): the reference's update
            stored = written[0] if written is not None else self._reference_update(args, scale, state)
        return (stored,) if self.returns_value else ()

    def _scale(self, args: tuple[np.ndarray, ...]) -> float:
        if self.scale is None:
            return 1.0
        if isinstance(self.scale, int):
            return float(np.asarray(args[self.scale]).reshape(()))
        return self.scale

    def _reference_update(self, args: tuple[np.ndarray, ...], scale: float, state: Any) -> np.ndarray:
        a, b = (args[i] for i in self.operands)
        ab = product(a, b, self.transpose, self.shape, self.dtype)
        value = ab * self.dtype.type(scale) if self.scale is not None else ab
        return state.update(self.var, value, np.subtract if self.sign < 0 else np.add)


def build(node: Node) -> GemmUpdateKernel | None:
    """The kernel for a fused contraction body that is a covered update (see the module
    docstring), or None."""
    body: Graph = node.attr("body")
    found = _scaled_product(body, tuple(_SIGNS))
    if found is None:
        return None
    matmul, assign, scale, value = found
    (out,) = matmul.types
    if assign.inputs != (value,) or tuple(assign.types[0].shape or ()) != tuple(out.shape):
        return None
    if any(r != assign.out for r in body.results):
        return None
    operands = (body.params.index(matmul.inputs[0]), body.params.index(matmul.inputs[1]))
    return GemmUpdateKernel(node.name or "update", assign, matmul, operands, scale, bool(body.results))


def _scaled_product(body: Graph, last_ops: tuple[str, ...]) -> tuple[Node, Node, int | float | None, Value] | None:
    """A body `matmul(a, b)` of two params, optionally times a scale, then one node of
    `last_ops`: (the matmul, that last node, the scale (see `_scalar`; None: 1), the scaled
    product); None for any other body."""
    nodes = [n for n in body.nodes if n.op != "constant"]
    if len(nodes) not in (2, 3) or nodes[0].op != "matmul" or nodes[-1].op not in last_ops:
        return None
    matmul = nodes[0]
    (out,) = matmul.types
    if not covered(matmul) or len(out.shape) != 2 or not all(v in body.params for v in matmul.inputs):
        return None
    if len(nodes) == 2:
        return matmul, nodes[-1], None, matmul.out
    scaled = nodes[1]
    if scaled.op != "multiply" or matmul.out not in scaled.inputs or scaled.types[0] != out:
        return None
    scale = _scalar(scaled.inputs[1] if scaled.inputs[0] == matmul.out else scaled.inputs[0], body, out)
    return None if scale is None else (matmul, nodes[-1], scale, scaled.out)


def _scalar(v: Value, body: Graph, out: Any) -> int | float | None:
    """A scale operand's param index or constant value; None for anything else."""
    if v.type.dtype != out.dtype or v.type.shape is None or len(v.type.shape) > 2 \
            or not all(d == 1 for d in v.type.shape):
        return None
    if v in body.params:
        return body.params.index(v)
    if v.node.op == "constant":
        return float(np.asarray(v.node.attr("value").array).reshape(()))
    return None


class GemmStepKernel:
    """`kernel(*args) -> (w + sign * scale * (a @ b),)`: the weights `w` copied into the result,
    then one GEMM adds the scaled product (alpha = sign * scale, beta = 1)."""

    returns_tuple = True

    def __init__(self, name: str, matmul: Node, operands: tuple[int, int], weights: int,
                 scale: int | float | None, sign: float):
        self.operands, self.weights, self.scale, self.sign = operands, weights, scale, sign
        self.shape = tuple(matmul.types[0].shape)
        self.dtype = matmul.types[0].dtype.np_dtype
        self.transpose = (bool(matmul.attr("transpose_a")), bool(matmul.attr("transpose_b")))
        op = "-" if sign < 0 else "+"
        self.source = (f"# {name}: out = w {op} scale * matmul(a, b) as a copy of w and one GEMM into it "
                       f"(alpha = {'-' if sign < 0 else ''}scale, beta = 1)\n")

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray]:
        """The result, in a recycled buffer or in `into`'s C-contiguous array ((0, array))."""
        a, b = (args[i] for i in self.operands)
        a = np.swapaxes(a, -1, -2) if self.transpose[0] else a
        b = np.swapaxes(b, -1, -2) if self.transpose[1] else b
        scale = 1.0 if self.scale is None else (
            float(np.asarray(args[self.scale]).reshape(())) if isinstance(self.scale, int) else self.scale)
        out = into[0][1] if into else POOL.empty(self.shape, self.dtype)
        np.copyto(out, args[self.weights])
        with np.errstate(all="ignore"):  # inf * 0 is NaN silently, as in TF
            add_product_into(out, a, b, self.sign * scale)
        return (out,)


def build_step(node: Node) -> GemmStepKernel | None:
    """The kernel for a fused contraction body `w - scale * (a @ b)` or `w + scale * (a @ b)`
    (the scale optional, `w` a body param of the product's type, the sum the only result),
    or None."""
    body: Graph = node.attr("body")
    found = _scaled_product(body, ("subtract", "add"))
    if found is None:
        return None
    matmul, step, scale, value = found
    (out,) = matmul.types
    if body.results != [step.out] or step.types[0] != out or value not in step.inputs:
        return None
    weights = step.inputs[0] if step.inputs[1] == value else step.inputs[1]
    if step.op == "subtract" and step.inputs != (weights, value):
        return None  # scale * (a @ b) - w: not a step
    if weights not in body.params or weights.type != out or weights == value:
        return None
    operands = (body.params.index(matmul.inputs[0]), body.params.index(matmul.inputs[1]))
    return GemmStepKernel(node.name or "step", matmul, operands, body.params.index(weights), scale,
                          -1.0 if step.op == "subtract" else 1.0)
