"""A compiled plan on the CUDA backend: the CPU backend's interface over a placed graph.

`compile_graph(graph).run(args, state)` takes and returns NumPy arrays. Each node runs where
placement put it. A GPU node runs on the device: a generated CUDA kernel (fused loops and
elementwise nodes, row reductions), a reshape that relabels its input's device array, or the
runtime's own handling of feeds, constants (uploaded once per plan), variables (kept on the
device between runs, updated there) and copies. A fused node whose kernel does not fit its
shapes runs its body's nodes in turn. A CPU node runs its NumPy reference on the host.

Feeds of GPU params go host→device, fetches device→host (queued on the plan's stream, one
synchronisation), and `device_copy` nodes cross where placement put them; any other crossing
(a GPU node the backend ends up running on the host) is implicit: counted apart, and an error
inside `tfjit.debug.no_implicit_transfers()`. Intermediates live in the plan's arena.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Sequence

import numpy as np
from numba import cuda

from tfjit.errors import FailedPreconditionError
from tfjit.ir.graph import Graph, Node
from tfjit.ops.registry import Fusion, get_op
from tfjit.runtime.state import RuntimeState

from ..reference import _call as run_reference
from ..reference import _last_uses
from . import axes_reduction, conv, device_lib, gather, loop, matmul, pool, reduction, state_ops, update
from .placement import ALIAS_OPS
from .runtime import Arena, Buffer, implicit_transfer, launching

DeviceKernel = (loop.CudaLoopKernel, reduction.CudaRowKernel, matmul.CudaMatmulKernel, update.CudaUpdateKernel,
                axes_reduction.CudaAxesReduction, gather.CudaGather, gather.CudaScatterAdd, gather.CudaOneHot,
                pool.CudaPool, conv.CudaConv)
HOST, DEVICE = "host", "device"


def on_gpu(node: Node) -> bool:
    return bool(node.device) and "/device:GPU:" in node.device


class CudaExecutable:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.kernels: list[tuple[Node, Any]] = [(n, _kernel_for(n) if on_gpu(n) else None) for n in graph.nodes]
        self._dead_after = _last_uses(graph)
        self._constants: dict[int, Buffer] = {}
        self._arena = Arena()
        self._stream: Any = None
        self._lock = threading.Lock()  # one run of a plan at a time: runs share the arena
        read_on_gpu = {v for n in graph.nodes if on_gpu(n) for v in n.inputs}
        self._upload = [on_gpu(p.node) and p in read_on_gpu for p in graph.params]
        self._gpu = any(on_gpu(n) for n in graph.nodes) or any(self._upload)

    def run(self, args: Sequence[np.ndarray], state: RuntimeState) -> list[np.ndarray]:
        if not self._gpu:  # a plan placed wholly on the CPU (no GPU, or nothing for it) needs no driver
            return [b.host for b in self.execute([Buffer.on_host(a) for a in args], state, lent=set())]
        with self._lock:
            if self._stream is None:
                self._stream = cuda.stream()
            with launching(self._arena, self._stream):
                feeds = [_feed(a, upload) for a, upload in zip(args, self._upload)]
                results = self.execute(feeds, state, lent=set())
                hosts = [b.to_host(sync=False) for b in results]
                self._stream.synchronize()
        return hosts

    def execute(self, args: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> list[Buffer]:
        """Run on buffers wherever they are; results stay where they were computed. `lent`:
        the device arrays of variables this run has read (a variable write must spare them)."""
        env = dict(zip(self.graph.params, args))
        for i, (node, kernel) in enumerate(self.kernels):
            outputs = self._run_node(i, node, kernel, [env[v] for v in node.inputs], state, lent)
            env.update(zip(node.outputs, outputs))
            for value in self._dead_after.get(i, ()):
                env.pop(value, None)
        return [env[v] for v in self.graph.results]

    def _run_node(self, i: int, node: Node, kernel: Any, inputs: list[Buffer], state: RuntimeState,
                  lent: set[int]) -> Sequence[Buffer]:
        if node.op == "device_copy":
            return [_copy(inputs[0], to_device=on_gpu(node))]
        if not on_gpu(node):
            _cross(node, inputs, HOST)
            return _on_host(node, inputs, state)
        if node.op == "constant":
            return [self._constant(i, node)]
        if node.op in state_ops.HANDLERS:
            _cross(node, inputs, DEVICE)
            return state_ops.HANDLERS[node.op](node, inputs, state, lent)
        if node.op in ALIAS_OPS:
            _cross(node, inputs[:1], DEVICE)
            return [_alias(inputs[0], node)]
        if isinstance(kernel, DeviceKernel):
            _cross(node, inputs, DEVICE)
            try:
                if getattr(kernel, "variables", ()):
                    return state_ops.run_assigning(kernel, inputs, state, lent)
                return kernel(*inputs)
            except NotImplementedError:  # these shapes do not fit the kernel: never try it again
                kernel = _body_executable(node) if node.op == "fused" else None
                self.kernels[i] = (node, kernel)
        if isinstance(kernel, CudaExecutable):
            return kernel.execute(inputs, state, lent)
        _cross(node, inputs, HOST)  # placed on the GPU, yet no device code for it: all crossings implicit
        outputs = _on_host(node, inputs, state)
        for b in outputs:
            implicit_transfer(f"the result of {_named(node)}", b.nbytes)
            b.to_device()
        return outputs

    def _constant(self, i: int, node: Node) -> Buffer:
        """A GPU constant: uploaded on the plan's first run, kept (host copy too) after."""
        found = self._constants.get(i)
        if found is None:
            found = self._constants[i] = Buffer.on_host(node.attr("value").array)
            found.to_device()
        return found


