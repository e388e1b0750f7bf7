"""Device placement: every node gets a TF device string, and copies join devices.

A node keeps the device its `tf.device` scope asked for when that device exists and has a
kernel for the node; otherwise soft placement moves it to the CPU and an error names the node
and its line. A node with no scope goes to `default_device` when that device has a kernel for
it, else to the CPU. Every move to the CPU is noted with its reason (`fallbacks`, which
`log_device_placement` prints). Assignments go where their variable lives (colocation).
Where a value crosses devices a `device_copy` node is inserted, once per value and target
device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from tfjit.compat.device import CPU0
from tfjit.ir.graph import Graph, Node, Value

from .rewrite import Rewriter

_VARIABLE_OPS = {"variable", "assign", "assign_add", "assign_sub", "is_variable_initialized"}


class PlacementError(ValueError):
    pass


def cpu_has_every_kernel(device: str, node: Node) -> bool:
    """Kernel availability without a GPU backend: the CPU runs every node."""
    return "/device:CPU:" in device


@dataclass(frozen=True)
class Place:
    allow_soft_placement: bool = False
    devices: tuple[str, ...] = (CPU0,)
    has_kernel: Callable[[str, Node], bool] = cpu_has_every_kernel
    default_device: str = CPU0
    kernel_gap: Optional[Callable[[Node], Optional[str]]] = None  # says why a device lacks a kernel
    no_device_hint: str = ""  # appended to "no such device" (how to get one)
    fallbacks: list[str] = field(default_factory=list, compare=False)  # soft-placement notes

    def __call__(self, graph: Graph) -> Graph:
        rw = Rewriter(graph)
        var_device: dict[str, str] = {}
        copies: dict[tuple[Value, str], Value] = {}
        for i, p in enumerate(graph.params):  # feeds go where they are asked for
            device = self._device_for(p.node, var_device)
            if device != p.node.device:
                rw.replace_param(i, p.node.evolve(device=device))
        for node in graph.nodes:
            device = self._device_for(node, var_device)
            if node.op in _VARIABLE_OPS:
                var_device.setdefault(node.attr("var"), device)
            inputs = tuple(self._on_device(rw, rw.value(v), device, copies) for v in node.inputs)
            new = node.evolve(inputs=inputs, control_inputs=rw.controls(node), device=device) \
                if (inputs, device) != (node.inputs, node.device) or rw.controls(node) != node.control_inputs else node
            rw.emit(node, new)
        return rw.finish()

    def _device_for(self, node: Node, var_device: dict[str, str]) -> str:
        if node.op in _VARIABLE_OPS and node.attr("var") in var_device:
            return var_device[node.attr("var")]  # colocate with the variable
        requested = node.device or self.default_device
        if requested in self.devices and self.has_kernel(requested, node):
            return requested
        why = f"no such device{self.no_device_hint}" if requested not in self.devices else self._gap(node)
        if self.allow_soft_placement or node.device is None:
            self.fallbacks.append(f"{node.name}: {requested} -> {CPU0} ({why})")
            return CPU0
        at = f" (created at {node.loc})" if node.loc else ""
        available = ", ".join(self.devices)
        raise PlacementError(
            f"Cannot assign a device for operation {node.name}{at}: it was explicitly assigned to {requested} "
            f"but {why}; available devices are [ {available} ]. Use tf.ConfigProto(allow_soft_placement=True) "
            "to fall back to the CPU, or change the tf.device() scope.")

    def _gap(self, node: Node) -> str:
        gap = self.kernel_gap(node) if self.kernel_gap else None
        return gap or f"no kernel for `{node.op}` on that device"

    def _on_device(self, rw: Rewriter, v: Value, device: str, copies: dict[tuple[Value, str], Value]) -> Value:
        if v.node.device in (None, device):
            return v
        key = (v, device)
        if key not in copies:
            copy = Node("device_copy", (v,), (("device", device),), (v.type,), device=device,
                        loc=v.node.loc, name=f"{v.node.name}/copy_to_{device.rsplit('/', 1)[-1]}")
            rw.emit(None, copy)
            copies[key] = copy.out
        return copies[key]
