"""Reverse-mode autodiff over the graph: `tf.gradients`.

One driver for every op: it walks the nodes on paths from `xs` to `ys` in reverse
topological order, sums the contributions to a value used more than once, calls the op's
gradient rule (`OpDef.grad`, written with ordinary ops), and sums the gradient of a
broadcast input back to that input's shape — the only place broadcasting is undone.
"No gradient" is a symbolic zero (None) that is never materialised unless asked for.
Backward nodes are named under `gradients/<op>_grad/` and carry their forward node's line.
"""
from __future__ import annotations

import contextlib
import enum
from typing import Any, Iterable, Iterator, Sequence

from ..compat.array_ops import ones_like, zeros_like
from ..compat.math_ops import add_n, reduce_sum
from ..errors import where
from ..ir.graph import Loc, Node, Value
from ..ir.types import Dim
from ..ops.registry import Fusion, OpDef, get_op
from ..trace.graph import Graph
from ..trace.tensor import Tensor, convert_to_tensor
from .backward_ops import sum_to_shape


Shape = tuple[Dim, ...] | None


class UnconnectedGradients(enum.Enum):
    """What `tf.gradients` returns for an x that ys do not depend on."""

    NONE = "none"
    ZERO = "zero"


# Inputs that broadcast other than as a NumPy-broadcasting (Fusion.BROADCAST) op's inputs do:
# {op: {input index: trailing dims that never broadcast}}; an input not listed never broadcasts.
_BROADCASTING_INPUTS: dict[str, dict[int, int]] = {
    "matmul": {0: 2, 1: 2},  # batch dims broadcast, the two matrix dims do not
    "softmax_cross_entropy_with_logits": {1: 0},  # labels broadcast to the logits' shape
    "bias_add": {},  # the rule sums the bias gradient itself: NCHW is not a NumPy broadcast
    "broadcast_to": {0: 0},
}


def gradients(ys: Any, xs: Any, grad_ys: Any = None, name: str = "gradients",
              colocate_gradients_with_ops: bool = False, gate_gradients: bool = False,
              aggregation_method: Any = None, stop_gradients: Any = None,
              unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE) -> list[Tensor | None]:
    """d(sum of ys)/dx for each x, as new graph nodes (TF 1.x `tf.gradients`).

    `grad_ys` weights each y (default ones); `stop_gradients` are values treated as
    constants; an x the ys do not depend on gets None, or zeros with
    `unconnected_gradients='zero'`. Integer and bool tensors never get a gradient.
    `colocate_gradients_with_ops` puts each backward node on its forward node's device;
    `gate_gradients` and `aggregation_method` are accepted for compatibility (the passes
    schedule and fuse the sums).
    """
    y_tensors, x_tensors = _tensors(ys, "ys"), _tensors(xs, "xs")
    stops = {t.value for t in _tensors(stop_gradients or [], "stop_gradients")}
    mode = UnconnectedGradients(getattr(unconnected_gradients, "value", unconnected_gradients))
    graph = _common_graph(y_tensors + x_tensors)
    with graph.as_default(), graph.name_scope(name or "gradients"):
        seeds = _seeds(y_tensors, grad_ys)
        sweep = _Backward(graph, [t.value for t in x_tensors], stops, colocate_gradients_with_ops)
        totals = sweep.run(list(zip((t.value for t in y_tensors), seeds)))
        return [_unconnected(totals.get(x.value), x, mode) for x in x_tensors]


# -- inputs --------------------------------------------------------------------------------------
def _tensors(items: Any, what: str) -> list[Tensor]:
    listed = list(items) if isinstance(items, (list, tuple)) else [items]
    out = []
    for item in listed:
        if hasattr(item, "_as_graph_tensor"):
            item = item._as_graph_tensor()
        if not isinstance(item, Tensor):
            raise TypeError(f"tf.gradients: every element of `{what}` must be a Tensor or Variable, "
                            f"got {type(item).__name__}")
        out.append(item)
    return out


def _common_graph(tensors: Sequence[Tensor]) -> Graph:
    graph = tensors[0].graph
    for t in tensors:
        if t.graph is not graph:
            raise ValueError(f"tf.gradients: {t.name} is from a different graph than {tensors[0].name}")
    return graph


def _seeds(ys: list[Tensor], grad_ys: Any) -> list[Tensor]:
    """The cotangent of each y: ones by default, else the given tensors in y's dtype."""
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    elif not isinstance(grad_ys, (list, tuple)):
        grad_ys = [grad_ys]
    if len(grad_ys) != len(ys):
        raise ValueError(f"tf.gradients: got {len(grad_ys)} grad_ys for {len(ys)} ys")
    seeds = []
    for i, (y, g) in enumerate(zip(ys, grad_ys)):
        if g is None:
            seeds.append(ones_like(y, name=f"grad_ys_{i}"))
            continue
        g = convert_to_tensor(g, dtype=y.dtype) if not isinstance(g, Tensor) else g
        if g.dtype != y.dtype:
            raise TypeError(f"tf.gradients: grad_ys[{i}] has dtype {g.dtype.name}, but y {y.name} "
                            f"has dtype {y.dtype.name}")
        seeds.append(g)
    return seeds


