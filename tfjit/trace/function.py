"""`@tfjit.function`: trace a Python function once per input signature and run the traced graph.

Arrays become graph parameters typed by their dtype and shape; Python scalars and other
hashable values are baked in, so they are part of the signature (as in `tf.function`).
A new signature retraces, and the reason (which argument changed, from what to what) is
recorded; repeated retraces warn, naming the argument and the caller's line.
"""
from __future__ import annotations

import functools
import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..ir.graph import Graph as IRGraph
from ..ir.graph import Node
from ..ir.types import TensorType, as_dtype, make_shape, shape_compatible
from ..runtime.state import RuntimeState
from ..runtime.program import extract
from ..runtime.results import owned
from .graph import Graph, get_default_graph
from .source import user_location
from .tensor import Tensor, convert_to_tensor

log = logging.getLogger("tfjit")
RETRACE_WARNING_THRESHOLD = 5


@dataclass(frozen=True)
class TensorSpec:
    """The type of a tensor argument: `TensorSpec([None, 784], tfjit.float32)`."""

    shape: Any
    dtype: Any = "float32"
    name: str | None = None

    @property
    def type(self) -> TensorType:
        return TensorType(as_dtype(self.dtype), make_shape(self.shape))


@dataclass(frozen=True)
class _Arg:
    """One leaf of the call's arguments: a tensor (by type) or a static Python value."""

    path: str
    kind: str  # "tensor" or "static"
    key: Any

    def describe(self) -> str:
        if self.kind == "tensor":
            return str(self.key)
        return f"Python value {self.key[1]!r}"


class ConcreteFunction:
    """One trace: the IR graph plus how to map call arguments onto its parameters."""

    def __init__(self, graph: IRGraph, tensor_paths: list[str], rebuild: Callable[[list[Any]], Any],
                 initializer: IRGraph | None = None, created: tuple[str, ...] = ()):
        self.graph = graph
        self.tensor_paths = tensor_paths
        self._rebuild = rebuild
        self._executable: Any = None
        self._compiled_for: tuple | None = None
        # Variables the trace created (an optimizer's slots, say) start initialised, as a
        # tf.function's do: their initializers run once per state, before the first call.
        self._initializer = initializer
        self._created = created

    def __call__(self, arrays: Sequence[np.ndarray], state: RuntimeState) -> Any:
        if self._initializer is not None and not all(state.is_initialized(v) for v in self._created):
            from ..backends.reference import compile_graph as reference_compile

            reference_compile(self._initializer).run([], state)
        settings = config.execution_key()
        if self._executable is None or self._compiled_for != settings:
            self._executable = config.compile_graph(config.optimize(self.graph))
            self._compiled_for = settings
        outputs = owned(self._executable.run(list(arrays), state), arrays)
        return self._rebuild([o[()] if o.ndim == 0 else o for o in outputs])


