"""The TF1 graph: a growing list of IR nodes plus names, scopes, collections and seeds.

Every op builder ends in `Graph.emit`, which runs the op's type rule, attaches the user's
source line, the name-scoped unique name, the device and any control dependencies, and
appends the (immutable) node. `@tfjit.function` traces into a `FuncGraph` the same way.
"""
from __future__ import annotations

import contextlib
import functools
import re
import threading
from typing import Any, Callable, Iterator, Sequence

from ..errors import GraphError, OpTypeError, where
from ..ir.graph import Loc, Node, Value, freeze_attrs
from ..ir.types import TensorType
from ..ops.registry import get_op
from .source import user_location

_VALID_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


class Graph:
    """A TF1 `tf.Graph`: the container user code builds ops into."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._ops_by_name: dict[str, Any] = {}
        self._operations: dict[Node, Any] = {}
        self._used_names: dict[str, int] = {}
        self._name_stack = ""
        self._control_stack: list[list[Node]] = []
        self._device_stack: list[str | None] = []
        self._collections: dict[str, list[Any]] = {}
        self.seed: int | None = None
        self.variables: dict[str, Any] = {}  # variable name -> Variable (get_variable's store)
        self.variable_scopes: list[Any] = []  # the open tf.variable_scope()s, innermost last
        self.variable_scope_counts: dict[str, int] = {}  # default_name uniquifying per scope
        self.captured_variables: dict[str, Any] = {}  # outer variables read inside a traced function
        self.version = 0  # bumped on every emit, so sessions know their caches may be stale
        self.finalized = False
        self.backward_loc: Loc | None = None  # set by tfjit.autodiff: backward nodes take the forward line
        self.outer: Graph | None = None  # the enclosing graph while a cond branch or loop body is traced

    # -- building ------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None,
             name: str | None = None, loc: Loc | None = None) -> Any:
        """Append one op application; returns its `Operation`."""
        if self.finalized:
            raise RuntimeError("Graph is finalized and cannot be modified.")
        attrs = attrs or {}
        loc = loc if loc is not None else (self.backward_loc or user_location())
        opdef = get_op(op)
        frozen = freeze_attrs(attrs)
        types = self._infer(opdef, op, tuple(v.type for v in inputs), dict(frozen), loc)
        node = Node(op, tuple(inputs), frozen, types,
                    device=self._device_stack[-1] if self._device_stack else None,
                    loc=loc, name=self.unique_name(name or op),
                    control_inputs=tuple(self._current_control_inputs()))
        return self.add_node(node)

    def add_node(self, node: Node) -> Any:
        from .tensor import Operation

        self.nodes.append(node)
        operation = Operation(node, self)
        self._operations[node] = operation
        self._ops_by_name[node.name] = operation
        self.version += 1
        return operation

    @staticmethod
    def _infer(opdef: Any, op: str, in_types: tuple[TensorType, ...], attrs: dict[str, Any],
               loc: Loc | None) -> tuple[TensorType, ...]:
        try:
            return opdef.infer(in_types, attrs)
        except OpTypeError as e:
            shapes = ", ".join(str(t) for t in in_types)
            raise GraphError(f"{where(op, loc)}: {e} (inputs: {shapes or 'none'})") from None

    def operation(self, node: Node) -> Any:
        return self._operations[node]

    def encloses(self, other: "Graph") -> bool:
        """Whether tensors of `other` may be used here: its own, or an enclosing graph's (a cond
        branch or loop body captures those as inputs of its node)."""
        graph: Graph | None = self
        while graph is not None and graph is not other:
            graph = graph.outer
        return graph is other

    # -- names ---------------------------------------------------------------------------
    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        """TF's naming: scope prefix, then `name`, `name_1`, `name_2` ... for repeats.

        A name ending in '/' is absolute (TF's convention): used as given, without the slash.
        """
        if name.endswith("/"):
            full = name[:-1]
            if mark_as_used:
                self._used_names.setdefault(full.lower(), 1)
            return full
        full = f"{self._name_stack}/{name}" if self._name_stack else name
        key = full.lower()
        count = self._used_names.get(key, 0)
        if mark_as_used:
            self._used_names[key] = count + 1
        if count > 0:
            base = full
            while True:
                full = f"{base}_{count}"
                if full.lower() not in self._used_names:
                    break
                count += 1
            if mark_as_used:
                self._used_names[full.lower()] = 1
        return full

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """TF1 name scopes: a trailing '/' re-enters a scope as given; None resets to the root."""
        old = self._name_stack
        if name is None or name == "":
            new = ""
        elif name.endswith("/"):
            new = name[:-1]
        else:
            if not _VALID_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid scope name")
            new = self.unique_name(name)
        self._name_stack = new
        try:
            yield (new + "/") if new else ""
        finally:
            self._name_stack = old

    def get_name_scope(self) -> str:
        return self._name_stack

    # -- control dependencies and devices ------------------------------------------------
    @contextlib.contextmanager
    def control_dependencies(self, control_inputs: Sequence[Any] | None) -> Iterator[None]:
        if control_inputs is None:  # TF: None clears the dependencies
            saved, self._control_stack = self._control_stack, []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        nodes = [_as_node(c) for c in control_inputs]
        self._control_stack.append(nodes)
        try:
            yield
        finally:
            self._control_stack.pop()

    def _current_control_inputs(self) -> list[Node]:
        seen: dict[Node, None] = {}
        for frame in self._control_stack:
            for n in frame:
                seen[n] = None
        return list(seen)

    @contextlib.contextmanager
    def device(self, device_name: str | None) -> Iterator[None]:
        from ..compat.device import canonical_device

        self._device_stack.append(canonical_device(device_name) if device_name else None)
        try:
            yield
        finally:
            self._device_stack.pop()

    # -- lookup --------------------------------------------------------------------------
    def get_operation_by_name(self, name: str) -> Any:
        try:
            return self._ops_by_name[name]
        except KeyError:
            raise KeyError(f"The name '{name}' refers to an Operation not in the graph.") from None

    def get_tensor_by_name(self, name: str) -> Any:
        op_name, sep, index = name.rpartition(":")
        if not sep or not index.isdigit():
            raise ValueError(f"The name '{name}' looks like an (invalid) Operation name, not a Tensor. "
                             "Tensor names must be of the form \"<op_name>:<output_index>\".")
        op = self._ops_by_name.get(op_name)
        if op is None or int(index) >= len(op.outputs):
            raise KeyError(f"The name '{name}' refers to a Tensor which does not exist.")
        return op.outputs[int(index)]

    def get_operations(self) -> list[Any]:
        return [self._operations[n] for n in self.nodes]

    # -- collections ---------------------------------------------------------------------
    def add_to_collection(self, name: str, value: Any) -> None:
        self._collections.setdefault(name, []).append(value)

    def get_collection(self, name: str, scope: str | None = None) -> list[Any]:
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        pattern = re.compile(scope)
        return [x for x in items if hasattr(x, "name") and pattern.match(x.name)]

    def share_collections(self, other: "Graph") -> None:
        """Start from `other`'s collections and get_variable store (a traced function sees the
        model's variables; what it adds stays its own)."""
        self._collections = {k: list(v) for k, v in other._collections.items()}
        self.variables = dict(other.variables)

    def get_collection_ref(self, name: str) -> list[Any]:
        return self._collections.setdefault(name, [])

    def get_all_collection_keys(self) -> list[str]:
        return sorted(self._collections)

    def clear_collection(self, name: str) -> None:
        self._collections.pop(name, None)

    # -- context -------------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self) -> Iterator["Graph"]:
        _stack().append(self)
        try:
            yield self
        finally:
            _stack().pop()

    def finalize(self) -> None:
        self.finalized = True

    def next_seed(self) -> int:
        """An op-level seed derived from the graph's op count, as TF does."""
        return len(self.nodes)


def _as_node(x: Any) -> Node:
    if isinstance(x, Node):
        return x
    for attr in ("node", "op"):
        inner = getattr(x, attr, None)
        if isinstance(inner, Node):
            return inner
        if inner is not None and isinstance(getattr(inner, "node", None), Node):
            return inner.node
    raise TypeError(f"control_dependencies expects Tensors or Operations, got {type(x).__name__}")


# -- the default graph -------------------------------------------------------------------------
_local = threading.local()
_global_default = [Graph()]


def _stack() -> list[Graph]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_default_graph() -> Graph:
    stack = _stack()
    return stack[-1] if stack else _global_default[0]


def init_scope(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run `fn` in the graph enclosing any cond branch or loop body being traced, in the same
    name scope (TF's `init_scope`: variables and their initializers live outside control flow)."""

    @functools.wraps(fn)
    def lifted(*args: Any, **kwargs: Any) -> Any:
        inner = get_default_graph()
        root = inner
        while root.outer is not None:
            root = root.outer
        if root is inner:
            return fn(*args, **kwargs)
        saved, root._name_stack = root._name_stack, inner._name_stack
        try:
            with root.as_default():
                return fn(*args, **kwargs)
        finally:
            root._name_stack = saved

    return lifted


def reset_default_graph() -> None:
    if _stack():
        raise AssertionError("Do not use tf.reset_default_graph() to clear nested graphs.")
    _global_default[0] = Graph()
