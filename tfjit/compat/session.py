"""`tf.Session`: prunes the graph to what the fetches need, compiles it once per feed
signature, caches the executable, and runs it against the session's variable state."""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import numpy as np

from .. import config
from ..ir.graph import Node, Value
from ..ir.types import TensorType, as_dtype, shape_compatible
from ..runtime.program import extract
from ..runtime.results import owned
from ..runtime.state import RuntimeState
from ..trace.graph import get_default_graph
from ..trace.tensor import Operation, Tensor
from .op_types import tf_op_type


class GPUOptions:
    def __init__(self, **kwargs: Any):
        self.allow_growth = False
        self.per_process_gpu_memory_fraction = 1.0
        self.__dict__.update(kwargs)


class GraphOptions:
    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)


class ConfigProto:
    """TF's session config; tfjit reads `log_device_placement` and `allow_soft_placement`."""

    def __init__(self, log_device_placement: bool = False, allow_soft_placement: bool = False,
                 **kwargs: Any):
        self.log_device_placement = log_device_placement
        self.allow_soft_placement = allow_soft_placement
        self.gpu_options = kwargs.pop("gpu_options", GPUOptions())
        self.graph_options = kwargs.pop("graph_options", GraphOptions())
        self.__dict__.update(kwargs)


class RunOptions:
    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)


class RunMetadata:
    pass


# -- the default session ----------------------------------------------------------------------
_local = threading.local()


def _session_stack() -> list["Session"]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_default_session() -> "Session | None":
    stack = _session_stack()
    return stack[-1] if stack else None


def get_default_session_or_fail() -> "Session":
    sess = get_default_session()
    if sess is None:
        raise ValueError("Cannot evaluate tensor using `eval()`: No default session is registered. "
                         "Use `with sess.as_default()` or pass an explicit session to `eval(session=sess)`")
    return sess


class _DefaultSession:
    def __init__(self, session: "Session"):
        self.session = session

    def __enter__(self) -> "Session":
        _session_stack().append(self.session)
        return self.session

    def __exit__(self, *exc: Any) -> None:
        _session_stack().remove(self.session)


# -- fetch structures -------------------------------------------------------------------------
class _Fetches:
    """Flattens a nested fetch structure into leaves and rebuilds it from their values."""

    def __init__(self, graph: Any, fetches: Any):
        self.graph = graph
        self.leaves: list[Tensor | Operation] = []
        self._build: Callable[[list[Any]], Any] = self._flatten(fetches)

    def _flatten(self, f: Any) -> Callable[[list[Any]], Any]:
        if isinstance(f, dict):
            keys, builders = list(f), [self._flatten(v) for v in f.values()]
            return lambda vals: type(f)(zip(keys, (b(vals) for b in builders))) if type(f) is not dict else dict(zip(keys, (b(vals) for b in builders)))
        if isinstance(f, (list, tuple)):
            builders = [self._flatten(v) for v in f]
            if hasattr(f, "_fields"):  # namedtuple
                return lambda vals: type(f)(*(b(vals) for b in builders))
            return lambda vals: type(f)(b(vals) for b in builders)
        index = len(self.leaves)
        self.leaves.append(self._resolve(f))
        return lambda vals: vals[index]

    def _resolve(self, f: Any) -> Tensor | Operation:
        if hasattr(f, "_as_graph_tensor"):
            f = f._as_graph_tensor()
        if isinstance(f, str):
            f = self.graph.get_tensor_by_name(f) if ":" in f else self.graph.get_operation_by_name(f)
        if not isinstance(f, (Tensor, Operation)):
            raise TypeError(f"Fetch argument {f!r} has invalid type {type(f).__name__}, must be a string, "
                            "Tensor, Operation or Variable (or a list, tuple, dict of them)")
        if f.graph is not self.graph:
            raise ValueError(f"Fetch argument {f!r} is not an element of this session's graph.")
        return f

    def rebuild(self, values: list[Any]) -> Any:
        return self._build(values)


