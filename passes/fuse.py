"""Fusion: groups nodes into kernels, each kept in the IR as a `fused` node with a body.

Kernel kinds and what they may hold (the backends generate one loop nest per kind):
- loop:        elementwise/broadcast ops over one iteration space (same element count);
- reduction:   reductions over the same input shape and axes, with the elementwise ops that
               feed them (prologue) and use their results (epilogue) at the full or the
               reduced shape — softmax, layer-norm and cross-entropy rows become one kernel —
               and sums over the leading axes of their values with the math after those
               (a bias gradient after the cross-entropy's gradient: column sums);
- contraction: one matmul/tensordot (or conv) plus its elementwise epilogue at its output shape,
               which may end in sums or means of its values (a loss, a bias gradient);
- update:      variable assignments with the elementwise math computing the new values, so an
               optimizer's update of a variable and its slots is one in-place kernel.

Producers are never duplicated: a value a kernel computes and others need becomes one more
result of that kernel. Two groups merge only when no path leaves one and re-enters the
other (no cycles), and only on the same device. Every decision is recorded with a reason
(`explain_fusion`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import Fusion, get_op

from .effects import is_pure

# Layout ops that only re-index (no data movement a loop cannot express): fusible like elementwise.
_INDEX_ONLY = {"broadcast_to", "expand_dims", "squeeze", "unreduce"}
_WRITES = {"assign", "assign_add", "assign_sub"}
# A smaller producer may be recomputed inside a bigger loop only when it has this few elements.
RECOMPUTE_ELEMENTS = 1


@dataclass(eq=False)
class Group:
    kind: str  # loop | reduction | contraction | update
    members: list[Node] = field(default_factory=list)
    space: tuple | None = None  # loop: output shape; reduction: (input shape, axes); contraction: output shape

    @property
    def anchor(self) -> Node:
        """The node that names the kernel: its reduction/contraction, else its last member."""
        for n in self.members:
            if _role(n) in ("reduction", "contraction"):
                return n
        return self.members[-1]


def _role(node: Node) -> str:
    if node.op in _WRITES:
        return "write"
    if not is_pure(node) or node.op == "fused" or not node.types or len(node.types) != 1:
        return "opaque"
    cls = get_op(node.op).fusion
    if cls in (Fusion.ELEMENTWISE, Fusion.BROADCAST) or node.op in _INDEX_ONLY or _unit_reshape(node):
        return "elementwise"
    if cls is Fusion.REDUCTION and len(node.inputs) >= 1:
        return "reduction"
    if cls is Fusion.CONTRACTION:
        return "contraction"
    return "opaque"


def _unit_reshape(node: Node) -> bool:
    """A static reshape that only adds or removes size-1 dims is a re-indexing."""
    if node.op != "reshape" or len(node.inputs) != 1:
        return False
    a, b = node.inputs[0].type.shape, node.types[0].shape
    if a is None or b is None:
        return False
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def _shape(v: Value) -> tuple | None:
    return v.type.shape


def _elements(shape: tuple | None) -> int | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def _same_space(a: tuple | None, b: tuple | None) -> bool:
    """Two shapes index the same elements (equal, allowing for leading/trailing unit dims)."""
    if a is None or b is None:
        return False
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def _reduction_space(node: Node) -> tuple:
    axes = node.attr("axes") if node.attr("axes") is not None else node.attr("axis")
    if axes is None and node.op in ("sum", "mean", "max", "min", "prod", "logsumexp", "all", "any"):
        rank = len(_shape(node.inputs[0]) or ())
        axes = tuple(range(rank))
    if isinstance(axes, int):
        axes = (axes,)
    return (_shape(node.inputs[0]), tuple(axes) if axes is not None else None)


def _fits_reduction(shape: tuple | None, space: tuple) -> bool:
    """Shapes a reduction kernel's rows can produce: the full input shape or the reduced one."""
    full, axes = space
    if shape is None or full is None or axes is None:
        return False
    keep = tuple(1 if i in axes else d for i, d in enumerate(full))
    drop = tuple(d for i, d in enumerate(full) if i not in axes)
    return any(_same_space(shape, s) for s in (full, keep, drop)) or _elements(shape) == 1