class Function:
    """What `@tfjit.function` returns: a callable with a trace cache keyed by signature."""

    def __init__(self, python_function: Callable[..., Any], input_signature: Sequence[TensorSpec] | None = None):
        self.python_function = python_function
        self.input_signature = list(input_signature) if input_signature is not None else None
        self._signature = inspect.signature(python_function)
        self._cache: dict[tuple[_Arg, ...], ConcreteFunction] = {}
        self._last_key: tuple[_Arg, ...] | None = None
        self.retrace_reasons: list[str] = []
        # Calls with arrays only, each bound to a parameter without a default: their trace key
        # follows from the arrays' dtypes and shapes, so these (checked in a few hundred ns)
        # find the trace without binding and flattening the arguments (8.8 us a call, measured).
        params = list(self._signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._fast_arity: tuple[int, bool] | None = (
            (len(positional), any(p.kind is p.VAR_POSITIONAL for p in params))
            if all(p.default is p.empty for p in positional) and not any(p.kind is p.KEYWORD_ONLY for p in params)
            else None)
        self._by_arrays: dict[tuple[Any, ...], tuple[tuple[_Arg, ...], ConcreteFunction]] = {}
        functools.update_wrapper(self, python_function)

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arrays_key = None if kwargs else self._arrays_key(args)
        if arrays_key is not None:
            known = self._by_arrays.get(arrays_key)
            if known is not None:
                self._last_key = known[0]
                return known[1](args, _current_state())
        if _has_symbolic(args, kwargs):  # called while tracing something else: trace through
            return self.python_function(*args, **kwargs)
        key, arrays = self._key(args, kwargs)
        concrete = self._concrete(key, args, kwargs)
        if arrays_key is not None:
            self._by_arrays[arrays_key] = (key, concrete)
        return concrete(arrays, _current_state())

    def _arrays_key(self, args: tuple) -> tuple[Any, ...] | None:
        """Each argument's dtype and shape when the call passes plain arrays only, to parameters
        without defaults (see `__init__`); else None."""
        if self._fast_arity is None:
            return None
        count, variadic = self._fast_arity
        if len(args) < count or (len(args) > count and not variadic):
            return None
        key = []
        for a in args:
            if type(a) is not np.ndarray:
                return None
            key.append((a.dtype, a.shape))
        return tuple(key)

    def graph_for(self, *args: Any, **kwargs: Any) -> IRGraph:
        """The IR graph this function runs for these arguments (traced if needed)."""
        key, _ = self._key(args, kwargs)
        return self._concrete(key, args, kwargs).graph

    get_concrete_function = graph_for

    def experimental_get_tracing_count(self) -> int:
        return len(self._cache)

    # -- signatures ----------------------------------------------------------------------
    def _bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound

    def _key(self, args: tuple, kwargs: dict) -> tuple[tuple[_Arg, ...], list[np.ndarray]]:
        bound = self._bind(args, kwargs)
        leaves: list[_Arg] = []
        arrays: list[np.ndarray] = []
        for name, value in bound.arguments.items():
            _flatten_arg(name, value, leaves, arrays)
        if self.input_signature is not None:
            return self._check_signature(leaves, arrays)
        return tuple(leaves), arrays

    def _check_signature(self, leaves: list[_Arg], arrays: list[np.ndarray]) -> tuple[tuple[_Arg, ...], list[np.ndarray]]:
        tensors = [leaf for leaf in leaves if leaf.kind == "tensor"]
        specs = self.input_signature or []
        if len(tensors) != len(specs) or len(tensors) != len(leaves):
            raise TypeError(f"{self.__name__} was called with {len(leaves)} arguments "
                            f"but its input_signature has {len(specs)} TensorSpecs")
        cast: list[np.ndarray] = []
        for leaf, spec, array in zip(tensors, specs, arrays):
            want = spec.type
            if not shape_compatible(want.shape, array.shape) or array.dtype != want.dtype.np_dtype:
                raise TypeError(f"{self.__name__}: argument `{leaf.path}` is {leaf.describe()}, "
                                f"which does not match its input_signature {want}")
            cast.append(array)
        key = tuple(_Arg(leaf.path, "tensor", spec.type) for leaf, spec in zip(tensors, specs))
        return key, cast

    # -- tracing -------------------------------------------------------------------------
    def _concrete(self, key: tuple[_Arg, ...], args: tuple, kwargs: dict) -> ConcreteFunction:
        concrete = self._cache.get(key)
        if concrete is None:
            if self._cache:
                self._note_retrace(key)
            concrete = self._trace(key, args, kwargs)
            self._cache[key] = concrete
        self._last_key = key
        return concrete

    def _trace(self, key: tuple[_Arg, ...], args: tuple, kwargs: dict) -> ConcreteFunction:
        graph = Graph()
        graph.share_collections(get_default_graph())  # tf.trainable_variables() sees the model's
        loc = user_location()
        params: dict[str, Tensor] = {}
        for index, leaf in enumerate(a for a in key if a.kind == "tensor"):
            node = Node("param", (), (("index", index),), (leaf.key,), loc=loc, name=leaf.path)
            params[leaf.path] = graph.add_node(node).outputs[0]
        bound = self._bind(args, kwargs)
        call_args = {name: _substitute(name, value, params) for name, value in bound.arguments.items()}
        with graph.as_default():
            outputs = self.python_function(*_positional(self._signature, call_args), **_keywords(self._signature, call_args))
            leaves: list[Tensor] = []
            rebuild = _flatten_outputs(outputs, leaves)
        created = [v for v in graph.get_collection("variables")  # GraphKeys.GLOBAL_VARIABLES
                   if getattr(v, "graph", None) is graph]
        initializers = {v.initializer.node for v in created}  # run once per state, not every call
        body = [n for n in graph.nodes if n.op != "param" and n not in initializers]
        ir = IRGraph(self.__name__, [t.value for t in params.values()], body, [t.value for t in leaves])
        if not created:
            return ConcreteFunction(ir, list(params), rebuild)
        init = extract(graph.nodes, [], [v.initializer.node for v in created], [], name=f"{self.__name__}_init")
        return ConcreteFunction(ir, list(params), rebuild, init, tuple(v._attrs["var"] for v in created))

    def _note_retrace(self, key: tuple[_Arg, ...]) -> None:
        reason = _describe_change(self._last_key or (), key)
        message = f"retraced `{self.__name__}` because {reason}"
        self.retrace_reasons.append(message)
        log.info(message)
        if len(self._cache) + 1 >= RETRACE_WARNING_THRESHOLD:
            loc = user_location()
            at = f" (called from {loc})" if loc else ""
            warnings.warn(
                f"`{self.__name__}` has been traced {len(self._cache) + 1} times{at}; the last retrace "
                f"was because {reason}. Pass input_signature=[tfjit.TensorSpec([None, ...], dtype)] "
                "for arguments whose shape varies, or pass Python values that change as arrays.",
                stacklevel=3)


def function(func: Callable[..., Any] | None = None, input_signature: Sequence[TensorSpec] | None = None,
             **unused: Any) -> Any:
    """Decorator: `@tfjit.function` or `@tfjit.function(input_signature=[...])`."""
    if func is None:
        return lambda f: Function(f, input_signature)
    return Function(func, input_signature)


# -- helpers ---------------------------------------------------------------------------------
_STATE: list[RuntimeState] = [RuntimeState()]


def _current_state() -> RuntimeState:
    """Variables live in the default session if there is one, else in a process-wide state."""
    sess = _default_session()
    return sess.state if sess is not None else _STATE[0]


def _default_session() -> Any:
    """compat.session's default session (imported on the first call: compat imports this module)."""
    global _default_session
    from ..compat.session import get_default_session

    _default_session = get_default_session
    return get_default_session()


def _has_symbolic(args: tuple, kwargs: dict) -> bool:
    return any(isinstance(a, Tensor) for a in (*args, *kwargs.values()))


def _flatten_arg(path: str, value: Any, leaves: list[_Arg], arrays: list[np.ndarray]) -> None:
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten_arg(f"{path}[{i}]", item, leaves, arrays)
        return
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten_arg(f"{path}[{k!r}]", value[k], leaves, arrays)
        return
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        leaves.append(_Arg(path, "tensor", TensorType(as_dtype(array.dtype), array.shape)))
        arrays.append(array)
        return
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"argument `{path}` of type {type(value).__name__} is neither an array nor a "
                        "hashable Python value; pass arrays for tensor arguments") from None
    leaves.append(_Arg(path, "static", (type(value).__name__, value)))