class Session:
    """A TF1 session over a graph; owns the variable values (`RuntimeState`)."""

    def __init__(self, target: str = "", graph: Any = None, config: ConfigProto | None = None):
        self.graph = graph if graph is not None else get_default_graph()
        self.config = config or ConfigProto()
        self.state = RuntimeState()
        self._cache: dict[Any, tuple[Any, list[Value]]] = {}
        self._compile_lock = threading.Lock()  # threads may run one session; compiling is not reentrant
        self._logged: set[str] = set()
        self._closed = False
        self._default: _DefaultSession | None = None

    # -- context -------------------------------------------------------------------------
    def as_default(self) -> _DefaultSession:
        return _DefaultSession(self)

    def __enter__(self) -> "Session":
        self._default = _DefaultSession(self)
        return self._default.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._default is not None:
            self._default.__exit__(*exc)
            self._default = None
        self.close()

    def close(self) -> None:
        self._closed = True
        self._cache.clear()
        self.state.cancel_resources()  # ops blocked on a queue or iterator fail, as in TF

    @property
    def sess_str(self) -> str:
        return ""

    def list_devices(self) -> list[str]:
        return list(config.placement().devices)

    # -- running -------------------------------------------------------------------------
    def run(self, fetches: Any, feed_dict: dict | None = None, options: Any = None,
            run_metadata: Any = None) -> Any:
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        structure = _Fetches(self.graph, fetches)
        feeds = self._feeds(feed_dict or {})
        fed_order = sorted(feeds, key=_value_key)  # the compiled program's parameter order
        exe, fetch_values = self._executable(structure.leaves, feeds, fed_order)
        args = [feeds[v] for v in fed_order]
        by_value = dict(zip(fetch_values, owned(exe.run(args, self.state), args)))
        values = [self._result(leaf, by_value) for leaf in structure.leaves]
        return structure.rebuild(values)

    def _result(self, leaf: Tensor | Operation, by_value: dict[Value, np.ndarray]) -> Any:
        if isinstance(leaf, Operation):
            return None
        out = by_value[leaf.value]
        return out[()] if out.ndim == 0 else out  # TF returns NumPy scalars for scalar fetches

    def _executable(self, leaves: list[Tensor | Operation], feeds: dict[Value, np.ndarray],
                    fed_order: list[Value]) -> tuple[Any, list[Value]]:
        fetch_values = list(dict.fromkeys(t.value for t in leaves if isinstance(t, Tensor)))
        targets = [op.node for op in leaves if isinstance(op, Operation)]
        signature = tuple((v, feeds[v].shape, feeds[v].dtype) for v in fed_order)  # not dtype.str: 1 us each
        key = (tuple(fetch_values), tuple(targets), signature, config.execution_key())
        cached = self._cache.get(key)
        if cached is None:
            with self._compile_lock:
                cached = self._cache.get(key) or self._compile(key, feeds, fed_order, fetch_values, targets)
        return cached

    def _compile(self, key: Any, feeds: dict[Value, np.ndarray], fed_order: list[Value],
                 fetch_values: list[Value], targets: list[Node]) -> tuple[Any, list[Value]]:
        feed_types = [(v, TensorType(as_dtype(feeds[v].dtype), feeds[v].shape)) for v in fed_order]
        program = extract(self.graph.nodes, fetch_values, targets, feed_types)  # placement picks devices
        manager = config.pass_manager(allow_soft_placement=self.config.allow_soft_placement)
        optimized = manager.run(program)
        if self.config.log_device_placement:
            placed = dict(manager.history).get("place", optimized)
            fed = [p.node for p in placed.params]
            self._log_placement(fed + placed.nodes, getattr(manager.overrides.get("place"), "fallbacks", []))
        compiled = (config.compile_graph(optimized), fetch_values)
        self._cache[key] = compiled
        return compiled

    def _log_placement(self, nodes: list[Node], fallbacks: list[str]) -> None:
        """TF's log lines (`name: (Type): device`), then why any node left its requested device."""
        for node in nodes:
            if node.name in self._logged:
                continue
            self._logged.add(node.name)
            kind = "Placeholder" if node.op == "param" else tf_op_type(node.op)  # a param is a fed placeholder
            print(f"{node.name}: ({kind}): {node.device}", file=sys.stderr)
        for note in fallbacks:
            if note not in self._logged:
                self._logged.add(note)
                print(f"placement fallback: {note}", file=sys.stderr)

    def _feeds(self, feed_dict: dict) -> dict[Value, np.ndarray]:
        feeds: dict[Value, np.ndarray] = {}
        for key, value in feed_dict.items():
            tensor = self._feed_key(key)
            feeds[tensor.value] = _feed_value(tensor, value)
        return feeds

    def _feed_key(self, key: Any) -> Tensor:
        if hasattr(key, "_as_graph_tensor"):
            key = key._as_graph_tensor()
        if isinstance(key, str):
            key = self.graph.get_tensor_by_name(key)
        if not isinstance(key, Tensor):
            raise TypeError(f"Cannot interpret feed_dict key {key!r} as a Tensor: use a Tensor, a Variable "
                            "or a tensor name such as 'x:0'")
        if key.graph is not self.graph:
            raise ValueError(f"Cannot feed {key.name}: it is not an element of this session's graph.")
        return key

    def _load_variable(self, variable: Any, value: np.ndarray) -> None:
        self.state.write(variable._attrs["var"], np.array(value, copy=True))