class _Fuser:
    def __init__(self, graph: Graph, loops_only: bool = False):
        self.graph = graph
        self.loops_only = loops_only
        self.index = {n: i for i, n in enumerate(graph.nodes)}
        self.group_of: dict[Node, Group] = {}
        self.users: dict[Node, list[Node]] = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.users.setdefault(v.node, []).append(n)
            for c in n.control_inputs:
                self.users.setdefault(c, []).append(n)
        for dep, write in effect_edges(graph):  # orderings count as edges for the cycle check
            self.users.setdefault(dep, []).append(write)
        self.decisions: list[str] = []

    # -- forming groups --------------------------------------------------------------------
    def run(self) -> list[Group]:
        for node in self.graph.nodes:
            role = _role(node)
            if role == "opaque" or (self.loops_only and role != "elementwise"):
                continue
            group = self._new_group(node, role)
            for producer in dict.fromkeys(v.node for v in node.inputs):
                other = self.group_of.get(producer)
                if other is not None and other is not group:
                    group = self._try_merge(other, group, producer, node)
        return list(dict.fromkeys(self.group_of.values()))

    def _new_group(self, node: Node, role: str) -> Group:
        if role == "elementwise":
            group = Group("loop", [node], _shape(node.out))
        elif role == "reduction":
            group = Group("reduction", [node], _reduction_space(node))
        elif role == "contraction":
            group = Group("contraction", [node], _shape(node.out))
        else:
            group = Group("update", [node], None)
        self.group_of[node] = group
        return group

    def _try_merge(self, producer_group: Group, consumer_group: Group, producer: Node, consumer: Node) -> Group:
        pair = f"{producer.name or producer.op} -> {consumer.name or consumer.op}"
        if producer_group.kind == "contraction" and consumer_group.kind == "reduction":
            kind, space, why_not = "contraction", producer_group.space, _why_not_reduced_epilogue(
                producer_group, consumer_group, self.users)
        elif producer_group.kind == "contraction" and consumer_group.kind in ("loop", "update") \
                and _reduced_values(producer_group):
            kind, space, why_not = "contraction", producer_group.space, _why_not_after_reduction(
                producer_group, consumer_group)
            if why_not is None and _same_space(consumer_group.space, producer_group.space):
                kind, space, why_not = _merged_kind(producer_group, consumer_group, producer, consumer)
        elif producer_group.kind == consumer_group.kind == "reduction" and producer_group.space != consumer_group.space \
                and _column_space(producer_group.space, consumer_group.space):
            kind, space, why_not = "reduction", producer_group.space, _why_not_column_sums(producer_group, consumer_group)
        elif producer_group.kind == "reduction" and consumer_group.kind == "loop" \
                and _reads(consumer_group, _reduced_values(producer_group)):
            kind, space, why_not = "reduction", producer_group.space, None  # the math after column sums
        else:
            kind, space, why_not = _merged_kind(producer_group, consumer_group, producer, consumer)
        members = sorted(producer_group.members + consumer_group.members, key=self.index.__getitem__) \
            if why_not is None else []
        if why_not is None and kind == "reduction":
            why_not = _why_not_column_readers(members, space)
        if why_not is None and producer.device != consumer.device:
            why_not = f"different devices ({producer.device} vs {consumer.device})"
        if why_not is None and self._creates_cycle(producer_group, consumer_group):
            why_not = "a path leaves the producer's kernel and re-enters the consumer's (fusing would form a cycle)"
        if why_not is not None:
            self.decisions.append(f"not fused: {pair}: {why_not}")
            return consumer_group
        merged = Group(kind, members, space)
        for n in merged.members:
            self.group_of[n] = merged
        self.decisions.append(f"fused: {pair} into one {kind} kernel")
        return merged

    def _creates_cycle(self, a: Group, b: Group) -> bool:
        """Whether some path leaves a∪b and comes back, counting every other group as one unit
        (so the graph of kernels, not just of nodes, stays acyclic)."""
        inside = set(a.members) | set(b.members)
        limit = max(self.index[n] for n in inside)
        frontier = [u for n in inside for u in self.users.get(n, []) if u not in inside]
        seen: set[object] = set()
        while frontier:
            n = frontier.pop()
            if n in inside:
                return True
            group = self.group_of.get(n)
            unit = group if group is not None else n
            members = group.members if group is not None else [n]
            if unit in seen or min(self.index[m] for m in members) > limit:
                continue  # a unit after everything in a∪b cannot lead back into it
            seen.add(unit)
            frontier.extend(u for m in members for u in self.users.get(m, []))
        return False


