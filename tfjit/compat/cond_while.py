"""Structured control flow: `tf.cond`, `tf.while_loop`, `tf.case`, `tf.map_fn`, `tf.scan`,
`tf.foldl`, `tf.foldr` (exported at the top level).

Each branch and loop body is traced once into a sub-graph (`BodyGraph`) that becomes an
attribute of one `cond` or `while` node. Tensors of an enclosing graph that the Python
function uses are captured: each becomes a parameter of the sub-graph and an operand of the
node (constants are copied in instead, so passes can fold them there). Variables read inside
a branch or body are captured the same way (their value when the node starts, as TF1's
variable snapshots are); assignments run inside.

A loop built with `back_prop=True` also returns, stacked per iteration, what its gradient
needs to replay an iteration: every loop variable, and the results of the body's stateful
nodes (random draws, assignments), which a replay must not redo. A cond returns the results
of its branches' stateful nodes for the same reason.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..ir.attrs import ArrayAttr
from ..ir.graph import Graph as IRGraph
from ..ir.graph import Node, Value
from ..ir.types import TensorType, as_dtype, bool_, make_shape
from ..ops.control_flow import admits
from ..trace.graph import Graph, get_default_graph
from ..trace.tensor import Operation, Tensor, TensorShape, convert_to_tensor
from .array_ops import shape as shape_of
from .layout_ops import concat, expand_dims, gather
from .math_ops import add, less, logical_and, subtract

__all__ = ["case", "cond", "foldl", "foldr", "map_fn", "scan", "while_loop"]


# -- nested structures ---------------------------------------------------------------------------
def flatten(structure: Any) -> list[Any]:
    """The leaves of nested lists, tuples (namedtuples too) and dicts (by sorted key)."""
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def pack_as(structure: Any, leaves: Sequence[Any]) -> Any:
    """`leaves` arranged as `structure` (the inverse of `flatten`)."""
    it = iter(leaves)
    packed = _pack(structure, it)
    if next(it, _END) is not _END:
        raise ValueError("more leaves than the structure holds")
    return packed


_END = object()


def _pack(structure: Any, it: Iterator[Any]) -> Any:
    if isinstance(structure, dict):
        values = {key: _pack(structure[key], it) for key in sorted(structure)}
        return type(structure)((key, values[key]) for key in structure)
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*(_pack(x, it) for x in structure))
    if isinstance(structure, (list, tuple)):
        return type(structure)(_pack(x, it) for x in structure)
    return next(it)


def _shape_of_structure(structure: Any) -> Any:
    """The nesting alone (lists and tuples alike), to compare two structures."""
    if isinstance(structure, dict):
        return {key: _shape_of_structure(v) for key, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_shape_of_structure(x) for x in structure]
    return None


# -- tracing sub-graphs ----------------------------------------------------------------------------
class BodyGraph(Graph):
    """A cond branch or loop body being traced, nested in `outer`.

    It shares names, variable store and collections with `outer`. Values of enclosing graphs
    that its ops use are captured (`capture`): they become parameters after the explicit
    ones, and `captures` lists them (as tensors of `outer`) for the node's operands.
    """

    def __init__(self, outer: Graph, name: str, param_types: Sequence[TensorType] = (),
                 captures: Sequence[Tensor] = ()):
        super().__init__()
        self.outer = outer
        self.ir_name = name
        self._used_names = outer._used_names
        self._name_stack = outer._name_stack
        self._collections = outer._collections
        self._device_stack = list(outer._device_stack[-1:])
        self.variables = outer.variables
        self.variable_scopes = outer.variable_scopes
        self.variable_scope_counts = outer.variable_scope_counts
        self.seed = outer.seed
        self.outer_controls: dict[Node, None] = {}
        self.captures: list[Tensor] = []
        self._all_params: list[Tensor] = []
        self._captured: dict[Value, Tensor] = {}
        self.params = [self._param(t) for t in param_types]
        for tensor in captures:
            self.capture(tensor)

    def _param(self, ttype: TensorType, name: str | None = None) -> Tensor:
        node = Node("param", (), (("index", len(self._all_params)),), (ttype,), name=name)
        tensor = self.add_node(node).outputs[0]
        self._all_params.append(tensor)
        return tensor

    def capture(self, tensor: Tensor) -> Tensor:
        """`tensor` of this graph or an enclosing one, as a tensor of this graph."""
        if tensor.graph is self:
            return tensor
        if not self.outer.encloses(tensor.graph):
            raise ValueError(f"Tensor {tensor.name} was built in another cond branch or loop body "
                             "(or another graph) and cannot be used here; return it from there instead")
        if isinstance(self.outer, BodyGraph):
            tensor = self.outer.capture(tensor)
        inner = self._captured.get(tensor.value)
        if inner is None:
            inner = self._capture_new(tensor)
            self._captured[tensor.value] = inner
        return inner

    def _capture_new(self, tensor: Tensor) -> Tensor:
        short = (tensor.op.name or "loop_var").rsplit("/", 1)[-1]
        if tensor.op.node.op == "constant":  # copied in, so that folding sees it
            return Graph.emit(self, "constant", [], tensor.op.node.attr_dict, name=short).outputs[0]
        self.captures.append(tensor)
        return self._param(tensor.type, name=short)

    def emit(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None,
             name: str | None = None, loc: Any = None) -> Any:
        return super().emit(op, [self._local(v) for v in inputs], attrs, name=name, loc=loc)

    def _local(self, v: Value) -> Value:
        if v.node in self._operations:
            return v
        graph = self.outer
        while graph is not None and v.node not in graph._operations:
            graph = graph.outer
        if graph is None:
            raise ValueError(f"{v.node.op} {v.node.name} was built in another cond branch or loop body "
                             "(or another graph) and cannot be used here; return it from there instead")
        return self.capture(graph.operation(v.node).outputs[v.index]).value

    def _current_control_inputs(self) -> list[Node]:
        """Control inputs on enclosing graphs' ops move to the cond or while node itself."""
        own = []
        for node in super()._current_control_inputs():
            if node in self._operations:
                own.append(node)
            else:
                self.outer_controls[node] = None
        return own

    def next_seed(self) -> int:
        return (self.outer.next_seed() << 12) + len(self.nodes)

    def stateful_values(self) -> list[Tensor]:
        """Results of the nodes a replay must not redo (random draws, assignments, reads)."""
        from ..passes.effects import is_pure

        return [t for node in self.nodes if node.op != "param" and not is_pure(node)
                for t in self.operation(node).outputs]

    def finish(self, results: Sequence[Tensor]) -> IRGraph:
        """The traced IR graph; nothing may be added afterwards."""
        values = [self.capture(t).value for t in results]
        self.finalized = True
        body = [n for n in self.nodes if n.op != "param"]
        return IRGraph(self.ir_name, [t.value for t in self._all_params], body, values)


