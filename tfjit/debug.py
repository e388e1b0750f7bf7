"""Looking at what tfjit builds: the IR program a `Session.run` call would compile."""
from __future__ import annotations

from typing import Any


from .compat.device import CPU0
from .compat.session import _Fetches, _feed_value
from .ir.graph import Graph
from .ir.printer import print_graph
from .ir.types import TensorType, as_dtype
from .runtime.program import extract, needed_nodes
from .trace.graph import get_default_graph
from .trace.tensor import Operation, Tensor


def program_for(fetches: Any, feed_dict: dict | None = None, graph: Any = None) -> Graph:
    """The IR graph `sess.run(fetches, feed_dict)` compiles; unfed placeholders keep their declared type."""
    graph = graph or get_default_graph()
    structure = _Fetches(graph, fetches)
    feeds: dict[Any, TensorType] = {}
    for key, value in (feed_dict or {}).items():
        tensor = key._as_graph_tensor() if hasattr(key, "_as_graph_tensor") else key
        tensor = graph.get_tensor_by_name(tensor) if isinstance(tensor, str) else tensor
        array = _feed_value(tensor, value)
        feeds[tensor.value] = TensorType(as_dtype(array.dtype), array.shape)
    fetch_values = [t.value for t in structure.leaves if isinstance(t, Tensor)]
    targets = [op.node for op in structure.leaves if isinstance(op, Operation)]
    for node in needed_nodes([v.node for v in fetch_values] + targets, set(feeds)):
        if node.op == "placeholder" and node.out not in feeds:
            feeds[node.out] = node.types[0]
    ordered = sorted(feeds.items(), key=lambda kv: (kv[0].node.uid, kv[0].index))
    return extract(graph.nodes, fetch_values, targets, ordered, default_device=CPU0)


def dump_ir(fetches: Any, feed_dict: dict | None = None, graph: Any = None) -> str:
    """The text form of `program_for(...)`."""
    return print_graph(program_for(fetches, feed_dict, graph))


__all__ = ["program_for", "dump_ir"]
