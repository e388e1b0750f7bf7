"""Optimizer updates as one in-place loop: every variable and slot of the update read, the new
values computed and written back, element by element, in one pass.

A fused `update` body (Adam's `m += (g - m) * (1 - beta1)`, `v += ...`, `var -= ...`) run node
by node costs a loop kernel per value into scratch and a NumPy pass per assignment. This kernel
loads each element of the inputs and of the variables it writes into locals, computes the new
values and stores them into the variables' own arrays. Each written array is one argument that
the loop both reads and writes: LLVM vectorises that loop behind runtime checks that the
written arrays do not overlap the read ones. Passing a variable's array twice (as an input
and as an output) makes those checks fail, and the loop then runs scalar (8x slower, measured
on Adam over 400k floats). The arrays are written in place under the store's rule
(RuntimeState.update_together): nothing else may hold them, else the kernel writes fresh ones.

Covered: bodies of params, scalar constants, variable reads, assignments (assign, assign_add,
assign_sub) of float32/float64 variables, and elementwise ops with an element form, all of static
shapes. The values of one element count (the update of every bias of one width) form one loop;
an op's operands have its element count or one (a scalar hyperparameter, broadcast), and
one-element values (scalar variables' updates too) are computed once before the loops. The rest
(another broadcast, an uninitialised or non-C-ordered variable, a read's value leaving the
kernel) runs the body node by node (`fallback`), as before.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.runtime.state import RuntimeState

from .buffers import POOL
from .codegen import INDEX_ONLY, ElementWriter, Lines, element_expression
from .compile import compile_kernel
from .loop import PARALLEL_MIN_ELEMENTS
from .scalar import SUPPORTED_DTYPES

_WRITES = {"assign": "{new}", "assign_add": "{old} + {new}", "assign_sub": "{old} - {new}"}


class UpdateKernel:
    """`kernel(*args, state=state)`: the body's assignments applied in one pass; returns the
    body's results (an assignment's: the variable's stored array)."""

    needs_state = True
    returns_tuple = True

    def __init__(self, body: Graph, name: str, sizes: list[int], fallback: Callable[[], Callable[..., Any]]):
        self.body, self.name = body, name
        self._fallback_factory = fallback
        self._fallback: Callable[..., Any] | None = None
        writes = [n for n in body.nodes if n.op in _WRITES]
        self.written = list(dict.fromkeys(n.attr("var") for n in writes))
        self._like = [(tuple(n.types[0].shape), n.types[0].dtype.np_dtype)
                      for n in {n.attr("var"): n for n in writes}.values()]
        self._keep = [_reads_old(body, var) for var in self.written]
        reads = [n for n in body.nodes if n.op == "variable" and n.attr("var") not in self.written]
        self._read_vars = [n.attr("var") for n in reads]
        self._inputs: list[Value] = list(body.params) + [n.out for n in reads]
        self._full = [v.type.num_elements in sizes and v.type.num_elements != 1 for v in self._inputs]
        self._returns = []  # per result: ("stored", variable index) | ("arg", param index) | ("out", out index)
        computed: list[Value] = []
        for r in body.results:
            if r.node.op in _WRITES:
                self._returns.append(("stored", self.written.index(r.node.attr("var"))))
            elif r.node.op == "param":
                self._returns.append(("arg", body.params.index(r)))
            else:
                self._returns.append(("out", len(computed)))
                computed.append(r)
        # What each call checks its arguments against and allocates, worked out once
        self._param_types = [(tuple(p.type.shape), p.type.dtype.np_dtype) for p in body.params]
        self._computed_types = [(tuple(v.type.shape), v.type.dtype.np_dtype) for v in computed]
        self.source = _source(body, self.written, self._inputs, self._full, computed, sizes)
        parallel = max(sizes) >= PARALLEL_MIN_ELEMENTS
        self._kernel = compile_kernel(self.source, "kernel", parallel=parallel, scalar=True)

    def __call__(self, *args: Any, state: RuntimeState) -> tuple[np.ndarray, ...]:
        arrays = [np.asarray(a) for a in args]
        if any(a.shape != shape or a.dtype != dtype for a, (shape, dtype) in zip(arrays, self._param_types)):
            return self._run_fallback(args, state)
        arrays += [state.read(var) for var in self._read_vars]
        inputs = [np.ascontiguousarray(a).reshape(-1) if full else a.reshape(())[()]
                  for a, full in zip(arrays, self._full)]
        outs = [POOL.empty(shape, dtype) for shape, dtype in self._computed_types]
        flat_outs = [o.reshape(-1) for o in outs]
        stored = state.update_together(self.written, self._like, self._keep,
                                       lambda targets: self._kernel(*inputs, *[t.reshape(-1) for t in targets],
                                                                    *flat_outs))
        if stored is None:
            return self._run_fallback(args, state)
        picked = {"stored": stored, "arg": args, "out": outs}
        return tuple(picked[where][i] for where, i in self._returns)

    def _run_fallback(self, args: tuple[Any, ...], state: RuntimeState) -> tuple[np.ndarray, ...]:
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback(*args, state=state)


def build(node: Node, fallback: Callable[[Graph], Callable[..., Any]]) -> UpdateKernel | None:
    """An in-place update kernel for a fused `update` node, or None when its body is not
    covered (see the module docstring); `fallback(body)` makes the node-by-node runner used
    for arguments or variables the kernel does not take."""
    body: Graph = node.attr("body")
    sizes = _loop_sizes(body)
    if sizes is None:
        return None
    return UpdateKernel(body, node.name or node.op, sizes, lambda: fallback(body))


