"""Looking at what tfjit builds and does: the IR program a `Session.run` call would compile,
and the bytes a GPU plan copies between host and device."""
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


def program_for(fetches: Any, feed_dict: dict | None = None, graph: Any = None,
                default_device: str | None = CPU0) -> Graph:
    """The IR graph `sess.run(fetches, feed_dict)` compiles; unfed placeholders keep their declared type.
    Nodes without a `tf.device` scope get `default_device` (None: placement picks, as in a Session)."""
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
    return extract(graph.nodes, fetch_values, targets, ordered, default_device=default_device)


def dump_ir(fetches: Any, feed_dict: dict | None = None, graph: Any = None) -> str:
    """The text form of `program_for(...)`."""
    return print_graph(program_for(fetches, feed_dict, graph))


def transfer_stats() -> dict[str, int]:
    """Bytes the CUDA backend copied host→device and device→host in this process, the bytes
    of those that were implicit (no feed, fetch or placed `device_copy`), and the copy count."""
    from .backends.numba_cuda.runtime import transfer_stats as stats

    return stats()


def reset_transfer_stats() -> None:
    from .backends.numba_cuda.runtime import reset_transfer_stats as reset

    reset()


def no_implicit_transfers() -> Any:
    """`with tfjit.debug.no_implicit_transfers():` makes an implicit host-device copy an error
    naming the node that needed it (feeds, fetches and placed copies still cross)."""
    from .backends.numba_cuda.runtime import no_implicit_transfers as guard

    return guard()


__all__ = ["program_for", "dump_ir", "transfer_stats", "reset_transfer_stats", "no_implicit_transfers"]
