"""Which nodes the CUDA backend can run on the GPU: what `passes.place` asks before putting
a node there (a node it cannot run goes to the CPU, with `kernel_gap`'s reason in the log).

The answer is per node, not per op, because a kernel class may cover an op only for some
attributes (the row kernels reduce trailing axes only). Each kernel class of the backend
contributes one predicate to `KERNEL_CLASSES`; a new kernel module adds its own.
"""
from __future__ import annotations

from typing import Any, Callable

from tfjit.compat.device import CPU0, canonical_device
from tfjit.ir.graph import Node
from tfjit.ops.registry import Fusion, get_op

from ..numba_cpu import scalar
from ..numba_cpu.codegen import INDEX_ONLY, supported
from ..numba_cpu.loop import single_node_body
from . import device_lib
from .reduction import REDUCERS

GPU0 = canonical_device("/gpu:0")
# Ops the executor runs on the device itself: feeds land there, constants are uploaded once
# per plan, variables live there, reshapes relabel a device array, copies are the boundary.
RUNTIME_OPS = {"param", "constant", "variable", "assign", "assign_add", "assign_sub", "device_copy"}
ALIAS_OPS = {"reshape", "expand_dims", "squeeze", "identity", "stop_gradient"}


def gpu_available() -> bool:
    """A GPU device exists: a CUDA GPU with a driver, or numba's CUDA simulator."""
    from numba import cuda

    return device_lib.SIMULATED or cuda.is_available()


def _known(node: Node) -> bool:
    return all(t.is_fully_defined for t in node.types) and \
        all(v.type.dtype.short in scalar.SUPPORTED_DTYPES for v in (*node.inputs, *node.outputs))


def _runtime_op(node: Node) -> bool:
    return node.op in RUNTIME_OPS and _known(node)


def _alias(node: Node) -> bool:
    return node.op in ALIAS_OPS and _known(node)


def _loop(node: Node) -> bool:
    opdef = get_op(node.op)
    elementwise = opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST) or node.op in INDEX_ONLY
    return elementwise and not opdef.stateful and _known(node) and supported(single_node_body(node))


def _row_reduction(node: Node) -> bool:
    if node.op not in REDUCERS or not _known(node):
        return False
    rank = len(node.inputs[0].type.shape)
    axes = node.attr("axes")
    axes = tuple(range(rank)) if axes is None else tuple(sorted(a % rank for a in axes))
    return axes == tuple(range(rank - len(axes), rank))


def _static(node: Node, dtypes: tuple[str, ...]) -> bool:
    return all(v.type.is_fully_defined for v in (*node.inputs, *node.outputs)) and \
        node.out.type.dtype.np_dtype.name in dtypes


def _axes_reduction(node: Node) -> bool:
    from .axes_reduction import DTYPES

    if node.op not in REDUCERS or not _static(node, DTYPES):
        return False
    return node.op != "mean" or node.out.type.dtype.is_floating  # TF's integer mean: the reference's


def _contraction(node: Node) -> bool:
    if node.op == "tensordot":  # only some axes pairs map onto one GEMM: ask the builder
        from .matmul import build

        return _static(node, ("float32", "float64")) and build(node) is not None
    return node.op == "matmul" and _static(node, ("float32", "float64"))


def _conv(node: Node) -> bool:
    from .conv import OPS

    return node.op in OPS and len(node.inputs) == 2 and _static(node, ("float32", "float64"))


def _pool(node: Node) -> bool:
    from .pool import OPS

    if node.op == "avg_pool_grad" and len(node.inputs) != 1:
        return False  # sizes known only at run time
    return node.op in OPS and _static(node, ("float32", "float64", "int32", "int64"))


def _index(node: Node) -> bool:
    from .gather import ATOMIC_DTYPES, KERNELS

    if node.op not in KERNELS or not all(v.type.is_fully_defined for v in (*node.inputs, *node.outputs)):
        return False
    if node.op == "one_hot":
        return len(node.inputs) == 3
    return node.op != "scatter_add" or node.out.type.dtype.np_dtype.name in ATOMIC_DTYPES


KERNEL_CLASSES: list[Callable[[Node], bool]] = [_runtime_op, _alias, _loop, _row_reduction, _axes_reduction,
                                               _contraction, _conv, _pool, _index]


def kernel_gap(node: Node) -> str | None:
    """Why the CUDA backend cannot run `node` on the GPU, or None when it can."""
    if any(covers(node) for covers in KERNEL_CLASSES):
        return None
    dtypes = ", ".join(dict.fromkeys(v.type.dtype.name for v in (*node.inputs, *node.outputs)))
    if not all(t.is_fully_defined for t in node.types):
        return f"no CUDA kernel for `{node.op}` with a shape known only at run time"
    return f"no CUDA kernel for `{node.op}` on {dtypes}"


def gpu_placement(allow_soft_placement: bool = False) -> Any:
    """The placement pass with the GPU as a device and the default for nodes without a scope."""
    from tfjit.passes.place import Place

    return Place(allow_soft_placement=allow_soft_placement, devices=(CPU0, GPU0), has_kernel=has_kernel,
                 default_device=GPU0, kernel_gap=kernel_gap)


def has_kernel(device: str, node: Node) -> bool:
    """`passes.place`'s question: can `device` run `node` on this backend?"""
    if "/device:CPU:" in device:
        return True
    return "/device:GPU:" in device and kernel_gap(node) is None
