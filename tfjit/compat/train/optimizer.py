"""TF1's `tf.train.Optimizer`: gradients, slot variables, and the update ops of one step.

`apply_gradients` builds a step in TF's order: slot variables are created once, outside any
control dependencies, on their variable's device (as are the updates); the writes of each
variable's update wait for every op of the gradient computation that reads that variable, so
all gradients of a step see the variables' pre-update values whatever order a scheduler
picks, even one that updates in place, while a variable's own gradient can still fuse into
its update kernel (waiting for *all* gradients, TF's GATE_GRAPH, would forbid that);
`_finish` groups the updates, and the global step is incremented after them.
Subclasses give `_create_slots`, `_prepare` and `_apply_dense` (TF's names), written with
ordinary ops and `_write` (an assign, assign_add or assign_sub node).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ...autodiff import gradients
from ...ir.graph import Value
from ...ir.types import float16, float32, float64
from ...runtime.program import needed_nodes
from ...trace.graph import get_default_graph
from ...trace.tensor import Operation, Tensor, convert_to_tensor
from ..array_ops import zeros
from ..control_flow import group, tuple_
from ..graph_keys import GraphKeys
from ..variables import Variable, trainable_variables

GATE_NONE, GATE_OP, GATE_GRAPH = 0, 1, 2
_VALID_DTYPES = (float16, float32, float64)


class Optimizer:
    """Base class of the TF1 optimizers (`minimize` = `compute_gradients` + `apply_gradients`)."""

    GATE_NONE, GATE_OP, GATE_GRAPH = GATE_NONE, GATE_OP, GATE_GRAPH

    def __init__(self, use_locking: bool, name: str):
        if not name:
            raise ValueError("Must specify the optimizer name")
        self._use_locking = use_locking
        self._name = name
        self._slots: dict[str, dict[tuple[Any, str], Variable]] = {}
        self._non_slots: dict[tuple[Any, str], Variable] = {}
        self._gate: list[Operation] = []  # the readers the writes of the update being built wait for

    def get_name(self) -> str:
        return self._name

    # -- the public steps ----------------------------------------------------------------------
    def minimize(self, loss: Any, global_step: Any = None, var_list: Sequence[Variable] | None = None,
                 gate_gradients: int = GATE_OP, aggregation_method: Any = None,
                 colocate_gradients_with_ops: bool = False, name: str | None = None,
                 grad_loss: Any = None) -> Operation:
        """Add the ops that take one step downhill on `loss` (every trainable variable by default)."""
        grads_and_vars = self.compute_gradients(loss, var_list=var_list, gate_gradients=gate_gradients,
                                                grad_loss=grad_loss)
        if all(g is None for g, _ in grads_and_vars):
            raise ValueError("No gradients provided for any variable, check your graph for ops that do "
                             f"not support gradients, between variables {[str(v) for _, v in grads_and_vars]} "
                             f"and loss {loss}.")
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def compute_gradients(self, loss: Any, var_list: Sequence[Variable] | None = None,
                          gate_gradients: int = GATE_OP, aggregation_method: Any = None,
                          colocate_gradients_with_ops: bool = False,
                          grad_loss: Any = None) -> list[tuple[Tensor | None, Variable]]:
        """(gradient, variable) pairs; the gradient is None where `loss` does not depend on it."""
        if gate_gradients not in (GATE_NONE, GATE_OP, GATE_GRAPH):
            raise ValueError(f"gate_gradients must be one of: Optimizer.GATE_NONE, Optimizer.GATE_OP, "
                             f"Optimizer.GATE_GRAPH. Not {gate_gradients}")
        loss = convert_to_tensor(loss)
        _assert_valid_dtypes([loss] + ([convert_to_tensor(grad_loss)] if grad_loss is not None else []))
        variables = list(var_list) if var_list is not None else trainable_variables()
        if not variables:
            raise ValueError("No variables to optimize.")
        for v in variables:
            _require_variable(v)
        grads = gradients(loss, [v.value() for v in variables], grad_ys=grad_loss)
        if gate_gradients == GATE_GRAPH:
            grads = tuple_(grads)
        pairs = list(zip(grads, variables))
        _assert_valid_dtypes([v.value() for g, v in pairs if g is not None])
        return pairs

    def apply_gradients(self, grads_and_vars: Any, global_step: Any = None,
                        name: str | None = None) -> Operation:
        """The train op: one update per variable with a gradient, then `global_step += 1`."""
        pairs = [(None if g is None else convert_to_tensor(g), _require_variable(v)) for g, v in grads_and_vars]
        if not pairs:
            raise ValueError("No variables provided.")
        live = [(g, v) for g, v in pairs if g is not None]
        if not live:
            raise ValueError(f"No gradients provided for any variable: {[str(v) for _, v in pairs]}.")
        graph = get_default_graph()
        with graph.control_dependencies(None):
            self._create_slots([v for _, v in live])
        with graph.name_scope(name or self._name) as scope:
            self._prepare()
            update_ops = []
            readers = _readers_of_variables(graph, [g for g, _ in live])
            for grad, var in live:
                self._gate = readers.get(var.value().value, [])
                with graph.name_scope("update_" + var.op.name), graph.device(var.device or None):
                    update_ops.append(self._apply_dense(grad, var))
            train_op = self._finish_step(update_ops, scope, global_step)
        self._gate = []
        graph.get_collection_ref(GraphKeys.TRAIN_OP).append(train_op)
        return train_op

    def _finish_step(self, update_ops: list[Any], scope: str, global_step: Any) -> Operation:
        if global_step is None:
            return self._finish(update_ops, scope)
        graph = get_default_graph()
        with graph.control_dependencies([self._finish(update_ops, "update")]):
            return _require_variable(global_step).assign_add(1, name=scope).op

    # -- slots ---------------------------------------------------------------------------------
    def get_slot(self, var: Variable, name: str) -> Variable | None:
        return self._slots.get(name, {}).get(_var_key(var))

    def get_slot_names(self) -> list[str]:
        return sorted(self._slots)

    def variables(self) -> list[Variable]:
        """The optimizer's own variables (slots and accumulators) in the default graph, by name."""
        graph = get_default_graph()
        own = [v for slots in self._slots.values() for v in slots.values()] + list(self._non_slots.values())
        return sorted((v for v in own if v.graph is graph), key=lambda v: v.name)

    def _zeros_slot(self, var: Variable, slot_name: str, op_name: str) -> Variable:
        return self._slot_with_initializer(var, lambda: zeros(var.shape, var.dtype), slot_name, op_name)

    def _slot_with_initializer(self, var: Variable, initial: Callable[[], Any], slot_name: str,
                               op_name: str) -> Variable:
        """The slot `slot_name` of `var`, created as TF names it: `<var>/<op_name>`, `_1`, ..."""
        slots = self._slots.setdefault(slot_name, {})
        key = _var_key(var)
        if key not in slots:
            slots[key] = _create_slot(var, initial, op_name)
        return slots[key]

    def _create_non_slot_variable(self, initial_value: Any, name: str) -> Variable:
        """A per-graph variable of the optimizer itself (Adam's `beta1_power`)."""
        key = (get_default_graph(), name)
        if key not in self._non_slots:
            self._non_slots[key] = Variable(initial_value, name=name, trainable=False)
        return self._non_slots[key]

    def _get_non_slot_variable(self, name: str) -> Variable:
        return self._non_slots[(get_default_graph(), name)]

    # -- what subclasses define ----------------------------------------------------------------
    def _create_slots(self, var_list: list[Variable]) -> None:
        """Create the slots the update rule needs (none by default)."""

    def _prepare(self) -> None:
        """Convert the hyperparameters to tensors once per `apply_gradients`."""

    def _apply_dense(self, grad: Tensor, var: Variable) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define an update rule")

    def _finish(self, update_ops: list[Any], name_scope: str) -> Operation:
        return group(*update_ops, name=name_scope)

    # -- helpers for update rules --------------------------------------------------------------
    def _write(self, var: Variable, method: str, value: Tensor) -> Tensor:
        """`var.assign*(value)` after the gradients' reads of the variable; returns the new value."""
        with get_default_graph().control_dependencies(self._gate):
            return getattr(var, method)(value, use_locking=self._use_locking)

    @staticmethod
    def _hyper(value: Any, name: str) -> Tensor:
        """A hyperparameter (number, Tensor, placeholder or callable returning one) as a Tensor."""
        return convert_to_tensor(value() if callable(value) else value, name=name)