def _loop_sizes(body: Graph) -> list[int] | None:
    """The element count of each loop (the written variables' sizes, in order of first
    write), when the kernel covers `body`."""
    writes = [n for n in body.nodes if n.op in _WRITES]
    if not writes or not all(v.type.is_fully_defined for n in body.all_nodes() for v in n.outputs):
        return None
    sizes = list(dict.fromkeys(n.types[0].num_elements for n in writes))
    last = {n.attr("var"): n.out for n in writes}
    for n in body.nodes:
        if n.op in _WRITES:
            if n.types[0].dtype.short not in ("f32", "f64") or n.inputs[0].type != n.types[0]:
                return None
        elif n.op == "variable":
            if n.out in body.results:
                return None
        elif n.op == "constant":
            if n.attr("value").array.size != 1:
                return None
        elif n.op not in INDEX_ONLY and element_expression(n, ["a"] * len(n.inputs)) is None:
            return None
        out = n.types[0].num_elements if n.types else 1
        if any(t.num_elements not in (*sizes, 1) for t in n.types) \
                or any(v.type.num_elements not in (out, 1) for v in n.inputs):
            return None
    inputs = list(body.params) + [n.out for n in body.nodes if n.op == "variable"]
    if any(v.type.num_elements not in (*sizes, 1) or v.type.dtype.short not in SUPPORTED_DTYPES for v in inputs):
        return None
    if any(r.node.op in _WRITES and last[r.node.attr("var")] != r for r in body.results):
        return None  # an earlier assignment's value leaving the kernel
    if any(r.node.op == "constant" for r in body.results):
        return None
    return sizes


def _reads_old(body: Graph, var: str) -> bool:
    """Whether the update of `var` reads its old value (an assign_add, or a read before the
    first assignment)."""
    for n in body.nodes:
        if n.op == "variable" and n.attr("var") == var:
            return True
        if n.op in _WRITES and n.attr("var") == var:
            return n.op != "assign"
    return False


def _source(body: Graph, written: list[str], inputs: list[Value], full: list[bool],
            computed: list[Value], sizes: list[int]) -> str:
    """`kernel(in0.., w0.., out0..)`: inputs flat (full) or NumPy scalars, the written
    variables' flat arrays, the computed results' flat arrays. One-element values first, in
    straight-line code, then one loop per size."""
    ins = [f"in{k}" for k in range(len(inputs))]
    outs = [f"out{k}" for k in range(len(computed))]
    lines = Lines()
    lines.add(f"def kernel({', '.join(ins + [f'w{j}' for j in range(len(written))] + outs)}):")
    lines.indent()
    scalars = ElementWriter(lines, _no_load, prefix="h")
    scalars.names.update({v: name for v, name, f in zip(inputs, ins, full) if not f})
    size_of = {}  # a written variable: its element count
    for n in body.nodes:
        if n.op in _WRITES:
            size_of.setdefault(n.attr("var"), n.types[0].num_elements)
    _segment(lines, scalars, body, written, [var for var in written if size_of[var] == 1], "0")
    for k, r in enumerate(computed):
        if r.type.num_elements == 1:
            lines.add(f"out{k}[0] = {scalars.value(r)}")
    for size in sizes:
        if size == 1:
            continue
        here = [var for var in written if size_of[var] == size]
        # The bound is an array's, not the size: the same update of differently sized variables
        # (every weight of a model) is one kernel and one compile.
        lines.add(f"for i in {'prange' if size >= PARALLEL_MIN_ELEMENTS else 'range'}"
                  f"(w{written.index(here[0])}.shape[0]):")
        lines.indent()
        writer = ElementWriter(lines, _no_load, prefix=f"l{sizes.index(size)}_")
        writer.names.update(scalars.names)
        for v, name, f in zip(inputs, ins, full):
            if f and v.type.num_elements == size:
                lines.add(f"a{name[2:]} = {name}[i]")
                writer.names[v] = f"a{name[2:]}"
        _segment(lines, writer, body, written, here, "i")
        for k, r in enumerate(computed):
            if r.type.num_elements == size:
                lines.add(f"out{k}[i] = {writer.value(r)}")
        for var in here:
            lines.add(f"w{written.index(var)}[i] = {writer.names[_last_write(body, var)]}")
        lines.dedent()
    return lines.source()


def _segment(lines: Lines, writer: ElementWriter, body: Graph, written: list[str], here: list[str],
             at: str) -> None:
    """The element `at` of the variables `here`: each read and assignment in body order, as
    locals of `writer` (a read is the variable's value at that point of the body); the
    one-element segment (`at` "0") stores its variables at once, a loop at its end."""
    current: dict[str, str] = {}  # a written variable: its element's value so far
    for n in body.nodes:
        var = n.attr("var") if n.op in ("variable", *_WRITES) else None
        if var not in here:
            continue
        j = written.index(var)
        if var not in current and n.op != "assign":
            lines.add(f"o{j} = w{j}[{at}]")
            current[var] = f"o{j}"
        if n.op == "variable":
            writer.names[n.out] = current[var]
            continue
        new = _WRITES[n.op].format(old=current.get(var), new=writer.value(n.inputs[0]))
        name = f"n{len(writer.names)}_{writer.prefix}"
        lines.add(f"{name} = {new}", n.loc.short if n.loc else None)
        writer.names[n.out] = current[var] = name
    if at == "0":
        for var in here:
            lines.add(f"w{written.index(var)}[0] = {current[var]}")


def _last_write(body: Graph, var: str) -> Value:
    return [n for n in body.nodes if n.op in _WRITES and n.attr("var") == var][-1].out


def _no_load(v: Value) -> str:
    raise AssertionError(f"every input of an update kernel is named before its loop: {v}")
