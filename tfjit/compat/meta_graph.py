"""Meta graph files: a TF1 graph, its variables and collections, rebuilt in a fresh process.

A meta graph file is UTF-8 JSON, never pickle, so loading one runs no code:

    {
      "format": "tfjit.meta_graph", "version": 1,
      "graph": "func @meta_graph() -> () { ... }",
      "variables": [{"name": "W", "initializer": "W/Assign", "initial_value": "W/initial_value:0",
                     "trainable": true, "in_store": false}],
      "collections": {"trainable_variables": [{"variable": "W"}], "losses": [{"tensor": "loss:0"}],
                      "train_op": [{"operation": "GradientDescent"}], "my_key": [{"value": 3}]},
      "saver": {"var_list": {"W": "W"}, "max_to_keep": 5, "keep_checkpoint_every_n_hours": 10000.0}
    }

`graph` is the IR text (`tfjit.ir.print_graph`) of every node of the graph in build order:
nodes carry their TF names, devices and attributes, so parsing it gives back the same ops.
`variables` names each Python-side `tf.Variable` by its variable op (`in_store`: made by
`tf.get_variable`, so `reuse=True` finds it again). `collections` refer to variables,
tensors and operations by name; plain JSON values are kept as they are; other Python
objects cannot be written and are left out with a warning, as TF does. `saver` is
present when a `Saver` wrote the file: which checkpoint key restores which variable.
"""
from __future__ import annotations

import json
import warnings
from typing import Any

from ..ir.graph import Graph as IRGraph
from ..ir.graph import Node, Value
from ..ir.parser import parse_graph
from ..ir.printer import print_graph
from ..ops.registry import REGISTRY
from ..trace.graph import get_default_graph
from ..trace.tensor import Operation, Tensor
from .variables import Variable

FORMAT, VERSION = "tfjit.meta_graph", 1


# -- writing -----------------------------------------------------------------------------------
def meta_graph_dict(graph: Any = None, collection_list: list[str] | None = None,
                    saver: dict[str, Any] | None = None, clear_devices: bool = False) -> dict[str, Any]:
    """The JSON-ready meta graph of `graph` (the default graph when None)."""
    graph = graph or get_default_graph()
    nodes = [n.evolve(device=None) for n in graph.nodes] if clear_devices else list(graph.nodes)
    keys = collection_list if collection_list is not None else graph.get_all_collection_keys()
    return {
        "format": FORMAT, "version": VERSION,
        "graph": print_graph(IRGraph("meta_graph", [], nodes, [])),
        "variables": [_variable_entry(v) for v in _all_variables(graph)],
        "collections": {key: _collection_entries(key, graph.get_collection(key)) for key in keys},
        "saver": saver,
    }


def _all_variables(graph: Any) -> list[Variable]:
    """Every Python-side variable the graph knows: those in collections and `get_variable`'s."""
    found: dict[str, Variable] = {}
    for key in graph.get_all_collection_keys():
        for item in graph.get_collection(key):
            if isinstance(item, Variable):
                found.setdefault(item.op.name, item)
    for var in graph.variables.values():
        found.setdefault(var.op.name, var)
    return list(found.values())


def _variable_entry(var: Variable) -> dict[str, Any]:
    return {"name": var.op.name, "initializer": var.initializer.name, "initial_value": var.initial_value.name,
            "trainable": bool(var.trainable), "in_store": var.graph.variables.get(var.op.name) is var}


def _collection_entries(key: str, items: list[Any]) -> list[dict[str, Any]]:
    entries = []
    for item in items:
        entry = _collection_entry(item)
        if entry is None:
            warnings.warn(f"meta graph: left out an item of collection {key!r}: a "
                          f"{type(item).__name__} has no serialised form", stacklevel=3)
        else:
            entries.append(entry)
    return entries


def _collection_entry(item: Any) -> dict[str, Any] | None:
    if isinstance(item, Variable):
        return {"variable": item.op.name}
    if isinstance(item, Tensor):
        return {"tensor": item.name}
    if isinstance(item, Operation):
        return {"operation": item.name}
    if item is None or isinstance(item, (bool, int, float, str)):
        return {"value": item}
    return None