def _merged_kind(p: Group, c: Group, producer: Node, consumer: Node) -> tuple[str, tuple | None, str | None]:
    """The kind of the merged kernel, or why the two may not merge."""
    kinds = {p.kind, c.kind}
    if kinds == {"loop"}:
        if _same_space(p.space, c.space):
            return "loop", c.space, None
        # A one-element producer is recomputed per element. Empty spaces stay apart: an
        # optimizer's (0, 3) slot's update, fused with its scalar step size and through it with
        # a (2, 3, 4) slot's, made a loop kernel over no common space (it failed to compile).
        if _elements(p.space) is not None and 0 < _elements(p.space) <= RECOMPUTE_ELEMENTS \
                and _elements(c.space) != 0:
            return "loop", c.space, None
        return "", None, f"different iteration spaces {p.space} and {c.space} (fusing would recompute the smaller one per element)"
    if kinds == {"loop", "reduction"}:
        red, loop = (p, c) if p.kind == "reduction" else (c, p)
        if _fits_reduction(loop.space, red.space):
            return "reduction", red.space, None
        return "", None, f"shape {loop.space} is neither the reduction's input nor its result shape"
    if kinds == {"reduction"}:
        if p.space == c.space:
            return "reduction", c.space, None
        return "", None, f"reductions over different inputs/axes {p.space} and {c.space}"
    if p.kind == "contraction" and c.kind == "loop":
        if _same_space(c.space, p.space):
            return "contraction", p.space, None
        return "", None, f"epilogue shape {c.space} differs from the contraction's output {p.space}"
    if c.kind == "contraction":
        return "", None, "a contraction reads materialised operands (no prologue fusion)"
    if "update" in kinds and kinds <= {"update", "loop"}:
        return "update", None, None
    if p.kind == "contraction" and c.kind == "update":
        return "contraction", p.space, None  # e.g. var -= lr * (x^T @ g): one GEMM into the variable
    return "", None, f"a {p.kind} kernel and a {c.kind} kernel do not fuse"


def _why_not_reduced_epilogue(p: Group, c: Group, users: dict[Node, list[Node]]) -> str | None:
    """Why reduction group `c` may not end contraction `p`'s epilogue, or None when it may: a
    lone float sum or mean over the product's shape, over every axis, the leading axes (a bias
    gradient) or the last one, whose result feeds nothing at the product's shape (a softmax's
    or a layer norm's next pass, which a reduction kernel runs with it over rows in cache).
    Only after a matmul (convolution kernels do not reduce), and not on a GPU (nor do the
    CUDA backend's epilogues)."""
    if p.anchor.op != "matmul":
        return f"a {p.anchor.op} kernel's epilogue does not reduce"
    if len(c.members) != 1 or c.members[0].op not in ("sum", "mean"):
        return "only a lone sum or mean ends a contraction's epilogue"
    (red,) = c.members
    full, axes = c.space
    if "GPU:" in (red.device or ""):
        return "the CUDA backend's contraction epilogues do not reduce"
    if not red.out.type.dtype.is_floating or full is None or axes is None or tuple(full) != tuple(p.space or ()):
        return f"a reduction of {full} is not a float reduction of the product's shape {p.space}"
    rank = len(full)
    if tuple(sorted(a % rank for a in axes)) not in (tuple(range(rank)), tuple(range(rank - 1)), (rank - 1,)):
        return f"a reduction over axes {axes} (not all, the leading or the last)"
    size = _elements(p.space)
    if any(_elements(t.shape) == size for u in users.get(red, []) for t in u.types):
        return "its result feeds a value at the product's shape (a softmax's or layer norm's next pass)"
    return None


