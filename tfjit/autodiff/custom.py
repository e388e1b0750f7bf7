"""`@tf.custom_gradient` with TF 1.x semantics: the function returns `(y, grad_fn)`.

The outputs pass through one `custom_gradient` node whose inputs are the outputs, the
function's arguments and the variables it read; its gradient rule calls `grad_fn` and
gives nothing to the outputs' own inputs, so the function's body is never differentiated.
"""
from __future__ import annotations

import functools
import inspect
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..compat.graph_keys import GraphKeys
from ..compat.math_ops import emit
from ..ir.graph import Value
from ..ir.types import TensorType
from ..ops.registry import Fusion, register, set_gradient
from ..trace.graph import Graph, get_default_graph
from ..trace.tensor import Operation, Tensor, convert_to_tensor


@dataclass(frozen=True)
class _Entry:
    """What the rule needs to call the user's `grad_fn` for one application of the function."""

    grad_fn: Callable[..., Any]
    num_args: int
    variables: tuple[Any, ...]


_ENTRIES: dict[int, _Entry] = {}
_keys = itertools.count()


def _rule(in_types: tuple[TensorType, ...], grad_fn: int, num_outputs: int) -> tuple[TensorType, ...]:
    return in_types[:num_outputs]


def _reference(*args: Any, grad_fn: int, num_outputs: int) -> tuple[Any, ...]:
    return tuple(args[:num_outputs])


register("custom_gradient", _rule, _reference, Fusion.LAYOUT,
         doc="identity on the first `num_outputs` inputs; the gradient is a user's grad_fn")


@set_gradient("custom_gradient")
def _custom_gradient_grad(op: Operation, *dys: Tensor) -> tuple[Any, ...]:
    entry = _ENTRIES[op.get_attr("grad_fn")]
    if entry.variables:
        arg_grads, var_grads = entry.grad_fn(*dys, variables=list(entry.variables))
    else:
        arg_grads, var_grads = entry.grad_fn(*dys), []
    arg_grads = _as_list(arg_grads)
    if len(arg_grads) != entry.num_args or len(_as_list(var_grads)) != len(entry.variables):
        raise ValueError(f"custom_gradient: grad_fn returned {len(arg_grads)} gradients for "
                         f"{entry.num_args} inputs (and {len(_as_list(var_grads))} for "
                         f"{len(entry.variables)} variables)")
    return (None,) * len(dys) + tuple(arg_grads) + tuple(_as_list(var_grads))


def custom_gradient(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: `f(*xs)` returns `(y, grad_fn)`; `grad_fn(*dys)` returns one gradient per x.

    When `f` reads variables that are not among its arguments, `grad_fn` must accept a
    `variables` keyword and return `(grads_for_xs, grads_for_variables)`, as in TF 1.x.
    """

    @functools.wraps(f)
    def decorated(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError("The custom_gradient decorator supports positional arguments only (as TF 1.x's "
                            f"graph mode does), got keywords {sorted(kwargs)}")
        xs = [convert_to_tensor(a) for a in args]
        graph = xs[0].graph if xs else get_default_graph()
        start = len(graph.nodes)
        result, grad_fn = f(*xs)
        ys = _as_list(result)
        variables = _variables_read(graph, start, xs, ys)
        if variables and "variables" not in inspect.signature(grad_fn).parameters:
            raise TypeError("If using @custom_gradient with a function that uses variables, then grad_fn "
                            "must accept a keyword argument 'variables'.")
        key = next(_keys)
        _ENTRIES[key] = _Entry(grad_fn, len(xs), tuple(v for v, _ in variables))
        inputs = [convert_to_tensor(y) for y in ys] + xs + [t for _, t in variables]
        op = emit("custom_gradient", inputs, {"grad_fn": key, "num_outputs": len(ys)}, name="IdentityN")
        outs = op.outputs[:len(ys)]
        return outs if isinstance(result, (list, tuple)) else outs[0]

    return decorated


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _variables_read(graph: Graph, start: int, xs: Sequence[Tensor], ys: Sequence[Any]) -> list[tuple[Any, Tensor]]:
    """(Variable, its value) for each variable the nodes built by `f` read, arguments excluded."""
    args = {x.value for x in xs}
    found: dict[Value, None] = {}
    for node in graph.nodes[start:]:
        for v in node.inputs:
            if v.node.op == "variable" and v not in args:
                found[v] = None
    by_value = {var.op.outputs[0].value: var for var in _all_variables(graph)}
    return [(by_value.get(v, graph.operation(v.node).outputs[v.index]), graph.operation(v.node).outputs[v.index])
            for v in found]


def _all_variables(graph: Graph) -> list[Any]:
    return graph.get_collection(GraphKeys.GLOBAL_VARIABLES) + graph.get_collection(GraphKeys.LOCAL_VARIABLES)
