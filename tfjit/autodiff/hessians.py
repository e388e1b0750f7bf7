"""`tf.hessians`: second derivatives by differentiating the gradient once per element of x."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..compat.array_ops import reshape
from ..compat.layout_ops import stack
from ..compat.math_ops import reduce_sum
from ..trace.tensor import Tensor, convert_to_tensor
from .driver import _common_graph, _tensors, gradients


def hessians(ys: Any, xs: Any, name: str = "hessians", colocate_gradients_with_ops: bool = False,
             gate_gradients: bool = False, aggregation_method: Any = None) -> list[Tensor | None]:
    """For each x, the Hessian of sum(ys) with respect to x, of shape x.shape + x.shape.

    Row j is the gradient of the j-th element of the gradient (picked by a one-hot weight,
    so no slicing op is needed). x's shape must be known while building, since the rows are
    built one by one rather than in a loop. None where ys do not depend on x, as TF.
    """
    x_tensors = _tensors(xs, "xs")
    graph = _common_graph(_tensors(ys, "ys") + x_tensors)
    with graph.as_default(), graph.name_scope(name):
        firsts = gradients(ys, x_tensors)
        return [None if g is None else _hessian(g, x) for g, x in zip(firsts, x_tensors)]


def _hessian(grad: Tensor, x: Tensor) -> Tensor:
    if not x.type.is_fully_defined:
        raise ValueError(f"tf.hessians needs x of a shape known while building, got {x.name} of shape {x.shape}")
    dims = list(x.type.shape)
    n = int(np.prod(dims, dtype=np.int64))
    rows = []
    for j in range(n):
        pick = np.zeros(n, x.dtype.np_dtype)
        pick[j] = 1
        element = reduce_sum(grad * convert_to_tensor(pick.reshape(dims)))
        rows.append(gradients(element, x, unconnected_gradients="zero")[0])
    return reshape(stack(rows), dims + dims)