# -- reading -----------------------------------------------------------------------------------
def read_meta_graph_file(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a tfjit meta graph file: {e}") from None
    return check_meta_graph(data, path)


def check_meta_graph(data: Any, source: str) -> dict[str, Any]:
    """`data` if it is a meta graph of the version this tfjit reads; `source` names it in errors."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{source} is not a tfjit meta graph (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise ValueError(f"{source} has meta graph version {data.get('version')}; this tfjit reads "
                         f"version {VERSION}")
    return data


def import_graph(data: dict[str, Any], graph: Any = None, import_scope: str | None = None,
                 clear_devices: bool = False) -> dict[str, Variable]:
    """Add the meta graph's nodes, variables and collections to `graph`.

    Returns the rebuilt variables by their name in the file. With `import_scope`, every op and
    variable name gets the prefix `import_scope/`.
    """
    graph = graph or get_default_graph()
    rename = (lambda name: f"{import_scope}/{name}") if import_scope else (lambda name: name)
    _add_nodes(graph, parse_graph(data["graph"]).nodes, rename, clear_devices)
    variables = {entry["name"]: _rebuild_variable(graph, entry, rename) for entry in data["variables"]}
    for key, entries in data["collections"].items():
        for entry in entries:
            graph.add_to_collection(key, _collection_item(graph, entry, variables, rename))
    return variables


def _add_nodes(graph: Any, nodes: list[Node], rename: Any, clear_devices: bool) -> None:
    unknown = sorted({n.op for n in nodes if n.op not in REGISTRY})
    if unknown:
        raise ValueError(f"the meta graph uses ops this tfjit does not have: {', '.join(unknown)}")
    clashes = [rename(n.name) for n in nodes if _has_op(graph, rename(n.name))]
    if clashes:
        raise ValueError(f"cannot import the meta graph: the graph already has ops named "
                         f"{', '.join(clashes[:5])}{' ...' if len(clashes) > 5 else ''}; pass import_scope=")
    values: dict[Value, Value] = {}
    done: dict[Node, Node] = {}
    for node in nodes:
        new = node.evolve(inputs=tuple(values[v] for v in node.inputs), name=rename(node.name),
                          control_inputs=tuple(done[c] for c in node.control_inputs),
                          device=None if clear_devices else node.device, attrs=_renamed_attrs(node, rename))
        graph.unique_name(new.name + "/")  # reserve the name, as building the op would have
        graph.add_node(new)
        done[node] = new
        values.update(zip(node.outputs, new.outputs))


def _has_op(graph: Any, name: str) -> bool:
    try:
        graph.get_operation_by_name(name)
    except KeyError:
        return False
    return True


def _renamed_attrs(node: Node, rename: Any) -> tuple[tuple[str, Any], ...]:
    """Variable ops name their variable's storage in the `var` attribute; it moves with the op."""
    return tuple((k, rename(v) if k == "var" else v) for k, v in node.attrs)


def _rebuild_variable(graph: Any, entry: dict[str, Any], rename: Any) -> Variable:
    """A `tf.Variable` over ops already in the graph (what TF's `Variable(variable_def=...)` does)."""
    name = rename(entry["name"])
    op = graph.get_operation_by_name(name)
    var = Variable.__new__(Variable)
    var.graph = graph
    var._loc = op.node.loc
    var._variable = op.outputs[0]
    var._attrs = {k: op.node.attr(k) for k in ("var", "dtype", "shape")}
    var.initializer = graph.get_operation_by_name(rename(entry["initializer"]))
    var._initial_value = graph.get_tensor_by_name(rename(entry["initial_value"]))
    var.trainable = entry["trainable"]
    var.constraint = None
    if entry["in_store"]:
        graph.variables[name] = var
    return var


def _collection_item(graph: Any, entry: dict[str, Any], variables: dict[str, Variable], rename: Any) -> Any:
    if "variable" in entry:
        return variables[entry["variable"]]
    if "tensor" in entry:
        return graph.get_tensor_by_name(rename(entry["tensor"]))
    if "operation" in entry:
        return graph.get_operation_by_name(rename(entry["operation"]))
    return entry["value"]