def _unconnected(total: Tensor | None, x: Tensor, mode: UnconnectedGradients) -> Tensor | None:
    if total is not None or mode is UnconnectedGradients.NONE:
        return total
    return zeros_like(x)


# -- the backward pass ---------------------------------------------------------------------------
@contextlib.contextmanager
def backward_location(graph: Graph, loc: Loc | None) -> Iterator[None]:
    """Nodes emitted inside carry `loc` (the forward node's line) instead of the caller's."""
    saved, graph.backward_loc = graph.backward_loc, loc
    try:
        yield
    finally:
        graph.backward_loc = saved


class _Backward:
    """One reverse sweep from seeded values to `xs` over the nodes between them."""

    def __init__(self, graph: Graph, xs: list[Value], stops: set[Value], colocate: bool):
        self.graph = graph
        self.xs = xs
        self.stops = stops
        self.colocate = colocate
        self.reach: set[Value] = set()
        self.pending: dict[Value, list[Tensor]] = {}
        self.totals: dict[Value, Tensor] = {}

    def run(self, seeds: list[tuple[Value, Tensor]]) -> dict[Value, Tensor]:
        order = _topological(v.node for v, _ in seeds)
        self.reach = _reachable(order, self.xs, self.stops)
        for value, seed in seeds:
            if value in self.reach:
                self.pending.setdefault(value, []).append(seed)
        for node in reversed(order):
            if any(v in self.reach for v in node.inputs):
                self._visit(node)
        return {x: total for x in self.xs if (total := self._final(x)) is not None}

    def _visit(self, node: Node) -> None:
        if not any(self._has_gradient(v) for v in node.outputs):
            return
        with self._at(node):
            out_grads = [self._total(v) if self._has_gradient(v) else None for v in node.outputs]
            opdef = get_op(node.op)
            in_grads = _call_rule(opdef, node, self.graph, self._materialise(node, out_grads))
            for index, (value, grad) in enumerate(zip(node.inputs, in_grads)):
                if grad is not None and value in self.reach:
                    grad = _fit(grad, value, node, opdef, index, self.graph)
                    self.pending.setdefault(value, []).append(grad)

    @contextlib.contextmanager
    def _at(self, node: Node) -> Iterator[None]:
        """Name scope `<node>_grad`, the node's source line and, if asked, its device."""
        device = self.graph.device(node.device) if self.colocate else contextlib.nullcontext()
        with self.graph.name_scope(f"{node.name}_grad"), backward_location(self.graph, node.loc), device:
            yield

    def _has_gradient(self, value: Value) -> bool:
        return value not in self.stops and (value in self.pending or value in self.totals)

    def _total(self, value: Value) -> Tensor | None:
        """The sum of every contribution to `value`'s gradient (None when there is none)."""
        if value not in self.totals:
            grads = self.pending.pop(value, [])
            if not grads:
                return None
            self.totals[value] = grads[0] if len(grads) == 1 else add_n(grads)
        return self.totals[value]

    def _final(self, x: Value) -> Tensor | None:
        """x's gradient; contributions still pending are summed at x's own line."""
        with backward_location(self.graph, x.node.loc):
            return self._total(x)

    def _materialise(self, node: Node, out_grads: list[Tensor | None]) -> list[Tensor | None]:
        """Zeros for the float outputs of a multi-result node that got no gradient."""
        return [zeros_like(_tensor(self.graph, v)) if g is None and v.type.dtype.is_floating else g
                for v, g in zip(node.outputs, out_grads)]


def _topological(roots: Iterable[Node]) -> list[Node]:
    """Every node the roots depend on through data edges (control edges carry no gradient),
    producers before consumers."""
    order: list[Node] = []
    done: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in roots]
    while stack:
        node, inputs_done = stack.pop()
        if node in done:
            continue
        if inputs_done:
            done.add(node)
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((v.node, False) for v in node.inputs if v.node not in done)
    return order


def _reachable(order: list[Node], xs: list[Value], stops: set[Value]) -> set[Value]:
    """Values a gradient can flow to from xs: float results of differentiable ops, not stopped."""
    reach = {x for x in xs if x.type.dtype.is_floating}
    for node in order:
        if get_op(node.op).differentiable and any(v in reach for v in node.inputs):
            reach.update(v for v in node.outputs if v.type.dtype.is_floating and v not in stops)
    return reach