def _feed(array: np.ndarray, upload: bool) -> Buffer:
    """A fed value; uploaded when a GPU node reads it (a feed only CPU nodes read stays)."""
    buffer = Buffer.on_host(array)
    if upload:
        buffer.to_device()
    return buffer


def _on_host(node: Node, inputs: list[Buffer], state: RuntimeState) -> list[Buffer]:
    outputs = run_reference(node, get_op(node.op), [b.host for b in inputs], state)
    return [Buffer.on_host(o) for o in outputs]


def _copy(buffer: Buffer, to_device: bool) -> Buffer:
    """A `device_copy` placement inserted: the value on the other side too (once)."""
    if to_device:
        buffer.to_device()
    else:
        buffer.to_host()
    return buffer


def _cross(node: Node, inputs: list[Buffer], side: str) -> None:
    """Bring inputs to `side`. A crossing placement did not insert is implicit."""
    for k, b in enumerate(inputs):
        missing = b.device is None if side == DEVICE else b.host is None
        if not missing:
            continue
        implicit_transfer(f"input {k} of {_named(node)}", b.nbytes)
        if side == DEVICE:
            b.to_device()
        else:
            b.to_host()


def _named(node: Node) -> str:
    at = f" at {node.loc}" if node.loc else ""
    return f"`{node.op}` node {node.name}{at} on {node.device}"


def _alias(buffer: Buffer, node: Node) -> Buffer:
    """A reshape on the device: the same flat array under the result's shape."""
    return Buffer(tuple(node.types[0].shape), buffer.dtype, device=buffer.device)


def require_device() -> None:
    """A clear error where a plan has GPU nodes but neither a GPU nor the simulator is there."""
    if not (device_lib.SIMULATED or cuda.is_available()):
        raise FailedPreconditionError(message=(
            "the numba_cuda backend needs a CUDA GPU with a working driver (numba.cuda.is_available() "
            "is False here) or numba's CUDA simulator (set NUMBA_ENABLE_CUDASIM=1 before numba is "
            "imported); use tfjit.config.set_backend('numba') for the CPU"))


def compile_graph(graph: Graph) -> CudaExecutable:
    if any(on_gpu(n) for n in graph.nodes):
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
    """A CUDA kernel for GPU node `node`, a nested plan for a fused body without one, else None."""
    if node.op in ALIAS_OPS or node.op in state_ops.HANDLERS or node.op in ("constant", "param", "device_copy"):
        return None  # the executor runs these itself
    for build in _builders(node):
        generated = build(node)
        if generated is not None:
            return generated
    return _body_executable(node) if node.op == "fused" else None


def _builders(node: Node) -> list[Any]:
    """The kernel builders that may cover `node`, most specific first (each returns None when
    the node is not one it handles)."""
    opdef = get_op(node.op)
    kind = node.attr("kind") if node.op == "fused" else None
    if kind is not None:
        return {"loop": [loop.build], "reduction": [reduction.build, axes_reduction.build],
                "contraction": [matmul.build], "update": [update.build]}.get(kind, [])
    found = []
    if node.op in gather.KERNELS:
        found.append(gather.build)
    if node.op in pool.OPS:
        found.append(pool.build)
    if node.op in conv.OPS:
        found.append(conv.build)
    if node.op in ("matmul", "tensordot"):
        found.append(matmul.build)
    if node.op in reduction.REDUCERS and opdef.fusion is Fusion.REDUCTION:
        found += [reduction.build, axes_reduction.build]
    if not opdef.stateful and opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST, Fusion.LAYOUT):
        found.append(loop.build)
    return found


def _body_executable(node: Node) -> CudaExecutable:
    from tfjit.passes.fuse import fuse_loops

    body = node.attr("body")
    return CudaExecutable(body if node.attr("kind") == "loop" else fuse_loops(body))