def capture(tensor: Tensor) -> Tensor:
    """`tensor` as a tensor of the graph being built (captured if that is a branch or body)."""
    graph = get_default_graph()
    return graph.capture(tensor) if isinstance(graph, BodyGraph) else tensor


def _convert_results(values: list[Any], graph: BodyGraph, what: str) -> list[Tensor]:
    out = []
    with graph.as_default():
        for v in values:
            if v is None:
                raise ValueError(f"{what} returned None; every returned value must be a Tensor")
            out.append(convert_to_tensor(v))
    return out


def _emit(graph: Graph, op: str, operands: Sequence[Tensor], attrs: dict[str, Any], name: str,
          bodies: Sequence[BodyGraph]) -> Operation:
    controls = [n for b in bodies for n in b.outer_controls]
    with graph.control_dependencies(controls):
        return graph.emit(op, [t.value for t in operands], attrs, name=name)


# -- cond ----------------------------------------------------------------------------------------
def cond(pred: Any, true_fn: Callable[[], Any] | None = None, false_fn: Callable[[], Any] | None = None,
         strict: bool = False, name: str | None = None, fn1: Any = None, fn2: Any = None) -> Any:
    """`true_fn()` if `pred` else `false_fn()`; both are traced once, into the two branches.

    They must return the same nested structure of tensors of the same dtypes; the results'
    shapes are what both branches agree on. Unless `strict`, a one-element list or tuple
    comes back as its element (TF1's rule).
    """
    true_fn = true_fn if true_fn is not None else fn1
    false_fn = false_fn if false_fn is not None else fn2
    if isinstance(pred, (bool, np.bool_)):
        raise TypeError("pred must not be a Python bool")
    for fn, what in ((true_fn, "true_fn"), (false_fn, "false_fn")):
        if not callable(fn):
            raise TypeError(f"{what} must be callable.")
    graph = get_default_graph()
    with graph.name_scope(name or "cond") as scope:
        p = convert_to_tensor(pred)
        if p.dtype != bool_ or p.type.shape not in ((), None):
            raise ValueError(f"tf.cond: pred must be a bool scalar, got {p.type} ({p.name})")
        structure, outputs = _cond(graph, scope, p, true_fn, false_fn)
    result = pack_as(structure, outputs)
    if not strict and isinstance(result, (list, tuple)) and len(result) == 1:
        return result[0]
    return result