def _call_rule(opdef: OpDef, node: Node, graph: Graph, out_grads: list[Tensor | None]) -> Sequence[Any]:
    if opdef.grad is None:
        raise LookupError(f"No gradient defined for {where(node.op, node.loc)} ({node.name}): "
                          f"register a rule with tfjit.ops.registry.set_gradient({node.op!r}) in "
                          "tfjit/autodiff, or wrap the computation in tf.stop_gradient")
    in_grads = opdef.grad(graph.operation(node), *out_grads)
    if len(in_grads) != len(node.inputs):
        raise AssertionError(f"tfjit bug: the gradient rule of {node.op} returned {len(in_grads)} "
                             f"gradients for {len(node.inputs)} inputs")
    return in_grads


def _tensor(graph: Graph, value: Value) -> Tensor:
    return graph.operation(value.node).outputs[value.index]


# -- fitting a rule's gradient to its input ------------------------------------------------------
def _fit(grad: Any, value: Value, node: Node, opdef: OpDef, index: int, graph: Graph) -> Tensor:
    """The rule's gradient for input `index`, checked, and summed back over broadcast axes."""
    grad = grad if isinstance(grad, Tensor) else convert_to_tensor(grad, dtype=value.type.dtype)
    if grad.dtype != value.type.dtype:
        raise TypeError(f"the gradient for input {index} of {where(node.op, node.loc)} ({node.name}) "
                        f"is {grad.dtype.name}, but the input is {value.type.dtype.name}")
    core = _broadcast_core(opdef, index)
    if core is not None:
        grad = sum_to(grad, _tensor(graph, value), core, _partners(node, index))
    if not _shapes_may_match(grad.type.shape, value.type.shape):
        raise ValueError(f"the gradient for input {index} of {where(node.op, node.loc)} ({node.name}) "
                         f"has type {grad.type}, but the input is {value.type}")
    return grad


def _broadcast_core(opdef: OpDef, index: int) -> int | None:
    """How many trailing dims of input `index` never broadcast; None if it never broadcasts."""
    if opdef.name in _BROADCASTING_INPUTS:
        return _BROADCASTING_INPUTS[opdef.name].get(index)
    return 0 if opdef.fusion is Fusion.BROADCAST else None


def _partners(node: Node, index: int) -> list[Shape]:
    """The shapes input `index` was broadcast against: the op's other operands (integer
    inputs are run-time arguments such as broadcast_to's dims), or else its result."""
    own = node.inputs[index].type.dtype
    others = [v.type.shape for j, v in enumerate(node.inputs)
              if j != index and (v.type.dtype == own or v.type.dtype.is_bool)]
    return others or [node.types[0].shape]


def sum_to(grad: Tensor, like: Tensor, core: int = 0, partners: list[Shape] | None = None) -> Tensor:
    """`grad` summed down to `like`'s shape: static sums where the shapes tell which axes were
    broadcast, else the run-time `sum_to_shape` op. The last `core` dims never broadcast;
    `partners` are the shapes `like` was broadcast against (default: `grad`'s)."""
    partners = [grad.type.shape] if partners is None else partners
    axes = _broadcast_axes(grad.type.shape, like.type.shape, core, partners)
    if axes is None:
        return sum_to_shape(grad, like)
    lead, stretched = axes
    if stretched:
        grad = reduce_sum(grad, axis=stretched, keepdims=True)
    if lead:
        grad = reduce_sum(grad, axis=list(range(lead)))
    return grad


def _broadcast_axes(grad: Shape, like: Shape, core: int, partners: list[Shape]) -> tuple[int, list[int]] | None:
    """(number of leading axes to drop, axes to sum keeping dims), or None when unknown dims
    leave it open whether `like` was broadcast."""
    if grad is None or like is None or len(grad) < len(like):
        return None
    lead = len(grad) - len(like)
    batch = len(like) - core
    stretched = []
    for i, d in enumerate(like[:batch]):
        g = grad[lead + i]
        if d == 1 and g != 1:
            stretched.append(lead + i)
        elif not (isinstance(d, int) or g == 1 or (isinstance(d, str) and d == g)
                  or _never_wider(partners, batch - i, core)):
            return None  # an unknown dim of `like` may be 1 while a partner's is not
    return lead, stretched


def _never_wider(partners: list[Shape], from_right: int, core: int) -> bool:
    """Whether every partner's dim aligned `from_right` places before the core is 1 or absent."""
    for shape in partners:
        if shape is None:
            return False
        batch = shape[:len(shape) - core]
        if from_right <= len(batch) and batch[len(batch) - from_right] != 1:
            return False
    return True


def _shapes_may_match(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(not (isinstance(x, int) and isinstance(y, int) and x != y)
                                    for x, y in zip(a, b))

