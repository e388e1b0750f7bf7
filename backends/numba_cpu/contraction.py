"""Contraction kernels: a matmul through BLAS followed by its elementwise epilogue.

BLAS computes the product into a recycled buffer (`blas.matmul_into`: transposed operands
are passed as transposed views, so nothing is copied; a batched matmul is one `np.matmul`
call), then one generated loop kernel applies the whole fused epilogue (bias, activation,
the optimizer's scaling) to it; an epilogue that ends in sums or means of its values (a
loss, a bias gradient) is one loop that also accumulates them (reducing_epilogue.py). The
product is not computed inside numba: typing `np.dot` costs numba 0.2-0.5 s per kernel (2 s
for the first), which made a cold MLP step 4x slower to compile, and blocking the product
inside one kernel measured no faster at these sizes.

A contraction body that also assigns variables is split: the matmul and the pure epilogue
become one such kernel computing the update into scratch, and the assignment applies it to
the variable in place (tfjit/runtime/state.py). Plain gradient descent's `W -= lr * x^T g`
does not get here: gemm_update.py runs it as one GEMM into the variable.

Covered: float32/float64 matmuls of static shape whose batch dims are equal or absent in
each operand. Other contractions (integer or half matmuls, broadcast batches, tensordot,
convolutions, empty or one-element outputs) run their body node by node, as before.
"""
from __future__ import annotations

import numpy as np

from tfjit.ir.graph import Graph, Node, Value
from tfjit.ops.registry import get_op

from .blas import matmul_into
from .buffers import POOL
from .codegen import supported
from .loop import PARALLEL_MIN_ELEMENTS, LoopKernel
from .reducing_epilogue import OPS as REDUCING_OPS
from .reducing_epilogue import ReducingEpilogue, after_reductions

BLAS_DTYPES = ("float32", "float64")


