"""Atomic counters for threads of one numba parallel region that hand work to each other
(recurrence.py: the blocks of an RNN step, claimed and counted done), and raw addresses as
pointers (its per-step arrays, passed as addresses)."""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _int64_array(array: types.Type) -> bool:
    return isinstance(array, types.Array) and array.dtype == types.int64 and array.layout == "C"


@intrinsic
def fetch_add(typingctx, counters, index, value):  # type: ignore[no-untyped-def]
    """`counters[index] += value` atomically (sequentially consistent); the old value."""
    if not _int64_array(counters):
        return None
    sig = types.int64(counters, types.intp, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", builder.gep(array.data, [args[1]]), args[2], "seq_cst")

    return sig, codegen


@intrinsic
def load_acquire(typingctx, counters, index):  # type: ignore[no-untyped-def]
    """`counters[index]`, read atomically: what was written before the add that made it is
    visible after."""
    if not _int64_array(counters):
        return None
    sig = types.int64(counters, types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(array.data, [args[1]]), "acquire", 8)

    return sig, codegen


@intrinsic
def spin_pause(typingctx):  # type: ignore[no-untyped-def]
    """The CPU's spin-wait hint (x86 `pause`; nothing elsewhere): a waiting thread leaves the
    core's resources to its sibling and saves power."""
    sig = types.void()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
            return context.get_dummy_value()
        pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                               "llvm.x86.sse2.pause")
        builder.call(pause, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def yield_cpu(typingctx):  # type: ignore[no-untyped-def]
    """`sched_yield()` (POSIX; nothing elsewhere): a thread waiting for another that the OS
    has descheduled gives it its core instead of spinning through the time slice."""
    sig = types.void()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if platform.system() in ("Linux", "Darwin"):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                      "sched_yield")
            builder.call(function, [])
        return context.get_dummy_value()

    return sig, codegen


SPINS = 2000  # pauses between yields while waiting (~40 us here)


@njit(cache=True, nogil=True)
def wait_for(counters, index, value):  # type: ignore[no-untyped-def]
    """Until `counters[index]` reaches `value`: spinning, and now and then yielding the core.
    On an idle machine the other threads arrive well within SPINS pauses; on a loaded one the
    thread being waited for may be descheduled, and a waiter that only spun would hold its
    core for the time slice (the LSTM step beside one busy process: 44 ms against 52)."""
    spins = 0
    while load_acquire(counters, index) < value:
        spins += 1
        if spins % SPINS == 0:
            yield_cpu()
        else:
            spin_pause()


@intrinsic
def void_pointer(typingctx, address):  # type: ignore[no-untyped-def]
    """An address (an array's `.ctypes.data`) as a `voidptr`, for `numba.carray(pointer, shape,
    dtype)`: per-step arrays passed as one array of addresses (a tuple of 30 arrays indexed by
    the step took LLVM minutes to compile: a switch per access, the loop copied per case)."""
    if not isinstance(address, types.Integer):
        return None
    sig = types.voidptr(types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen
