"""A compiled plan on the CUDA backend: the CPU backend's interface, values kept on the device.

`compile_graph(graph).run(args, state)` takes and returns NumPy arrays. In between, each
node runs where it has code: a generated CUDA kernel (fused loops and elementwise nodes,
row reductions) reads its inputs on the device and leaves its results there; a fused node
without one runs its body's nodes in turn (their elementwise runs still become kernels);
every other node runs its NumPy reference on the host. A value crosses between host and
device only when a node on the other side reads it, at most once each way, and results are
copied back at the end; `transfer_stats()` counts the bytes.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from tfjit.errors import FailedPreconditionError
from tfjit.ir.graph import Graph, Node
from tfjit.ops.registry import Fusion, get_op
from tfjit.runtime.state import RuntimeState

from ..reference import _call as run_reference
from ..reference import _last_uses
from . import axes_reduction, conv, device_lib, gather, loop, matmul, pool, reduction, update
from .runtime import Buffer

DeviceKernel = (loop.CudaLoopKernel, reduction.CudaRowKernel, matmul.CudaMatmulKernel, update.CudaUpdateKernel,
                axes_reduction.CudaAxesReduction, gather.CudaGather, gather.CudaScatterAdd, gather.CudaOneHot,
                pool.CudaPool, conv.CudaConv)


class CudaExecutable:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.kernels: list[tuple[Node, Any]] = [(n, _kernel_for(n)) for n in graph.nodes]
        self._dead_after = _last_uses(graph)

    def run(self, args: Sequence[np.ndarray], state: RuntimeState) -> list[np.ndarray]:
        results = self.execute([Buffer.on_host(a) for a in args], state)
        return [b.to_host() for b in results]

    def execute(self, args: Sequence[Buffer], state: RuntimeState) -> list[Buffer]:
        """Run on buffers wherever they are; results stay where they were computed."""
        env = dict(zip(self.graph.params, args))
        for i, (node, kernel) in enumerate(self.kernels):
            outputs = self._run_node(i, node, kernel, [env[v] for v in node.inputs], state)
            env.update(zip(node.outputs, outputs))
            for value in self._dead_after.get(i, ()):
                env.pop(value, None)
        return [env[v] for v in self.graph.results]

    def _run_node(self, i: int, node: Node, kernel: Any, inputs: list[Buffer], state: RuntimeState) -> Sequence[Buffer]:
        if isinstance(kernel, DeviceKernel):
            try:
                if getattr(kernel, "variables", ()):
                    return update.run_assigning(kernel, inputs, state)
                return kernel(*inputs)
            except NotImplementedError:  # these shapes do not fit the kernel: never try it again
                kernel = _body_executable(node) if node.op == "fused" else None
                self.kernels[i] = (node, kernel)
        if isinstance(kernel, CudaExecutable):
            return kernel.execute(inputs, state)
        outputs = run_reference(node, get_op(node.op), [b.to_host() for b in inputs], state)
        return [Buffer.on_host(o) for o in outputs]


def require_device() -> None:
    """A clear error where neither a GPU nor numba's CUDA simulator is there to run kernels."""
    from numba import cuda

    if not (device_lib.SIMULATED or cuda.is_available()):
        raise FailedPreconditionError(message=(
            "the numba_cuda backend needs a CUDA GPU with a working driver (numba.cuda.is_available() "
            "is False here) or numba's CUDA simulator (set NUMBA_ENABLE_CUDASIM=1 before numba is "
            "imported); use tfjit.config.set_backend('numba') for the CPU"))


def compile_graph(graph: Graph) -> CudaExecutable:
    require_device()
    return CudaExecutable(graph)


def device_kernels(exe: CudaExecutable) -> Iterator[tuple[Node, Any]]:
    """Every generated kernel of a plan, with its node (fused bodies' kernels included)."""
    for node, kernel in exe.kernels:
        if isinstance(kernel, DeviceKernel):
            yield node, kernel
        elif isinstance(kernel, CudaExecutable):
            yield from device_kernels(kernel)


def kernel_sources(exe: CudaExecutable) -> str:
    """The source of every kernel generated so far (loop kernels: one per input shapes)."""
    parts = []
    for _, kernel in device_kernels(exe):
        if isinstance(kernel, loop.CudaLoopKernel):
            parts.extend(v.source for v in kernel.variants.values())
        else:
            parts.append(kernel.source)
    return "\n".join(parts)


def _kernel_for(node: Node) -> Any:
    """A CUDA kernel for `node`, a nested plan for a fused body without one, else None (host)."""
    opdef = get_op(node.op)
    kind = node.attr("kind") if node.op == "fused" else None
    generated = None
    if kind == "loop" or (node.op != "fused" and opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST)
                          and not opdef.stateful):
        generated = loop.build(node)
    elif kind == "reduction" or (node.op in reduction.REDUCERS and opdef.fusion is Fusion.REDUCTION):
        generated = reduction.build(node) or axes_reduction.build(node)
    elif kind == "contraction" or node.op in ("matmul", "tensordot"):
        generated = matmul.build(node)
    elif node.op in conv.OPS:
        generated = conv.build(node)
    elif kind == "update":
        generated = update.build(node)
    elif node.op in gather.KERNELS:
        generated = gather.build(node)
    elif node.op in pool.OPS:
        generated = pool.build(node)
    if generated is not None:
        return generated
    return _body_executable(node) if node.op == "fused" else None


def _body_executable(node: Node) -> CudaExecutable:
    from tfjit.passes.fuse import fuse_loops

    body = node.attr("body")
    return CudaExecutable(body if node.attr("kind") == "loop" else fuse_loops(body))