def _readers_of_variables(graph: Any, grads: list[Tensor]) -> dict[Value, list[Operation]]:
    """For each variable read the gradients depend on, the ops among their ancestors reading it
    (in graph order, so the IR and its kernel-cache keys are the same in every process)."""
    needed = needed_nodes([g.op.node for g in grads], set())
    readers: dict[Value, list[Operation]] = {}
    for node in (n for n in graph.nodes if n in needed):
        for v in dict.fromkeys(node.inputs):
            if v.node.op == "variable":
                readers.setdefault(v, []).append(graph.operation(node))
    return readers


def _create_slot(primary: Variable, initial: Callable[[], Any], op_name: str) -> Variable:
    graph = primary.graph
    with graph.name_scope(None), graph.device(primary.device or None):
        full = graph.unique_name(f"{primary.op.name}/{op_name}")
        slot = Variable(initial, trainable=False, name=full + "/")
    graph.variables[full] = slot  # TF makes slots with get_variable, so they live in its store
    return slot


def _var_key(var: Variable) -> tuple[Any, str]:
    return (var.graph, var.op.name)


def _require_variable(v: Any) -> Variable:
    if not isinstance(v, Variable):
        raise TypeError(f"Argument is not a tf.Variable: {v!r}")
    return v


def _assert_valid_dtypes(tensors: list[Tensor]) -> None:
    for t in tensors:
        if t.dtype not in _VALID_DTYPES:
            raise ValueError(f"Invalid type {t.dtype!r} for {t.name}, expected: {list(_VALID_DTYPES)}.")
