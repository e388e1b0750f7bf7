"""Variables on the device: reads hand out the variable's device array, writes fill its
spare array (`runtime.DeviceVariable`) with a small copy/add/subtract kernel and make it
current, so a variable placed on the GPU never visits the host between runs. A variable
whose value is only on the host (initialised on the CPU, restored by a Saver) is uploaded
once, when a GPU node first reads or updates it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from numba import cuda

from tfjit.errors import InvalidArgumentError
from tfjit.ir.graph import Node
from tfjit.runtime.state import RuntimeState

from .runtime import Buffer, DeviceVariable, current_stream

THREADS = 256
MAX_BLOCKS = 1024


@cuda.jit
def _copy_kernel(out, x):  # type: ignore[no-untyped-def]
    i = cuda.grid(1)
    while i < out.size:
        out[i] = x[i]
        i += cuda.gridsize(1)


@cuda.jit
def _add_kernel(out, a, b):  # type: ignore[no-untyped-def]
    i = cuda.grid(1)
    while i < out.size:
        out[i] = a[i] + b[i]
        i += cuda.gridsize(1)


@cuda.jit
def _sub_kernel(out, a, b):  # type: ignore[no-untyped-def]
    i = cuda.grid(1)
    while i < out.size:
        out[i] = a[i] - b[i]
        i += cuda.gridsize(1)


def _launch(kernel: Any, out: Any, *args: Any) -> None:
    if out.size == 0:
        return
    threads = max(1, min(THREADS, out.size))
    blocks = min(MAX_BLOCKS, -(-out.size // threads))
    kernel[blocks, threads, current_stream()](out, *args)


def device_variable(state: RuntimeState, var: str) -> DeviceVariable:
    """The variable's device value, uploaded from the host the first time (an uninitialised
    variable fails as on the CPU)."""
    found = state.device_variables.get(var)
    if found is None:
        host = state.read(var)
        buffer = Buffer.on_host(host)
        buffer.to_device()
        found = DeviceVariable(buffer)
        state.device_variables[var] = found  # the host value stays valid until a device write
    return found


def _view(buffer: Buffer) -> Buffer:
    """The variable's value for a plan: its device array and its host copy if it has one (the
    state's, read-only), but a host copy made later is the plan's own: a fetched array the
    user may edit must not become the variable's cached host value."""
    return Buffer(buffer.shape, buffer.dtype, host=buffer.host, device=buffer.device)


def _read(node: Node, inputs: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> list[Buffer]:
    current = device_variable(state, node.attr("var")).current
    lent.add(id(current.device))
    return [_view(current)]


def _update(node: Node, state: RuntimeState, lent: set[int], kernel: Any, *args: Any) -> list[Buffer]:
    """Write `kernel(*args)` into the variable's spare array and make it current."""
    var = state.device_variables[node.attr("var")]
    out = var.target(lent)
    _launch(kernel, out, *args)
    new = var.replace(out)
    state.write_device(node.attr("var"), var)  # drops the host copy, now stale
    return [_view(new)]


def _assign(node: Node, inputs: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> list[Buffer]:
    name, value = node.attr("var"), inputs[0]
    found = state.device_variables.get(name)
    if found is not None and found.current.shape == value.shape:
        return _update(node, state, lent, _copy_kernel, value.device)
    if node.attr("validate_shape") is not False and state.is_initialized(name) and \
            state.read(name).shape != value.shape:
        raise InvalidArgumentError(node, node.op, f"Assign requires shapes of both tensors to match. "
                                                  f"{name} has shape {state.read(name).shape}, value has {value.shape}")
    fresh = Buffer(value.shape, value.dtype, device=cuda.device_array(value.size, value.dtype, stream=current_stream()))
    _launch(_copy_kernel, fresh.device, value.device)
    state.write_device(name, DeviceVariable(fresh))
    return [_view(fresh)]


def _assign_add(node: Node, inputs: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> list[Buffer]:
    current = device_variable(state, node.attr("var")).current
    return _update(node, state, lent, _add_kernel, current.device, inputs[0].device)


def _assign_sub(node: Node, inputs: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> list[Buffer]:
    current = device_variable(state, node.attr("var")).current
    return _update(node, state, lent, _sub_kernel, current.device, inputs[0].device)


def run_assigning(kernel: Any, args: Sequence[Buffer], state: RuntimeState, lent: set[int]) -> tuple[Buffer, ...]:
    """Run a kernel that assigns variables in place (`kernel.variables`: a fused update, or a
    GEMM whose epilogue updates weights) on the variables' device arrays.

    A variable's current array is updated in place unless this run has read it (a value some
    later node may still use): then its spare array gets a copy of the value, the kernel
    updates that, and it becomes current.
    """
    arrays, replaced = [], []
    for t in kernel.epilogue.targets:
        name, shape = t.attr("var"), tuple(t.out.type.shape)
        if t.op == "assign" and not state.is_initialized(name):
            raise NotImplementedError("a first assignment creates the variable")  # the host path does it
        var = device_variable(state, name)
        if var.current.shape != shape:
            raise NotImplementedError("an assignment that changes the variable's shape")  # the reference says so
        if id(var.current.device) not in lent:
            arrays.append(var.current.device)
            continue
        spare = var.target(lent)
        if t.op != "assign":
            _launch(_copy_kernel, spare, var.current.device)
        arrays.append(spare)
        replaced.append((name, var, spare))
    outs = kernel(*args, assign_to=tuple(arrays))
    for name, var, spare in replaced:
        var.replace(spare)
    for t in kernel.epilogue.targets:
        state.write_device(t.attr("var"), state.device_variables[t.attr("var")])  # drops stale host copies
    return outs


Handler = Callable[[Node, Sequence[Buffer], RuntimeState, set], list]  # (node, inputs, state, lent)
HANDLERS: dict[str, Handler] = {"variable": _read, "assign": _assign, "assign_add": _assign_add,
                                "assign_sub": _assign_sub}