def _cond(graph: Graph, scope: str, pred: Tensor, true_fn: Callable[[], Any],
          false_fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
    then_g = BodyGraph(graph, "then")
    with then_g.as_default():
        then_out = true_fn()
    else_g = BodyGraph(graph, "else", captures=then_g.captures)
    with else_g.as_default():
        else_out = false_fn()
    for tensor in else_g.captures[len(then_g.captures):]:
        then_g.capture(tensor)
    if _shape_of_structure(then_out) != _shape_of_structure(else_out):
        raise ValueError("true_fn and false_fn arguments to tf.cond must have the same number, type, and "
                         f"overall structure of return values. true_fn returned {then_out!r}, "
                         f"false_fn returned {else_out!r}")
    then_leaves, else_leaves = flatten(then_out), flatten(else_out)
    is_op = [isinstance(x, Operation) for x in then_leaves]
    if is_op != [isinstance(x, Operation) for x in else_leaves]:
        raise ValueError("tf.cond: where one branch returns an Operation, the other must too")
    then_r = _convert_results([x for x, o in zip(then_leaves, is_op) if not o], then_g, "true_fn")
    else_r = _convert_results([x for x, o in zip(else_leaves, is_op) if not o], else_g, "false_fn")
    for a, b in zip(then_r, else_r):
        if a.dtype != b.dtype:
            raise TypeError(f"tf.cond: true_fn returns {a.dtype.name} ({a.name}) where false_fn returns "
                            f"{b.dtype.name} ({b.name}); both branches must return the same dtypes")
    then_r, else_r = _with_stateful_values(then_g, else_g, then_r, else_r)
    attrs = {"then_branch": then_g.finish(then_r), "else_branch": else_g.finish(else_r)}
    op = _emit(graph, "cond", [pred, *then_g.captures], attrs, scope, [then_g, else_g])
    values = iter(op.outputs)
    outputs = [op if o else next(values) for o in is_op]
    return then_out, outputs


def _with_stateful_values(then_g: BodyGraph, else_g: BodyGraph, then_r: list[Tensor],
                          else_r: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Both branches extended by the stateful results of each (zeros in the other branch)."""
    then_s, else_s = then_g.stateful_values(), else_g.stateful_values()
    if not then_s and not else_s:
        return then_r, else_r
    return (then_r + then_s + [_placeholder_zeros(else_g, t, then_g) for t in else_s],
            else_r + [_placeholder_zeros(then_g, t, else_g) for t in then_s] + else_s)


def _placeholder_zeros(owner: BodyGraph, t: Tensor, graph: BodyGraph) -> Tensor:
    """Zeros standing in for `t` (of `owner`) in `graph`; unknown dims are empty."""
    dims = t.type.shape if t.type.shape is not None else ()
    array = np.zeros([d if isinstance(d, int) else 0 for d in dims], t.dtype.np_dtype)
    return Graph.emit(graph, "constant", [], {"value": ArrayAttr(array)}, name="zeros").outputs[0]


# -- while_loop ----------------------------------------------------------------------------------
def while_loop(cond: Callable[..., Any], body: Callable[..., Any], loop_vars: Any, shape_invariants: Any = None,
               parallel_iterations: int = 10, back_prop: bool = True, swap_memory: bool = False,
               name: str | None = None, maximum_iterations: Any = None,
               return_same_structure: bool = False) -> Any:
    """Repeat `loop_vars = body(*loop_vars)` while `cond(*loop_vars)` holds (TF 1.x).

    `cond` and `body` are traced once, so a loop of any length builds and compiles in the
    same time. `loop_vars` may be nested (tuples, lists, namedtuples, dicts); each variable
    keeps its shape from iteration to iteration unless `shape_invariants` gives a less
    specific one. `maximum_iterations` stops the loop after that many iterations.
    `parallel_iterations` and `swap_memory` are accepted for compatibility.
    """
    if not callable(cond) or not callable(body):
        raise TypeError("cond and body must be callable")
    packed = isinstance(loop_vars, (list, tuple))
    structure = loop_vars if packed else [loop_vars]
    if not flatten(structure):
        raise ValueError("No loop variables provided")
    graph = get_default_graph()
    with graph.name_scope(name or "while") as scope:
        init = [convert_to_tensor(v) for v in flatten(structure)]
        types = _invariant_types(init, structure, shape_invariants if packed or shape_invariants is None
                                 else [shape_invariants])

        def call(fn: Callable[..., Any], values: Sequence[Tensor]) -> Any:
            return fn(*pack_as(structure, values))

        def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
            result = call(body, values)
            result = list(result) if isinstance(result, (list, tuple)) and packed else [result]
            if _shape_of_structure(result) != _shape_of_structure(list(structure)):
                raise ValueError(f"The two structures don't have the same nested structure: the loop "
                                 f"variables {structure!r} and the body's result {result!r}")
            return flatten(result), []

        test = lambda values: call(cond, values)  # noqa: E731
        if maximum_iterations is not None:
            test, step, init, types = _bounded(test, step, init, types, maximum_iterations)
        final, _ = loop(test, step, init, types, back_prop, scope)
    if maximum_iterations is not None:
        final = final[1:]
    result = pack_as(structure, final)
    if not return_same_structure and len(final) == 1:
        return final[0]
    return result if packed else result[0]


def _invariant_types(init: list[Tensor], structure: Any, shape_invariants: Any) -> list[TensorType]:
    if shape_invariants is None:
        return [t.type for t in init]
    shapes = _flatten_shapes(shape_invariants)
    if len(shapes) != len(init):
        raise ValueError(f"shape_invariants has {len(shapes)} shapes for {len(init)} loop variables")
    types = []
    for t, s in zip(init, shapes):
        declared = TensorType(t.dtype, make_shape(s.as_list() if s.ndims is not None else None))
        if not admits(declared, t.type):
            raise ValueError(f"The shape invariant specified for {t.name} is not compatible with the initial "
                             f"shape of the loop variable. It enters the loop with shape {t.shape}, but the "
                             f"specified shape invariant is {s}.")
        types.append(declared)
    return types


def _flatten_shapes(shapes: Any) -> list[TensorShape]:
    """Shape invariants' leaves: TensorShapes, or lists of dims (ints and Nones)."""
    if isinstance(shapes, TensorShape):
        return [shapes]
    if shapes is None:
        return [TensorShape(None)]
    if isinstance(shapes, (list, tuple)) and all(d is None or isinstance(d, (int, np.integer)) for d in shapes) \
            and not hasattr(shapes, "_fields"):
        return [TensorShape(list(shapes))]
    if isinstance(shapes, dict):
        return [s for key in sorted(shapes) for s in _flatten_shapes(shapes[key])]
    return [s for item in shapes for s in _flatten_shapes(item)]


def _bounded(test: Callable[..., Any], step: Callable[..., Any], init: list[Tensor], types: list[TensorType],
             maximum_iterations: Any) -> tuple[Any, Any, list[Tensor], list[TensorType]]:
    """TF's rewrite of `maximum_iterations`: a counter in front of the loop variables."""
    limit = convert_to_tensor(maximum_iterations)
    if limit.type.shape not in ((), None) or not limit.dtype.is_integer:
        raise ValueError(f"maximum_iterations must be an integer scalar, saw {limit.type}")
    counter = convert_to_tensor(np.zeros((), limit.dtype.np_dtype), name="iteration_counter")

    def bounded_test(values: list[Tensor]) -> Tensor:
        return logical_and(less(values[0], limit), test(values[1:]))

    def bounded_step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
        new, emitted = step(values[1:])
        return [add(values[0], np.ones((), limit.dtype.np_dtype)), *new], emitted

    return bounded_test, bounded_step, [counter, *init], [counter.type, *types]


def loop(test: Callable[[list[Tensor]], Any], step: Callable[[list[Tensor]], tuple[list[Any], list[Any]]],
         init: list[Tensor], types: list[TensorType], back_prop: bool, scope: str) -> tuple[list[Tensor], list[Tensor]]:
    """One `while` node over flat loop variables: `step(values)` returns the new values and
    per-iteration values that come back stacked. Returns (final values, stacked values)."""
    graph = get_default_graph()
    test_g = BodyGraph(graph, "cond", types)
    with test_g.as_default():
        keep_going = convert_to_tensor(test(test_g.params))
    if keep_going.dtype != bool_ or keep_going.type.shape not in ((), None):
        raise ValueError(f"tf.while_loop: cond must return a bool scalar, got {keep_going.type}")
    body_g = BodyGraph(graph, "body", types, test_g.captures)
    with body_g.as_default():
        new, emitted = step(body_g.params)
    new = _convert_results(new, body_g, "body")
    emitted = _convert_results(emitted, body_g, "body")
    _check_iteration(init, types, new)
    for tensor in body_g.captures[len(test_g.captures):]:
        test_g.capture(tensor)
    kept = _history(body_g, types) if back_prop else []
    attrs = {"cond": test_g.finish([keep_going]), "body": body_g.finish(new + emitted + kept),
             "carried": len(init)}
    op = _emit(graph, "while", [*init, *body_g.captures], attrs, scope, [test_g, body_g])
    return op.outputs[:len(init)], op.outputs[len(init):len(init) + len(emitted)]


def _check_iteration(init: list[Tensor], types: list[TensorType], new: list[Tensor]) -> None:
    for t, declared, n in zip(init, types, new):
        if n.dtype != declared.dtype:
            raise TypeError(f"Input tensor '{t.name}' enters the loop with type {declared.dtype.name}, but has "
                            f"type {n.dtype.name} after one iteration")
        if not admits(declared, n.type):
            raise ValueError(f"Input tensor '{t.name}' enters the loop with shape {TensorShape(declared.shape)}, "
                             f"but has shape {n.shape} after one iteration. To allow the shape to vary across "
                             "iterations, use the `shape_invariants` argument of tf.while_loop to specify a "
                             "less-specific shape.")


def _history(body_g: BodyGraph, types: list[TensorType]) -> list[Tensor]:
    """What a gradient replays an iteration from: the loop variables and stateful results
    (nothing when no float value enters the loop, as nothing is then differentiable)."""
    entering = types + [t.type for t in body_g.captures]
    if not any(t.dtype.is_floating for t in entering):
        return []
    return body_g.params + body_g.stateful_values()


# -- case, map_fn, scan, foldl, foldr -----------------------------------------------------------
def case(pred_fn_pairs: Any, default: Callable[[], Any] | None = None, exclusive: bool = False,
         strict: bool = False, name: str = "case") -> Any:
    """The result of the first fn whose predicate holds, else of `default`; nested conds.

    Without `default` the last pair's fn is the default (TF1 checks at run time that its
    predicate holds; tfjit does not). `exclusive` is accepted; it is not checked at run time.
    """
    pairs = list(pred_fn_pairs.items()) if isinstance(pred_fn_pairs, dict) else list(pred_fn_pairs)
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2 or not callable(pair[1]):
            raise TypeError(f"Each entry in pred_fn_pairs must be a 2-tuple (pred, fn), got {pair!r}")
    if not pairs:
        if default is None:
            raise ValueError("tf.case: pred_fn_pairs is empty and there is no default")
        return default()
    if default is None:
        pairs, default = pairs[:-1], pairs[-1][1]
    graph = get_default_graph()
    with graph.name_scope(name):
        return _case_chain(pairs, default, strict)


def _case_chain(pairs: list[tuple[Any, Callable[[], Any]]], default: Callable[[], Any], strict: bool) -> Any:
    if not pairs:
        return default()
    (pred, fn), rest = pairs[0], pairs[1:]
    return cond(pred, fn, lambda: _case_chain(rest, default, strict), strict=strict)


def _elems(elems: Any) -> tuple[list[Tensor], Tensor, int | None]:
    """The flat elems, their common length as a tensor, and as an int when known."""
    flat = [convert_to_tensor(e) for e in flatten(elems)]
    if not flat:
        raise ValueError("elems must not be empty")
    for e in flat:
        if e.type.rank == 0:
            raise ValueError(f"elems must be tensors of rank >= 1, got {e.type} ({e.name})")
    first = flat[0].type.shape
    static = first[0] if first is not None and isinstance(first[0], int) else None
    length = shape_of(flat[0])[0] if static is None else convert_to_tensor(np.int32(static))
    return flat, length, static


def _row(flat: list[Tensor], index: Tensor) -> list[Tensor]:
    return [gather(e, index) for e in flat]


def _with_length(stacked: list[Tensor], static: int | None) -> list[Tensor]:
    if static is not None:
        for t in stacked:
            if t.shape.ndims is not None:
                t.set_shape([static] + t.shape.as_list()[1:])
    return stacked


def map_fn(fn: Callable[[Any], Any], elems: Any, dtype: Any = None, parallel_iterations: int | None = None,
           back_prop: bool = True, swap_memory: bool = False, infer_shape: bool = True,
           name: str | None = None) -> Any:
    """`fn` applied to each slice of `elems` along axis 0, the results stacked (one loop)."""
    graph = get_default_graph()
    with graph.name_scope(name or "map") as scope:
        flat, length, static = _elems(elems)
        structure: list[Any] = []

        def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
            i = values[0]
            out = fn(pack_as(elems, _row(flat, i)))
            structure.append(out)
            leaves = flatten(out)
            if dtype is not None:
                _check_dtypes(leaves, dtype)
            return [add(i, 1)], leaves

        zero = convert_to_tensor(np.int32(0))
        _, stacked = loop(lambda v: less(v[0], length), step, [zero], [zero.type], back_prop, scope)
    return pack_as(structure[0], _with_length(stacked, static))


def _check_dtypes(leaves: list[Any], dtype: Any) -> None:
    wanted = [as_dtype(d) for d in flatten(dtype)]
    got = [convert_to_tensor(x).dtype for x in leaves]
    if wanted != got:
        raise TypeError(f"map_fn: fn returned dtypes {[d.name for d in got]} but dtype says "
                        f"{[d.name for d in wanted]}")


def scan(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, parallel_iterations: int = 10,
         back_prop: bool = True, swap_memory: bool = False, infer_shape: bool = True, reverse: bool = False,
         name: str | None = None) -> Any:
    """Every accumulator `a = fn(a, x)` over the slices of `elems`, stacked (TF's scan). Without
    `initializer` the first slice is the first accumulator (and the first result)."""
    graph = get_default_graph()
    with graph.name_scope(name or "scan") as scope:
        flat, length, static = _elems(elems)
        first = _first_index(length, reverse)
        init_structure, init = _accumulator(initializer, flat, elems, first)
        start = convert_to_tensor(np.int32(0 if initializer is not None else 1))

        def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
            i, acc = values[0], pack_as(init_structure, values[1:])
            index = _index(i, length, reverse)
            new = flatten(fn(acc, pack_as(elems, _row(flat, index))))
            return [add(i, 1), *new], new

        _, stacked = loop(lambda v: less(v[0], length), step, [start, *init],
                          [start.type, *(t.type for t in init)], back_prop, scope)
        if initializer is None:
            stacked = [concat([expand_dims(a, 0), s], 0) for a, s in zip(init, stacked)]
        if reverse:
            stacked = [_reversed(s) for s in stacked]
    return pack_as(init_structure, _with_length(stacked, static))


def _first_index(length: Tensor, reverse: bool) -> Tensor:
    return subtract(length, 1) if reverse else convert_to_tensor(np.int32(0))


def _index(i: Tensor, length: Tensor, reverse: bool) -> Tensor:
    return subtract(subtract(length, 1), i) if reverse else i


def _accumulator(initializer: Any, flat: list[Tensor], elems: Any, first: Tensor) -> tuple[Any, list[Tensor]]:
    if initializer is not None:
        return initializer, [convert_to_tensor(x) for x in flatten(initializer)]
    return elems, _row(flat, first)


def _reversed(stacked: Tensor) -> Tensor:
    from .array_ops import range as range_

    n = shape_of(stacked)[0]
    return gather(stacked, range_(subtract(n, 1), -1, -1))


def foldl(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, parallel_iterations: int = 10,
          back_prop: bool = True, swap_memory: bool = False, name: str | None = None) -> Any:
    """The last accumulator of `a = fn(a, x)` over `elems` from the first slice on."""
    return _fold(fn, elems, initializer, back_prop, name or "foldl", reverse=False)


def foldr(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, parallel_iterations: int = 10,
          back_prop: bool = True, swap_memory: bool = False, name: str | None = None) -> Any:
    """The last accumulator of `a = fn(a, x)` over `elems` from the last slice back."""
    return _fold(fn, elems, initializer, back_prop, name or "foldr", reverse=True)


def _fold(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any, back_prop: bool, name: str,
          reverse: bool) -> Any:
    graph = get_default_graph()
    with graph.name_scope(name) as scope:
        flat, length, _ = _elems(elems)
        init_structure, init = _accumulator(initializer, flat, elems, _first_index(length, reverse))
        start = convert_to_tensor(np.int32(0 if initializer is not None else 1))

        def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
            i, acc = values[0], pack_as(init_structure, values[1:])
            index = _index(i, length, reverse)
            return [add(i, 1), *flatten(fn(acc, pack_as(elems, _row(flat, index))))], []

        final, _ = loop(lambda v: less(v[0], length), step, [start, *init],
                        [start.type, *(t.type for t in init)], back_prop, scope)
    return pack_as(init_structure, final[1:])
