"""TF1 variables: `tf.Variable`, `tf.get_variable`, `tf.variable_scope` and initializer ops."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ..ir.types import as_dtype, float32, make_shape
from ..trace.graph import get_default_graph, init_scope
from ..trace.source import user_location
from ..trace.tensor import Tensor, convert_to_tensor
from . import initializers as init_ops
from .graph_keys import GraphKeys
from .math_ops import emit, emit1


class Variable:
    """A TF1 variable: a `variable` node reading the session's value, and an `assign` initializer.

    A name ending in '/' is used as given (how `get_variable` names variables).
    """

    @init_scope
    def __init__(self, initial_value: Any = None, trainable: bool = True, collections: Any = None,
                 validate_shape: bool = True, name: str | None = None, dtype: Any = None,
                 expected_shape: Any = None, constraint: Any = None, use_resource: Any = None,
                 **unused: Any):
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        graph = get_default_graph()
        self.graph = graph
        self._loc = user_location()
        with graph.name_scope(name or "Variable") as scope:
            var_name = scope[:-1]
            with graph.name_scope("Initializer" if callable(initial_value) else "initial_value"):
                value = initial_value() if callable(initial_value) else initial_value
                init = convert_to_tensor(value, dtype=dtype)
            shape = init.type.shape if validate_shape else None
            if validate_shape and (shape is None or not all(isinstance(d, int) for d in shape)):
                raise ValueError(f"initial_value of variable {var_name!r} must have a fully defined shape "
                                 f"(got {init.shape}) unless validate_shape=False")
            attrs = {"var": var_name, "dtype": init.dtype, "shape": shape}
            self._variable = emit1("variable", [], attrs, name=scope)
            self._attrs = attrs
            self.initializer = emit("assign", [init], {**attrs, "validate_shape": validate_shape}, name="Assign")
        self._initial_value = init
        self.trainable = trainable
        self.constraint = constraint
        collections = list(collections) if collections is not None else [GraphKeys.GLOBAL_VARIABLES]
        if trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
            collections.append(GraphKeys.TRAINABLE_VARIABLES)
        for key in collections:
            graph.add_to_collection(key, self)

    # -- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._variable.name

    @property
    def op(self) -> Any:
        return self._variable.op

    @property
    def dtype(self) -> Any:
        return self._variable.dtype

    @property
    def shape(self) -> Any:
        return self._variable.shape

    def get_shape(self) -> Any:
        return self.shape

    @property
    def device(self) -> str:
        return self._variable.device

    @property
    def initial_value(self) -> Tensor:
        return self._initial_value

    def initialized_value(self) -> Tensor:
        return self._initial_value

    # -- reading -------------------------------------------------------------------------
    def value(self) -> Tensor:
        return self._as_graph_tensor()

    def read_value(self) -> Tensor:
        """The value read here, after what the current control dependencies name (unlike
        `value()`, the snapshot every other use shares), as TF documents it."""
        graph = get_default_graph()
        if graph is not self.graph:
            return self._as_graph_tensor()
        return graph.emit("variable", [], self._attrs, name="read").outputs[0]

    def _as_graph_tensor(self) -> Tensor:
        """The variable's value in the graph being built; a traced function gets its own read."""
        graph = get_default_graph()
        if graph.encloses(self.graph):  # a cond branch or loop body captures the read as an input
            return self._variable
        var = self._attrs["var"]
        if var not in graph.captured_variables:
            graph.captured_variables[var] = graph.emit("variable", [], self._attrs, name=var.split("/")[-1]).outputs[0]
        return graph.captured_variables[var]

    def eval(self, session: Any = None) -> np.ndarray:
        return self._variable.eval(session=session)

    # -- writing -------------------------------------------------------------------------
    def _update(self, op: str, value: Any, name: str | None) -> Tensor:
        v = convert_to_tensor(value, dtype=self.dtype)
        return emit1(op, [v], self._attrs, name=name or op.title().replace("_", ""))

    def assign(self, value: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return self._update("assign", value, name or "Assign")

    def assign_add(self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return self._update("assign_add", delta, name or "AssignAdd")

    def assign_sub(self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return self._update("assign_sub", delta, name or "AssignSub")

    def load(self, value: Any, session: Any = None) -> None:
        from .session import get_default_session_or_fail

        sess = session or get_default_session_or_fail()
        sess._load_variable(self, np.asarray(value, self.dtype.np_dtype))

    def __repr__(self) -> str:
        return f"<tf.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    __array_priority__ = 100

    def __bool__(self) -> bool:
        return bool(self._variable)


def _install_variable_operators() -> None:
    """Variables take part in arithmetic like their value tensor."""
    names = ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
             "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__",
             "__rpow__", "__matmul__", "__rmatmul__", "__lt__", "__le__", "__gt__", "__ge__",
             "__neg__", "__abs__", "__getitem__", "__and__", "__or__", "__invert__"]
    for dunder in names:
        if hasattr(Tensor, dunder):
            setattr(Variable, dunder, lambda self, *args, _d=dunder: getattr(self._as_graph_tensor(), _d)(*args))


# -- variable scopes ---------------------------------------------------------------------------
class _ReuseMode:
    def __repr__(self) -> str:
        return "tf.AUTO_REUSE"


AUTO_REUSE = _ReuseMode()


class VariableScope:
    """What `tf.variable_scope` opens: a name prefix plus defaults for `get_variable`."""

    def __init__(self, name: str, reuse: Any = False, initializer: Any = None, regularizer: Any = None,
                 dtype: Any = float32, original_name_scope: str = ""):
        self.name = name
        self.reuse = reuse
        self.initializer = initializer
        self.regularizer = regularizer
        self.dtype = as_dtype(dtype)
        self.original_name_scope = original_name_scope

    def reuse_variables(self) -> None:
        self.reuse = True

    def set_initializer(self, initializer: Any) -> None:
        self.initializer = initializer

    def set_regularizer(self, regularizer: Any) -> None:
        self.regularizer = regularizer


def get_variable_scope() -> VariableScope:
    scopes = get_default_graph().variable_scopes
    return scopes[-1] if scopes else VariableScope("")


@contextlib.contextmanager
def variable_scope(name_or_scope: Any = None, default_name: str | None = None, values: Any = None,
                   initializer: Any = None, regularizer: Any = None, reuse: Any = None,
                   dtype: Any = None, auxiliary_name_scope: bool = True, **unused: Any) -> Iterator[VariableScope]:
    """TF1's variable scope: prefixes `get_variable` names and opens a matching name scope."""
    graph = get_default_graph()
    outer = get_variable_scope()
    if name_or_scope is None and default_name is None:
        raise TypeError("If default_name is None then name_or_scope is required")
    if isinstance(name_or_scope, VariableScope):
        full, name_scope = name_or_scope.name, name_or_scope.original_name_scope
        base = name_or_scope
    else:
        short = name_or_scope if name_or_scope is not None else _unique_default(graph, outer.name, default_name)
        full = f"{outer.name}/{short}" if outer.name else short
        name_scope, base = short, outer
    graph.variable_scope_counts[full] = graph.variable_scope_counts.get(full, 0) + 1
    inherited = True if outer.reuse is True else (AUTO_REUSE if outer.reuse is AUTO_REUSE else False)
    new_reuse = reuse if reuse is not None else (base.reuse if isinstance(name_or_scope, VariableScope) and base.reuse else inherited)
    if reuse is False and outer.reuse is True:
        new_reuse = True  # TF1: reuse cannot be switched off inside a reusing scope
    if not auxiliary_name_scope:  # stay in the current name scope
        name_scope = graph.get_name_scope() + "/" if graph.get_name_scope() else None
    with graph.name_scope(name_scope) as opened:
        scope = VariableScope(full, new_reuse, initializer or base.initializer, regularizer or base.regularizer,
                              dtype or base.dtype, original_name_scope=opened)
        graph.variable_scopes.append(scope)
        try:
            yield scope
        finally:
            graph.variable_scopes.pop()


def _unique_default(graph: Any, outer: str, default_name: str) -> str:
    """TF's rule: the first of `name`, `name_1`, ... that no scope (named or not) has opened."""
    prefix = f"{outer}/{default_name}" if outer else default_name
    counts = graph.variable_scope_counts
    if counts.get(prefix, 0) == 0:
        return default_name
    index = 1
    while counts.get(f"{prefix}_{index}", 0) > 0:
        index += 1
    return f"{default_name}_{index}"


def get_variable(name: str, shape: Any = None, dtype: Any = None, initializer: Any = None,
                 regularizer: Any = None, trainable: bool | None = None, collections: Any = None,
                 caching_device: Any = None, partitioner: Any = None, validate_shape: bool = True,
                 use_resource: Any = None, custom_getter: Any = None, constraint: Any = None,
                 **unused: Any) -> Variable:
    """Create or (under reuse) return the variable `<scope>/name`, with TF1's errors."""
    graph = get_default_graph()
    scope = get_variable_scope()
    full = f"{scope.name}/{name}" if scope.name else name
    dt = as_dtype(dtype) if dtype is not None else scope.dtype
    want_shape = make_shape(shape) if shape is not None else None
    existing = graph.variables.get(full)
    if existing is not None:
        return _reuse(existing, full, scope, want_shape, dt)
    if scope.reuse is True:
        raise ValueError(f"Variable {full} does not exist, or was not created with tf.get_variable(). "
                         "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?")
    init = initializer if initializer is not None else scope.initializer
    initial = _initial_value(init, want_shape, dt, full)
    with graph.name_scope(None):
        var = Variable(initial, trainable=True if trainable is None else trainable,
                       collections=collections, validate_shape=validate_shape, name=full + "/", dtype=dt)
    var._loc = user_location()
    graph.variables[full] = var
    reg = regularizer if regularizer is not None else scope.regularizer
    if reg is not None:
        _add_regularization_loss(reg, var, full)
    return var


@init_scope
def _add_regularization_loss(reg: Any, var: Variable, full: str) -> None:
    """Built outside any cond branch or loop body, as TF does, so the loss is usable anywhere."""
    graph = get_default_graph()
    with graph.name_scope(full + "/Regularizer/"):
        loss = reg(var.value())
    if loss is not None:
        graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)


def _reuse(existing: Variable, full: str, scope: VariableScope, shape: Any, dtype: Any) -> Variable:
    if scope.reuse is False or scope.reuse is None:
        at = f" Originally defined at: {existing._loc}" if existing._loc else ""
        raise ValueError(f"Variable {full} already exists, disallowed. Did you mean to set reuse=True "
                         f"or reuse=tf.AUTO_REUSE in VarScope?{at}")
    have = tuple(existing.shape.as_list())
    if shape is not None and tuple(shape) != have:
        raise ValueError(f"Trying to share variable {full}, but specified shape {tuple(shape)} and found shape {have}.")
    if dtype != existing.dtype:
        raise ValueError(f"Trying to share variable {full}, but specified dtype {dtype.name} and found dtype "
                         f"{existing.dtype.name}.")
    return existing


def _initial_value(init: Any, shape: Any, dtype: Any, full: str) -> Any:
    """A thunk producing the initial value (so it is built under the variable's name scope)."""
    if isinstance(init, (Tensor, np.ndarray, list, float, int)) and not isinstance(init, bool):
        value = init
        if shape is not None and isinstance(init, (Tensor, np.ndarray)) and tuple(np.shape(init) if not isinstance(init, Tensor) else init.shape.as_list()) != tuple(shape):
            raise ValueError(f"Shape of initial value of {full} does not match the given shape {list(shape)}")
        if isinstance(init, (float, int)):
            if shape is None:
                raise ValueError(f"Shape of a new variable ({full}) must be fully defined, but instead was None.")
            return lambda: init_ops.Constant(init)(shape, dtype)
        return lambda: convert_to_tensor(value, dtype=dtype)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise ValueError(f"Shape of a new variable ({full}) must be fully defined, but instead was {shape}.")
    if init is None:
        init = init_ops.glorot_uniform_initializer() if dtype.is_floating else init_ops.Zeros()
    return lambda: init(shape, dtype=dtype)


# -- collections of variables and their initializers --------------------------------------------
def global_variables(scope: str | None = None) -> list[Variable]:
    return get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


all_variables = global_variables


def local_variables(scope: str | None = None) -> list[Variable]:
    return get_default_graph().get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def trainable_variables(scope: str | None = None) -> list[Variable]:
    return get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def model_variables(scope: str | None = None) -> list[Variable]:
    return get_default_graph().get_collection(GraphKeys.MODEL_VARIABLES, scope)


def variables_initializer(var_list: list[Variable], name: str = "init") -> Any:
    from .control_flow import group

    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer() -> Any:
    return variables_initializer(global_variables(), name="init")


def local_variables_initializer() -> Any:
    return variables_initializer(local_variables(), name="init")


initialize_all_variables = global_variables_initializer
initialize_variables = variables_initializer


def is_variable_initialized(variable: Variable) -> Tensor:
    return emit1("is_variable_initialized", [], {"var": variable._attrs["var"]}, name="IsVariableInitialized")



def _as_variable(ref: Any, what: str) -> Variable:
    if not isinstance(ref, Variable):
        raise TypeError(f"tf.{what} needs a tf.Variable as `ref`, got {type(ref).__name__}: "
                        "tfjit's tensors are values, only variables can be assigned")
    return ref


def assign(ref: Variable, value: Any, validate_shape: Any = None, use_locking: Any = None,
           name: str | None = None) -> Tensor:
    """TF1's `tf.assign(ref, value)`: the same as `ref.assign(value)`."""
    return _as_variable(ref, "assign").assign(value, name=name)


def assign_add(ref: Variable, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return _as_variable(ref, "assign_add").assign_add(value, name=name)


def assign_sub(ref: Variable, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return _as_variable(ref, "assign_sub").assign_sub(value, name=name)