def _value_key(v: Value) -> tuple[int, int]:
    return v.node.uid, v.index


def _feed_value(tensor: Tensor, value: Any) -> np.ndarray:
    """The fed array in the tensor's dtype; a wrong kind of dtype or shape names the tensor."""
    expected = tensor.type
    if type(value) is np.ndarray and value.dtype == expected.dtype.np_dtype and value.shape == expected.shape:
        return value  # the usual feed, checked in a quarter of the general checks' time (measured)
    if isinstance(value, (Tensor, Operation)) or hasattr(value, "_as_graph_tensor"):
        raise TypeError(f"The value of a feed cannot be a tf.Tensor object (feeding {tensor.name}). "
                        "Acceptable feed values include Python scalars, lists, and numpy ndarrays; "
                        "fetch the tensor first with sess.run().")
    array = np.asarray(value)
    at = f" (created at {tensor.op.node.loc})" if tensor.op.node.loc else ""
    target = expected.dtype.np_dtype
    if array.dtype != target and not _safe_feed_cast(array, target, value):
        raise TypeError(f"Cannot feed a value of dtype {array.dtype} for Tensor '{tensor.name}'{at}, "
                        f"which has dtype {expected.dtype.name}: convert it with .astype({expected.dtype.name!r})")
    array = array.astype(target, copy=False)
    if not shape_compatible(expected.shape, array.shape):
        raise ValueError(f"Cannot feed value of shape {array.shape} for Tensor '{tensor.name}'{at}, "
                         f"which has shape {tensor.shape}")
    return array


def _safe_feed_cast(array: np.ndarray, target: np.dtype, original: Any) -> bool:
    if array.dtype.kind == "b" or target.kind == "b":
        return array.dtype.kind == target.kind
    return bool(np.can_cast(array.dtype, target, "same_kind"))


class InteractiveSession(Session):
    """A session that installs itself as the default session on creation."""

    def __init__(self, target: str = "", graph: Any = None, config: ConfigProto | None = None):
        super().__init__(target, graph, config)
        self._default = _DefaultSession(self)
        self._default.__enter__()

    def close(self) -> None:
        if self._default is not None:
            self._default.__exit__(None, None, None)
            self._default = None
        super().close()