def _reduced_values(g: Group) -> set[Value]:
    """The values of group `g` that sums and means over other axes than its own space give
    (a contraction epilogue's; a row kernel's column sums), and what is computed from them
    (members are in program order)."""
    reduced: set[Value] = set()
    for n in g.members:
        if (_role(n) == "reduction" and _reduction_space(n) != g.space) or any(v in reduced for v in n.inputs):
            reduced.update(n.outputs)
    return reduced


def _why_not_after_reduction(p: Group, c: Group) -> str | None:
    """Why group `c` may not join contraction `p`, whose epilogue reduces, or None when it
    may: a loop at the product's shape that reads none of the reduced values (the epilogue
    computes every full value before it reduces), or a loop at a reduced value's shape (or a
    scalar one) that reads only reduced values of `p` (a bias's gradient step)."""
    if c.kind == "update":
        return "a contraction whose epilogue reduces assigns no variable"
    reduced = _reduced_values(p)
    inside = set(p.members)
    reads = {v for n in c.members for v in n.inputs if v.node in inside}
    if _same_space(c.space, p.space):
        return "it reads a reduced value at the product's shape" if reads & reduced else None
    if not reads <= reduced:
        return f"shape {c.space} differs from the contraction's output {p.space}"
    if _elements(c.space) != 1 and not all(_same_space(c.space, v.type.shape) for v in reads):
        return f"shape {c.space} is not the reduced values' shape"
    return None


def _column_space(rows: tuple, columns: tuple) -> bool:
    """Whether reduction space `columns` sums the input of row space `rows` over other axes
    (a candidate for the row kernel's column sums, `_why_not_column_sums` decides)."""
    return rows[0] is not None and columns[0] is not None and tuple(rows[0]) == tuple(columns[0])


def _why_not_column_sums(p: Group, c: Group) -> str | None:
    """Why reduction group `c` may not join row kernel `p` as column sums, or None when it
    may: float sums or means, over the leading axes that `p`'s rows run along, of values of
    `p`'s input shape (a bias gradient after a softmax cross-entropy's gradient, a layer norm's
    scale gradient). The row kernel then accumulates them row by row in a
    row-sized scratch (per block of rows when it runs in parallel) and computes them and the
    math on them after its last row, where a column kernel read the summed values back. Not
    on a GPU (the CUDA backend's row kernels have no column sums)."""
    full, axes = p.space
    _, columns = c.space
    reductions = [n for n in c.members if _role(n) == "reduction"]
    if any(n.op not in ("sum", "mean") or not n.out.type.dtype.is_floating for n in reductions):
        return "only float sums and means fold into a row kernel as column sums"
    if any("GPU:" in (n.device or "") for n in p.members + c.members):
        return "the CUDA backend's row kernels have no column sums"
    if axes is None or columns is None:
        return f"reductions over different inputs/axes {p.space} and {c.space}"
    rank = len(full)
    kept = rank - len(set(a % rank for a in axes))
    if kept == 0 or tuple(sorted(a % rank for a in axes)) != tuple(range(kept, rank)):
        return f"the rows of a reduction over axes {axes} are not its trailing axes"
    if tuple(sorted(a % rank for a in columns)) != tuple(range(kept)):
        return f"a sum over axes {columns}, not the leading axes {tuple(range(kept))} the rows run along"
    if _elements(full[kept:]) in (None, 0, 1) or _elements(full[:kept]) in (None, 0):
        return f"rows of {full[kept:]} (a row kernel needs rows of more than one element)"
    return None


def _reads(g: Group, values: set[Value]) -> bool:
    return any(v in values for n in g.members for v in n.inputs)