class ContractionKernel:
    """`kernel(*arrays) -> outputs` for a body of one matmul and its elementwise epilogue."""

    returns_tuple = True

    def __init__(self, body: Graph, name: str, matmul: Node):
        self.body = body
        self.name = name
        self.matmul = matmul
        self.out_shape = tuple(matmul.types[0].shape)
        self.dtype = matmul.types[0].dtype.np_dtype
        self.transpose = (bool(matmul.attr("transpose_a")), bool(matmul.attr("transpose_b")))
        epilogue, result_of = _epilogue_body(body, matmul)
        self.epilogue: LoopKernel | AddEpilogue | ReducingEpilogue | LoopThenReductions
        if any(n.op in REDUCING_OPS for n in epilogue.nodes):
            try:
                self.epilogue = ReducingEpilogue(epilogue, name, self.out_shape)
            except NotImplementedError:
                self.epilogue = LoopThenReductions(epilogue, name)
        else:
            lone_add = None if matmul.out in body.results else _lone_add(epilogue)
            self.epilogue = LoopKernel(epilogue, name) if lone_add is None else lone_add
        self._operands = [self.body.params.index(v) for v in matmul.inputs]
        # each body result: the product itself (-1) or the epilogue's result at that index
        self._picks = [-1 if r == matmul.out else epilogue.results.index(result_of[r]) for r in body.results]
        self.distinct_results = len(set(self._picks)) == len(self._picks)  # else `into` may not be given

    def __call__(self, *args: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        """The results, in recycled buffers or in `into`'s C-contiguous arrays (result index, array)."""
        a, b = (args[i] for i in self._operands)
        given = {self._picks[j]: out for j, out in into}  # -1: the product
        acc = product(a, b, self.transpose, self.out_shape, self.dtype, given.pop(-1, None))
        outs = self.epilogue(acc, *args, into=tuple(given.items()))
        return tuple(acc if k < 0 else outs[k] for k in self._picks)

    def source(self) -> str:
        """The epilogue kernel (the product itself is a BLAS call)."""
        return f"# {self.name}: acc = matmul(a, b) through BLAS, then:\n" + self.epilogue.source()


class LoopThenReductions:
    """An epilogue ending in sums or means that `ReducingEpilogue` does not take (an operand
    broadcast other than along rows or columns, a sum over middle axes): a loop kernel
    computes the elementwise results and what the reductions read, then NumPy runs the
    reductions and what is computed from them (the reference's ops), as when those were
    kernels of their own."""

    def __init__(self, body: Graph, name: str):
        reductions = [n for n in body.nodes if n.op in REDUCING_OPS]
        self.after = sorted(reductions + after_reductions(body, reductions), key=body.nodes.index)
        after = set(self.after)
        read = [v for n in self.after for v in n.inputs
                if v.node not in after and v.node.op not in ("param", "constant")]
        self.loop_results = list(dict.fromkeys([r for r in body.results if r.node not in after] + read))
        nodes = [n for n in body.nodes if n not in after]
        self.loop = LoopKernel(Graph(body.name, body.params, nodes, self.loop_results), name) \
            if self.loop_results else None
        self.params, self.results = body.params, body.results

    def __call__(self, acc: np.ndarray, *args: np.ndarray,
                 into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray, ...]:
        given = dict(into)
        values: dict[Value, np.ndarray] = dict(zip(self.params, (acc, *args)))
        if self.loop is not None:
            into_loop = tuple((self.loop_results.index(r), given[i]) for i, r in enumerate(self.results)
                              if i in given and r in self.loop_results)
            values.update(zip(self.loop_results, self.loop(acc, *args, into=into_loop)))
        with np.errstate(all="ignore"):
            for n in self.after:
                operands = [values[v] if v in values else np.asarray(v.node.attr("value").array) for v in n.inputs]
                out = get_op(n.op).reference(*operands, **n.attr_dict)
                values.update(zip(n.outputs, out if isinstance(out, tuple) else (out,)))
        return tuple(_copied(given[i], values[r]) if i in given and r not in self.loop_results
                     else np.asarray(values[r]) for i, r in enumerate(self.results))

    def source(self) -> str:
        loop = self.loop.source() if self.loop is not None else ""
        return loop + "".join(f"{n.op}(...)  # NumPy's, after the loop\n" for n in self.after)


def _copied(out: np.ndarray, value: np.ndarray) -> np.ndarray:
    np.copyto(out, value.reshape(out.shape))
    return out


class MatmulKernel:
    """A matmul without an epilogue: the product into a recycled buffer (`blas.matmul_into`)."""

    def __init__(self, node: Node):
        self.shape = tuple(node.types[0].shape)
        self.dtype = node.types[0].dtype.np_dtype
        self.transpose = (bool(node.attr("transpose_a")), bool(node.attr("transpose_b")))

    def __call__(self, a: np.ndarray, b: np.ndarray, into: tuple[tuple[int, np.ndarray], ...] = ()) -> np.ndarray:
        """The product, in a recycled buffer or in `into`'s C-contiguous array ((0, array))."""
        return product(a, b, self.transpose, self.shape, self.dtype, into[0][1] if into else None)


class AddEpilogue:
    """An epilogue that only adds one operand to the product (a dense layer's bias with nothing
    after it, such as the logits before a softmax): NumPy's add, in place, instead of a generated
    loop, whose compile costs 70-120 ms in a fresh process (measured on the MLP step's logits).
    Taken only where that loop would run serially: NumPy's broadcasting add does the same work
    and the same rounding."""

    def __init__(self, addend: int):
        self.addend = addend  # the operand's index among the epilogue's params (0: the product)

    def __call__(self, acc: np.ndarray, *args: np.ndarray,
                 into: tuple[tuple[int, np.ndarray], ...] = ()) -> tuple[np.ndarray]:
        out = dict(into).get(0, acc)
        with np.errstate(all="ignore"):  # inf - inf is NaN silently, as in TF
            np.add(acc, args[self.addend - 1], out=out)
        return (out,)

    def source(self) -> str:
        return f"out = acc + in{self.addend - 1}  # NumPy's add, in place\n"


def _lone_add(epilogue: Graph) -> AddEpilogue | None:
    """The `AddEpilogue` for an epilogue body that is one add of the product (param 0) and one
    other param at the product's type and a serial size, else None."""
    if len(epilogue.nodes) != 1 or epilogue.results != [epilogue.nodes[0].out]:
        return None
    (add,), product = epilogue.nodes, epilogue.params[0]
    if add.op != "add" or add.types[0] != product.type or product not in add.inputs:
        return None
    others = [v for v in add.inputs if v is not product]
    if len(others) != 1 or others[0] not in epilogue.params or others[0].type.dtype != product.type.dtype:
        return None
    if int(np.prod(product.type.shape)) >= PARALLEL_MIN_ELEMENTS:
        return None  # a generated loop runs this size in parallel
    return AddEpilogue(epilogue.params.index(others[0]))


def product(a: np.ndarray, b: np.ndarray, transpose: tuple[bool, bool], shape: tuple[int, ...],
            dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b (each transposed as asked, as a view) into `out`, or a recycled buffer."""
    if out is None:
        out = POOL.empty(shape, dtype)
    with np.errstate(all="ignore"):  # inf * 0 is NaN silently, as in TF
        return matmul_into(np.swapaxes(a, -1, -2) if transpose[0] else a,
                           np.swapaxes(b, -1, -2) if transpose[1] else b, out)


def build_matmul(node: Node) -> MatmulKernel | None:
    """A kernel for a lone float matmul of static shapes, or None (the reference runs it)."""
    return MatmulKernel(node) if node.op == "matmul" and covered(node) else None


def _epilogue_body(body: Graph, matmul: Node) -> tuple[Graph, dict[Value, Value]]:
    """The body's elementwise nodes as a loop body over (product, *body params), and which
    of its results each body result is."""
    product = Node("param", (), (("index", 0),), matmul.types).out
    params = [Node("param", (), (("index", i + 1),), (p.type,)).out for i, p in enumerate(body.params)]
    mapping: dict[Value, Value] = {matmul.out: product, **dict(zip(body.params, params))}
    nodes = []
    for node in body.nodes:
        if node is matmul:
            continue
        new = node.evolve(inputs=tuple(mapping[v] for v in node.inputs))
        nodes.append(new)
        mapping.update(zip(node.outputs, new.outputs))
    results = list(dict.fromkeys(mapping[r] for r in body.results if r != matmul.out))
    return Graph(body.name, [product, *params], nodes, results), mapping


def build(node: Node) -> ContractionKernel | None:
    """A contraction kernel for a fused `contraction` node without assignments, or None when
    the body is not one it covers."""
    body = node.attr("body")
    if any(n.op == "split" for n in body.nodes):  # a split's pieces and their math (sink_splits)
        from . import split_contraction

        return split_contraction.build(body, node.name or "contraction")
    matmuls = [n for n in body.nodes if n.op == "matmul"]
    if len(matmuls) != 1 or not covered(matmuls[0]):
        return None
    matmul = matmuls[0]
    # The epilogue's elementwise nodes, and the sums or means they may end in with what is
    # computed from those (reducing_epilogue.py)
    reductions = [n for n in body.nodes if n.op in REDUCING_OPS]
    after = set(after_reductions(body, reductions))
    rest = Graph(body.name, body.params, [n for n in body.nodes if n is not matmul and n not in reductions], [])
    if any(get_op(n.op).stateful for n in rest.nodes) or not supported(rest):
        return None
    size = int(np.prod(matmul.types[0].shape))
    if any(int(np.prod(t.shape)) not in (1, size) for n in rest.nodes if n not in after for t in n.types):
        return None  # an elementwise epilogue value at another shape
    if not any(r != matmul.out for r in body.results):
        return None  # no epilogue to fuse
    try:
        return ContractionKernel(body, node.name or "contraction", matmul)
    except NotImplementedError:
        return None


def covered(matmul: Node) -> bool:
    (out,) = matmul.types
    a, b = (v.type for v in matmul.inputs)
    if out.dtype.np_dtype.name not in BLAS_DTYPES or not all(t.is_fully_defined for t in (out, a, b)):
        return False
    size = int(np.prod(out.shape))
    if size <= 1 or 0 in a.shape or 0 in b.shape:
        return False  # one-element or empty products: the reference's semantics, not BLAS corner cases
    batch = tuple(out.shape[:-2])
    return all(len(t.shape) == 2 or tuple(t.shape[:-2]) == batch for t in (a, b)) and len(batch) <= 1


def split_assignments(body: Graph) -> Graph:
    """A contraction body that assigns variables, with its matmul and pure epilogue made into
    one inner `contraction` kernel (so the assignment applies a finished update in place);
    the body itself when that does not apply."""
    matmuls = [n for n in body.nodes if n.op == "matmul"]
    if len(matmuls) != 1 or not any(get_op(n.op).stateful for n in body.nodes) or not covered(matmuls[0]):
        return body
    matmul = matmuls[0]
    # The kernel writes one array: where more of its values would leave it (Adam's g and g^2,
    # RMSProp's g^2 and lr * g), each would be written and read back by the update, which
    # computes them from one array instead (the epilogue nodes whose values leave are dropped
    # until one value does).
    left_out: set[Node] = set()
    while True:
        head, head_nodes, used_outside = _epilogue(body, matmul, left_out)
        if len(used_outside) <= 1:
            break
        left_out.update(n for n in head[1:] if n.out in used_outside)
    if not used_outside:
        return body
    # The product's operands may be params or values the body computes before it (a variable
    # read moved into the kernel by sink_reads): the inner kernel takes them all as params.
    kernel_inputs = list(dict.fromkeys(v for n in head for v in n.inputs if v.node not in head_nodes))
    params = {v: Node("param", (), (("index", i),), (v.type,)).out for i, v in enumerate(kernel_inputs)}
    mapping: dict[Value, Value] = dict(params)
    inner_nodes = []
    for n in [n for n in body.nodes if n in head_nodes]:
        new = n.evolve(inputs=tuple(mapping[v] for v in n.inputs))
        inner_nodes.append(new)
        mapping.update(zip(n.outputs, new.outputs))
    used_outside.sort(key=lambda v: [n for n in body.nodes].index(v.node))
    inner = Graph(f"{body.name}_product", list(params.values()), inner_nodes, [mapping[v] for v in used_outside])
    outer_map: dict[Value, Value] = {}
    nodes = []
    for n in body.nodes:  # the inner kernel takes the matmul's place; its epilogue nodes leave
        if n is matmul:
            fused = Node("fused", tuple(outer_map.get(v, v) for v in kernel_inputs),
                         (("body", inner), ("kind", "contraction")), tuple(v.type for v in used_outside),
                         device=matmul.device, loc=matmul.loc, name=f"fused/{matmul.name or 'matmul'}")
            nodes.append(fused)
            outer_map.update(zip(used_outside, fused.outputs))
        elif n not in head:
            new = n.evolve(inputs=tuple(outer_map.get(v, v) for v in n.inputs))
            nodes.append(new)
            outer_map.update(zip(n.outputs, new.outputs))
    return Graph(body.name, list(body.params), nodes, [outer_map.get(r, r) for r in body.results])


def _epilogue(body: Graph, matmul: Node, left_out: set[Node]) -> tuple[list[Node], set[Node], list[Value]]:
    """The product and the pure elementwise nodes after it (but `left_out`) that one kernel
    can compute with it; those and their constants; and their values used outside them."""
    size = int(np.prod(matmul.types[0].shape))
    head: list[Node] = [matmul]
    inside = {matmul.out}
    for n in body.nodes:
        if n is matmul or n in left_out or get_op(n.op).stateful or len(n.types) != 1 \
                or int(np.prod(n.types[0].shape or (0,))) != size:
            continue
        if any(v in inside for v in n.inputs) and all(v in inside or v.node.op in ("param", "constant") for v in n.inputs):
            if supported(Graph("", [], [n], [])):
                head.append(n)
                inside.add(n.out)
    constants = [v.node for n in head for v in n.inputs if v.node.op == "constant"]
    head_nodes = set(head) | set(constants)
    used_outside = [v for v in inside if v in body.results or any(
        v in n.inputs for n in body.nodes if n not in head_nodes)]
    return head, head_nodes, used_outside