def _substitute(path: str, value: Any, params: dict[str, Tensor]) -> Any:
    """The call's arguments with every array replaced by its parameter Tensor."""
    if path in params:
        return params[path]
    if isinstance(value, (list, tuple)):
        items = [_substitute(f"{path}[{i}]", v, params) for i, v in enumerate(value)]
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    if isinstance(value, dict):
        return {k: _substitute(f"{path}[{k!r}]", v, params) for k, v in value.items()}
    return value


def _positional(sig: inspect.Signature, call_args: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            out.append(call_args[p.name])
        elif p.kind is p.VAR_POSITIONAL:
            out.extend(call_args.get(p.name, ()))
    return out


def _keywords(sig: inspect.Signature, call_args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            out[p.name] = call_args[p.name]
        elif p.kind is p.VAR_KEYWORD:
            out.update(call_args.get(p.name, {}))
    return out


def _flatten_outputs(outputs: Any, leaves: list[Tensor]) -> Callable[[list[Any]], Any]:
    if outputs is None:
        return lambda vals: None
    if isinstance(outputs, (list, tuple)):
        builders = [_flatten_outputs(o, leaves) for o in outputs]
        if hasattr(outputs, "_fields"):
            return lambda vals: type(outputs)(*(b(vals) for b in builders))
        return lambda vals: type(outputs)(b(vals) for b in builders)
    if isinstance(outputs, dict):
        keys, builders = list(outputs), [_flatten_outputs(v, leaves) for v in outputs.values()]
        return lambda vals: dict(zip(keys, (b(vals) for b in builders)))
    tensor = convert_to_tensor(outputs)
    index = len(leaves)
    leaves.append(tensor)
    return lambda vals: vals[index]


def _describe_change(old: tuple[_Arg, ...], new: tuple[_Arg, ...]) -> str:
    before = {a.path: a for a in old}
    after = {a.path: a for a in new}
    changes = []
    for path in after:
        if path not in before:
            changes.append(f"argument `{path}` is new ({after[path].describe()})")
        elif before[path] != after[path]:
            changes.append(f"argument `{path}` changed from {before[path].describe()} to {after[path].describe()}")
    changes += [f"argument `{p}` is gone" for p in before if p not in after]
    return "; ".join(changes) or "the arguments' structure changed"