def _why_not_column_readers(members: list[Node], space: tuple) -> str | None:
    """Why a row kernel of `members` (in program order) over `space` may not be, or None when
    it may: its column sums are ready only after the last row, so what reads them must be
    math at their shape that reads no other value of the kernel (the step of a bias from its
    gradient), computed after the last row; a value of the rows that reads one would need
    every row summed before the rows are run."""
    inside = {v for n in members for v in n.outputs}
    columns: set[Value] = set()
    for n in members:
        if _role(n) == "reduction" and _reduction_space(n) != space:
            columns.update(n.outputs)
            continue
        read = [v for v in n.inputs if v in columns]
        if not read:
            continue
        if any(v in inside and v not in columns for v in n.inputs):
            return "it reads column sums and values of the rows (the sums are ready only after the last row)"
        if _role(n) != "elementwise" or not all(_same_space(n.out.type.shape, v.type.shape) for v in read):
            return f"a {n.op} of shape {n.out.type.shape} reads column sums of shape {read[0].type.shape} " \
                   "(they are ready only after the last row)"
        columns.update(n.outputs)
    return None


# -- building the fused graph -------------------------------------------------------------------
def _kernel(group: Group, number: int, outside_users: set[Value]) -> tuple[Node, list[Value], list[Value]]:
    """The `fused` node for a group, its external inputs, and the member values it returns."""
    members = set(group.members)
    inputs: list[Value] = []
    for n in group.members:
        for v in n.inputs:
            if v.node not in members and v not in inputs:
                inputs.append(v)
    params = {v: Node("param", (), (("index", i),), (v.type,)).out for i, v in enumerate(inputs)}
    body: list[Node] = []
    mapping: dict[Value, Value] = dict(params)
    for n in group.members:
        new = n.evolve(inputs=tuple(mapping[v] for v in n.inputs), control_inputs=())
        body.append(new)
        for a, b in zip(n.outputs, new.outputs):
            mapping[a] = b
    results = [v for n in group.members for v in n.outputs if v in outside_users]
    anchor = group.anchor
    sub = Graph(f"fused_{number}", [params[v] for v in inputs], body, [mapping[v] for v in results])
    controls = tuple(dict.fromkeys(c for n in group.members for c in n.control_inputs if c not in members))
    node = Node("fused", tuple(inputs), (("body", sub), ("kind", group.kind)), tuple(v.type for v in results),
                device=anchor.device, loc=anchor.loc, name=f"fused/{anchor.name or anchor.op}",
                control_inputs=controls)
    return node, inputs, results


def fuse(graph: Graph) -> Graph:
    return _build(graph, [g for g in _Fuser(graph).run() if len(g.members) > 1])


def fuse_loops(graph: Graph) -> Graph:
    """Only the loop kernels of `graph` (a backend's fallback for a kernel body it cannot
    generate as a whole: the elementwise parts still become single loops)."""
    groups = [g for g in _Fuser(graph, loops_only=True).run() if len(g.members) > 1]
    return _build(graph, groups)


def explain_fusion(graph: Graph) -> list[str]:
    """Why each pair of neighbours was or was not fused."""
    fuser = _Fuser(graph)
    fuser.run()
    return fuser.decisions


def _build(graph: Graph, groups: list[Group]) -> Graph:
    group_of = {n: g for g in groups for n in g.members}
    needed_outside: set[Value] = set(graph.results)
    for n in graph.nodes:
        for v in n.inputs:
            if v.node in group_of and group_of.get(n) is not group_of[v.node]:
                needed_outside.add(v)
    units: list[tuple[Node, list[Value], list[Value]]] = []  # (new node, inputs, old values it defines)
    for i, g in enumerate(groups):
        units.append(_kernel(g, i, needed_outside))
    plain = [n for n in graph.nodes if n not in group_of]
    return _schedule(graph, plain, units, groups)


