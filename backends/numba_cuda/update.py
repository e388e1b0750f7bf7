"""CUDA update kernels: an optimizer's update of variables as one in-place kernel.

A fused `update` body (assignments with the elementwise math computing the new values,
e.g. `var -= lr * g`, or Adam's moments and weights together) runs as one grid-stride loop
over the variables' elements that writes each variable's device array in place
(`epilogue.py` writes the element code). The kernel takes the variables' device arrays as
`assign_to`; `state_ops.run_assigning` supplies them from the session's device variables.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfjit.ir.graph import Graph, Node

from . import epilogue
from .compile import DeviceLines, compile_kernel
from .runtime import Buffer

THREADS = 256
MAX_BLOCKS = 1024


class CudaUpdateKernel:
    """Callable as `kernel(*buffers, assign_to=arrays) -> buffers` on the device."""

    def __init__(self, body: Graph, name: str):
        self.body = body
        self.name = name
        shapes = [tuple(v.type.shape) for v in body.results] + \
            [tuple(n.out.type.shape) for n in body.nodes if n.op in epilogue.WRITES]
        space = max(shapes, key=lambda s: (int(np.prod(s, dtype=np.int64)), len(s)))
        self.epilogue = epilogue.plan(body, space)
        self.source = self._source()
        self.kernel = compile_kernel(self.source, self.name)
        self.dtypes = self.epilogue.array_dtypes(body, self.epilogue.params)

    @property
    def variables(self) -> tuple[str, ...]:
        return self.epilogue.variables

    def __call__(self, *args: Buffer, assign_to: tuple[Any, ...] = ()) -> tuple[Buffer, ...]:
        if len(assign_to) != len(self.variables):
            raise NotImplementedError("the variables this kernel assigns were not given")
        outs = [Buffer.empty_on_device(tuple(r.type.shape), r.type.dtype.np_dtype) for r in self.body.results]
        size = self.epilogue.size
        threads = min(THREADS, size)
        blocks = min(MAX_BLOCKS, -(-size // threads))
        ins = [args[p].to_device() for p in self.epilogue.params]
        self.kernel[blocks, threads](*ins, *(o.device for o in outs), *assign_to)
        return tuple(outs)

    def _source(self) -> str:
        lines = DeviceLines()
        args = {p: f"in{k}" for k, p in enumerate(self.epilogue.params)}
        outs = [f"out{k}" for k in range(len(self.body.results))]
        variables = [f"var{k}" for k in range(len(self.epilogue.targets))]
        lines.add(f"def kernel({', '.join([*args.values(), *outs, *variables])}):", self.name)
        lines.indent()
        lines.add("i = cuda.grid(1)")
        lines.add(f"while i < {self.epilogue.size}:")
        lines.indent()
        self.epilogue.write(lines, args, {}, outs, variables)
        lines.add("i += cuda.gridsize(1)")
        return lines.source()


def build(node: Node) -> CudaUpdateKernel | None:
    """An update kernel for a fused `update` node, or None where its body does not fit one loop."""
    body = node.attr("body")
    if not all(v.type.is_fully_defined for n in body.nodes for v in n.outputs):
        return None
    try:
        return CudaUpdateKernel(body, node.name or "update")
    except NotImplementedError:
        return None