def _schedule(graph: Graph, plain: list[Node], kernels: list[tuple[Node, list[Value], list[Value]]],
              groups: list[Group]) -> Graph:
    """Order plain nodes and kernels topologically, keeping the original order where free and
    keeping every variable's reads and writes in their original order."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    units: list[tuple[Node, list[Node], list[Value]]] = [(n, [n], list(n.outputs)) for n in plain]
    units += [(k, g.members, results) for (k, _, results), g in zip(kernels, groups)]
    unit_of = {m: u for u in range(len(units)) for m in units[u][1]}
    deps: list[set[int]] = [set() for _ in units]
    for u, (_, members, _) in enumerate(units):
        for m in members:
            for v in m.inputs:
                if v.node in unit_of:  # parameters are defined before every unit
                    deps[u].add(unit_of[v.node])
            for c in m.control_inputs:
                deps[u].add(unit_of[c])
    for dep, write in effect_edges(graph):
        deps[unit_of[write]].add(unit_of[dep])
    for u in range(len(units)):
        deps[u].discard(u)
    order = _topological(units, deps, lambda u: min(index[m] for m in units[u][1]))
    mapping: dict[Value, Value] = {}
    node_map: dict[Node, Node] = {}
    body: list[Node] = []
    for u in order:
        new, members, defined = units[u]
        rebuilt = new.evolve(inputs=tuple(mapping.get(v, v) for v in new.inputs),
                             control_inputs=tuple(dict.fromkeys(node_map.get(c, c) for c in new.control_inputs)))
        body.append(rebuilt)
        for m in members:
            node_map[m] = rebuilt
        for old, fresh in zip(defined, rebuilt.outputs):
            mapping[old] = fresh
    return Graph(graph.name, list(graph.params), body, [mapping.get(r, r) for r in graph.results])


def effect_edges(graph: Graph) -> list[tuple[Node, Node]]:
    """(before, after) pairs that order a variable's accesses though no data edge joins them:
    a read placed after a write (`read_value()`) reads after it, and a write waits for every
    earlier access and every earlier user of an earlier read, so a backend may update the
    variable in place. A cond or while node accesses what its bodies access. (A user placed
    after the write in the program reads the old snapshot; an in-place backend must copy.)"""
    index = {n: i for i, n in enumerate(graph.nodes)}
    users: dict[Node, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v.node, []).append(n)
    edges: list[tuple[Node, Node]] = []
    before: dict[str, list[Node]] = {}  # var -> its accesses so far
    for n in graph.nodes:
        reads, writes = _variable_accesses(n)
        for var in reads | writes:
            for earlier in before.get(var, []):
                earlier_writes = _variable_accesses(earlier)[1]
                if var in writes:
                    readers = users.get(earlier, []) if earlier.op == "variable" else []
                    edges += [(dep, n) for dep in [earlier, *readers] if index[dep] < index[n]]
                elif var in earlier_writes:
                    edges.append((earlier, n))
            before.setdefault(var, []).append(n)
    return edges + _resource_edges(graph)


def _variable_accesses(node: Node) -> tuple[set[str], set[str]]:
    """The variables a node (and any sub-graph it holds) reads and writes."""
    if node.op == "variable":
        return {node.attr("var")}, set()
    if node.op in _WRITES:
        return set(), {node.attr("var")}
    reads: set[str] = set()
    writes: set[str] = set()
    for _, body in node.attrs:
        if isinstance(body, Graph):
            for inner in body.nodes:
                r, w = _variable_accesses(inner)
                reads |= r
                writes |= w
    return reads, writes


def _resource_edges(graph: Graph) -> list[tuple[Node, Node]]:
    """Host ops on one queue or iterator (their `resource` attribute) run in program order:
    an enqueue and a dequeue of one run must not swap because a kernel joined their neighbours."""
    last: dict[str, Node] = {}
    edges: list[tuple[Node, Node]] = []
    for n in graph.nodes:
        resource = n.attr("resource")
        if isinstance(resource, str):
            if resource in last:
                edges.append((last[resource], n))
            last[resource] = n
    return edges


def _topological(units: list, deps: list[set[int]], priority) -> list[int]:  # type: ignore[no-untyped-def]
    import heapq

    users: list[list[int]] = [[] for _ in units]
    missing = [len(d) for d in deps]
    for u, d in enumerate(deps):
        for p in d:
            users[p].append(u)
    ready = [(priority(u), u) for u in range(len(units)) if missing[u] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(u)
        for w in users[u]:
            missing[w] -= 1
            if missing[w] == 0:
                heapq.heappush(ready, (priority(w), w))
    if len(order) != len(units):
        raise RuntimeError("fusion produced a cyclic schedule (a bug in the cycle check)")
    return order
