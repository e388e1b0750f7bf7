"""Passes: golden "IR in -> one pass -> IR out" tests, and semantic tests showing that the
optimised program computes what the unoptimised one does, effects included."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfjit as tf
from tfjit.backends.reference import run_graph
from tfjit.debug import program_for
from tfjit.ir import parse_graph, print_graph
from tfjit.ir.verifier import verify
from tfjit.passes.cse import cse
from tfjit.passes.dce import dce
from tfjit.passes.fold_constants import MAX_FOLDED_ELEMENTS, fold_constants
from tfjit.passes.fuse import explain_fusion, fuse
from tfjit.passes.manager import PassError, PassManager
from tfjit.passes.place import Place, PlacementError
from tfjit.passes.plan_memory import plan, plan_memory
from tfjit.passes.simplify import simplify
from tfjit.runtime.state import RuntimeState


def ir(text: str) -> str:
    return textwrap.dedent(text).strip()


def check_golden(pass_fn, before: str, after: str) -> None:
    out = pass_fn(parse_graph(ir(before)))
    verify(out)
    assert print_graph(out) == ir(after)


# -- golden tests ----------------------------------------------------------------------------------
def test_fold_constants_uses_reference_and_keeps_names_and_lines():
    check_golden(lambda g: dce(fold_constants(g)), """
        func @f(%0: f32[4]) -> (f32[4]) {
          %1: f32[] = constant[value=dense<f32[]>(2.0)]() {name="a"}  # m.py:1
          %2: f32[] = constant[value=dense<f32[]>(3.0)]() {name="b"}  # m.py:2
          %3: f32[] = multiply(%1, %2) {name="c"}  # m.py:3
          %4: f32[] = sqrt(%3) {name="d"}  # m.py:4
          %5: f32[4] = add(%0, %4) {name="e"}  # m.py:5
          %6: i32[1] = shape(%0) {name="s"}  # m.py:6
          return %5
        }""", """
        func @f(%0: f32[4]) -> (f32[4]) {
          %1: f32[] = constant[value=dense<f32[]>(2.4494898)]() {name="d"}  # m.py:4
          %2: f32[4] = add(%0, %1) {name="e"}  # m.py:5
          return %2
        }""")


def test_fold_constants_folds_static_shapes_but_not_effects_or_huge_results():
    g = parse_graph(ir(f"""
        func @f(%0: f32[2,3]) -> (i32[2], f32[{MAX_FOLDED_ELEMENTS + 1}], f32[3]) {{
          %1: i32[2] = shape(%0)
          %2: f32[] = constant[value=dense<f32[]>(1.0)]()
          %3: f32[{MAX_FOLDED_ELEMENTS + 1}] = fill[shape=[{MAX_FOLDED_ELEMENTS + 1}]](%2)
          %4: f32[3] = random_uniform[dtype=f32, maxval=1.0, minval=0.0, seed=1, seed2=2, shape=[3]]()
          return %1, %3, %4
        }}"""))
    out = fold_constants(g)
    ops = [n.op for n in out.nodes]
    assert ops.count("constant") == 2 and "fill" in ops and "random_uniform" in ops
    np.testing.assert_array_equal(out.results[0].node.attr("value").array, [2, 3])


def test_cse_merges_pure_duplicates_but_never_random_draws():
    check_golden(cse, """
        func @f(%0: f32[4]) -> (f32[4], f32[4], f32[4], f32[4]) {
          %1: f32[4] = exp(%0)
          %2: f32[4] = exp(%0)
          %3: f32[4] = add(%1, %2)
          %4: f32[4] = add(%2, %1)
          %5: f32[4] = random_normal[dtype=f32, mean=0.0, seed=1, seed2=2, shape=[4], stddev=1.0]()
          %6: f32[4] = random_normal[dtype=f32, mean=0.0, seed=1, seed2=2, shape=[4], stddev=1.0]()
          return %3, %4, %5, %6
        }""", """
        func @f(%0: f32[4]) -> (f32[4], f32[4], f32[4], f32[4]) {
          %1: f32[4] = exp(%0)
          %2: f32[4] = add(%1, %1)
          %3: f32[4] = random_normal[dtype=f32, mean=0.0, seed=1, seed2=2, shape=[4], stddev=1.0]()
          %4: f32[4] = random_normal[dtype=f32, mean=0.0, seed=1, seed2=2, shape=[4], stddev=1.0]()
          return %2, %2, %3, %4
        }""")


def test_dce_keeps_state_writes_and_their_inputs():
    check_golden(dce, """
        func @f(%0: f32[2]) -> (f32[2]) {
          %1: f32[2] = exp(%0)
          %2: f32[2] = neg(%0)
          %3: f32[2] = assign[dtype=f32, shape=[2], var="v"](%2)
          %4: f32[2] = sqrt(%0)
          return %1
        }""", """
        func @f(%0: f32[2]) -> (f32[2]) {
          %1: f32[2] = exp(%0)
          %2: f32[2] = neg(%0)
          %3: f32[2] = assign[dtype=f32, shape=[2], var="v"](%2)
          return %1
        }""")


def test_simplify_drops_exact_no_ops_only():
    check_golden(lambda g: dce(simplify(g)), """
        func @f(%0: f32[3], %1: f32[2,3]) -> (f32[3], f32[2,3], f32[3], f32[3], f32[3]) {
          %2: f32[] = constant[value=dense<f32[]>(1.0)]()
          %3: f32[] = constant[value=dense<f32[]>(0.0)]()
          %4: f32[3] = multiply(%0, %2)
          %5: f32[3] = add(%3, %4)
          %6: f32[3] = neg(%5)
          %7: f32[3] = neg(%6)
          %8: f32[3] = identity(%7)
          %9: f32[3] = cast[dtype=f32](%8)
          %10: f32[1,3] = constant[value=dense<f32[1,3]>(1.0, 1.0, 1.0)]()
          %11: f32[2,3] = multiply(%1, %10)
          %12: f32[] = constant[value=dense<f32[]>(2.0)]()
          %13: f32[3] = pow(%0, %12)
          %14: f32[] = constant[value=dense<f32[]>(0.5)]()
          %15: f32[3] = pow(%0, %14)
          %16: f32[3] = divide(%2, %0)
          return %9, %11, %13, %15, %16
        }""", """
        func @f(%0: f32[3], %1: f32[2,3]) -> (f32[3], f32[2,3], f32[3], f32[3], f32[3]) {
          %2: f32[] = constant[value=dense<f32[]>(1.0)]()
          %3: f32[3] = square(%0)
          %4: f32[] = constant[value=dense<f32[]>(0.5)]()
          %5: f32[3] = pow(%0, %4)
          %6: f32[3] = divide(%2, %0)
          return %0, %1, %3, %5, %6
        }""")


def test_simplify_spells_a_scalar_losss_gradient_seed_as_a_folded_splat():
    """ones_like(loss) spread by unreduce and scaled: one constant broadcast, no longer reading
    the loss (an unreduce of a non-scalar, or to an unknown shape, stays)."""
    check_golden(lambda g: dce(simplify(g)), """
        func @f(%0: f32[4,3], %1: f32[?,3]) -> (f32[4,3], f32[4,3], f32[?,3]) {
          %2: f32[4] = sum[axes=[1], keepdims=false](%0)
          %3: f32[] = mean[axes=none, keepdims=false](%2)
          %4: f32[] = ones_like[dtype=none](%3)
          %5: f32[4] = unreduce[axes=none, keepdims=false](%4, %2)
          %6: f32[] = constant[value=dense<f32[]>(4.0)]()
          %7: f32[4] = divide(%5, %6)
          %8: f32[4,3] = unreduce[axes=[1], keepdims=false](%7, %0)
          %9: f32[4,3] = unreduce[axes=[1], keepdims=false](%2, %0)
          %10: f32[?,3] = unreduce[axes=none, keepdims=false](%4, %1)
          return %8, %9, %10
        }""", """
        func @f(%0: f32[4,3], %1: f32[?,3]) -> (f32[4,3], f32[4,3], f32[?,3]) {
          %2: f32[4] = sum[axes=[1], keepdims=false](%0)
          %3: f32[] = constant[value=dense<f32[]>(1.0)]()
          %4: f32[] = constant[value=dense<f32[]>(0.25)]()
          %5: f32[4,3] = broadcast_to[shape=[4, 3]](%4)
          %6: f32[4,3] = unreduce[axes=[1], keepdims=false](%2, %0)
          %7: f32[?,3] = unreduce[axes=none, keepdims=false](%3, %1)
          return %5, %6, %7
        }""")


def test_simplify_reads_a_splat_operand_as_its_scalar():
    """x * broadcast_to(s) at x's own type -> x * s; a splat that sets the result's shape stays."""
    check_golden(lambda g: dce(simplify(g)), """
        func @f(%0: f32[4,3], %1: f32[], %2: f32[3]) -> (f32[4,3], f32[4,3]) {
          %3: f32[4,3] = broadcast_to[shape=[4, 3]](%1)
          %4: f32[4,3] = multiply(%3, %0)
          %5: f32[4,3] = subtract(%3, %2)
          return %4, %5
        }""", """
        func @f(%0: f32[4,3], %1: f32[], %2: f32[3]) -> (f32[4,3], f32[4,3]) {
          %3: f32[4,3] = broadcast_to[shape=[4, 3]](%1)
          %4: f32[4,3] = multiply(%1, %0)
          %5: f32[4,3] = subtract(%3, %2)
          return %4, %5
        }""")


def test_simplify_keeps_a_multiply_by_one_that_broadcasts():
    g = parse_graph(ir("""
        func @f(%0: f32[3]) -> (f32[2,3]) {
          %1: f32[2,3] = constant[value=dense<f32[2,3]>(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)]()
          %2: f32[2,3] = multiply(%0, %1)
          return %2
        }"""))
    assert [n.op for n in simplify(g).nodes] == ["constant", "multiply"]


SOFTMAX = """
    func @softmax(%0: f32[8,16]) -> (f32[8,16]) {
      %1: f32[8,1] = max[axes=[1], keepdims=true](%0) {name="Max"}  # m.py:1
      %2: f32[8,16] = subtract(%0, %1) {name="Sub"}  # m.py:2
      %3: f32[8,16] = exp(%2) {name="Exp"}  # m.py:2
      %4: f32[8,1] = sum[axes=[1], keepdims=true](%3) {name="Sum"}  # m.py:3
      %5: f32[8,16] = divide(%3, %4) {name="Div"}  # m.py:3
      return %5
    }"""


def test_fuse_turns_a_softmax_into_one_reduction_kernel():
    check_golden(fuse, SOFTMAX, """
        func @softmax(%0: f32[8,16]) -> (f32[8,16]) {
          %1: f32[8,16] = fused[kind="reduction"](%0) {name="fused/Max"}  # m.py:1
            body func @fused_0(%0: f32[8,16]) -> (f32[8,16]) {
              %1: f32[8,1] = max[axes=[1], keepdims=true](%0) {name="Max"}  # m.py:1
              %2: f32[8,16] = subtract(%0, %1) {name="Sub"}  # m.py:2
              %3: f32[8,16] = exp(%2) {name="Exp"}  # m.py:2
              %4: f32[8,1] = sum[axes=[1], keepdims=true](%3) {name="Sum"}  # m.py:3
              %5: f32[8,16] = divide(%3, %4) {name="Div"}  # m.py:3
              return %5
            }
          return %1
        }""")
    assert explain_fusion(parse_graph(ir(SOFTMAX)))[0] == "fused: Max -> Sub into one reduction kernel"


def test_fuse_gives_matmul_its_epilogue_and_shares_values_instead_of_duplicating():
    check_golden(fuse, """
        func @f(%0: f32[4,3], %1: f32[3,2], %2: f32[2]) -> (f32[4,2], f32[4,2]) {
          %3: f32[4,2] = matmul[transpose_a=false, transpose_b=false](%0, %1) {name="MatMul"}
          %4: f32[4,2] = add(%3, %2) {name="Add"}
          %5: f32[4,2] = relu(%4) {name="Relu"}
          %6: f32[4,2] = exp(%4) {name="Exp"}
          return %5, %6
        }""", """
        func @f(%0: f32[4,3], %1: f32[3,2], %2: f32[2]) -> (f32[4,2], f32[4,2]) {
          %3: f32[4,2], %4: f32[4,2] = fused[kind="contraction"](%0, %1, %2) {name="fused/MatMul"}
            body func @fused_0(%0: f32[4,3], %1: f32[3,2], %2: f32[2]) -> (f32[4,2], f32[4,2]) {
              %3: f32[4,2] = matmul[transpose_a=false, transpose_b=false](%0, %1) {name="MatMul"}
              %4: f32[4,2] = add(%3, %2) {name="Add"}
              %5: f32[4,2] = relu(%4) {name="Relu"}
              %6: f32[4,2] = exp(%4) {name="Exp"}
              return %5, %6
            }
          return %3, %4
        }""")


REDUCED_EPILOGUE = """
    func @f(%0: f32[4,3], %1: f32[3,2], %2: f32[2], %3: f32[4,2]) -> (f32[], f32[2], f32[4], f32[4,2], f32[4,2]) {
      %4: f32[4,2] = matmul[transpose_a=false, transpose_b=false](%0, %1) {name="MatMul"DEVICE}
      %5: f32[4,2] = add(%4, %2) {name="Add"DEVICE}
      %6: f32[4,2] = sigmoid(%5) {name="Sig"DEVICE}
      %7: f32[4,2] = subtract(%6, %3) {name="Sub"DEVICE}
      %8: f32[4,2] = square(%7) {name="Sq"DEVICE}
      %9: f32[] = mean[axes=none, keepdims=false](%8) {name="Loss"DEVICE}
      %10: f32[2] = sum[axes=[0], keepdims=false](%7) {name="BiasGrad"DEVICE}
      %11: f32[4] = max[axes=[1], keepdims=false](%6) {name="Max"DEVICE}
      %12: f32[4,1] = sum[axes=[1], keepdims=true](%6) {name="RowSum"DEVICE}
      %13: f32[4,2] = divide(%6, %12) {name="Norm"DEVICE}
      return %9, %10, %11, %13, %7
    }"""


@pytest.mark.parametrize("device", ["CPU", "GPU"])
def test_fuse_ends_a_matmul_epilogue_in_its_sums_and_means_on_the_cpu(device):
    """The loss mean and the bias gradient's column sum join the product's kernel; a max does
    not, nor does a sum whose result the next pass reads at the product's shape (a softmax's
    or a layer norm's: their reduction kernels run it); the CUDA backend's epilogues do not reduce."""
    text = REDUCED_EPILOGUE.replace("DEVICE", f', device="/job:localhost/replica:0/task:0/device:{device}:0"')
    g = parse_graph(ir(text))
    fused = fuse(g)
    (kernel,) = [n for n in fused.nodes if n.op == "fused" and n.attr("kind") == "contraction"]
    inside = {n.name for n in kernel.attr("body").nodes}
    assert {"Sub", "Sq"} <= inside and not {"Max", "RowSum", "Norm"} & inside
    assert {"Loss", "BiasGrad"} & inside == ({"Loss", "BiasGrad"} if device == "CPU" else set())
    reasons = explain_fusion(g)
    assert any("Sub -> BiasGrad" in r and r.startswith("fused" if device == "CPU" else "not fused") for r in reasons)
    why_not_row_sum = "next pass" if device == "CPU" else "CUDA"
    assert any("Sig -> RowSum" in r and why_not_row_sum in r for r in reasons)


def test_fuse_takes_a_step_from_an_epilogue_sum_but_not_its_assignment_or_a_full_value_from_a_sum():
    """b - lr * sum(dz, axis=0) and the scaled loss are computed after the product's kernel
    reduces; the assignment, and a value at the product's shape reading the scaled loss (a next
    pass over the product), stay out."""
    g = parse_graph(ir("""
        func @f(%0: f32[4,3], %1: f32[3,2], %2: f32[2], %3: f32[]) -> (f32[2], f32[4,2], f32[2]) {
          %4: f32[4,2] = matmul[transpose_a=false, transpose_b=false](%0, %1) {name="MatMul"}
          %5: f32[4,2] = sigmoid(%4) {name="Sig"}
          %6: f32[2] = sum[axes=[0], keepdims=false](%5) {name="BiasGrad"}
          %7: f32[2] = multiply(%3, %6) {name="Scaled"}
          %8: f32[2] = subtract(%2, %7) {name="Step"}
          %9: f32[] = mean[axes=none, keepdims=false](%5) {name="Loss"}
          %13: f32[] = multiply(%9, %3) {name="ScaledLoss"}
          %10: f32[4,2] = multiply(%5, %13) {name="Rescaled"}
          %11: f32[2] = variable[dtype=f32, shape=[2], var="b"]() {name="b"}
          %12: f32[2] = assign_sub[dtype=f32, shape=[2], var="b"](%7) {name="Update"}
          return %8, %10, %12
        }"""))
    (kernel,) = [n for n in fuse(g).nodes if n.op == "fused" and n.attr("kind") == "contraction"]
    assert {n.name for n in kernel.attr("body").nodes} == {"MatMul", "Sig", "BiasGrad", "Scaled", "Step", "Loss",
                                                           "ScaledLoss"}
    reasons = explain_fusion(g)
    assert any("Scaled -> Update" in r and "assigns no variable" in r for r in reasons)
    assert any("Sig -> Rescaled" in r and "reads a reduced value" in r for r in reasons)


def test_fuse_keeps_a_scaled_product_and_its_assignment_in_one_kernel():
    """A scalar computed in the epilogue is no reduced value: `W -= (lr * 0.5) * (x^T g)` stays
    one contraction with its assignment (one GEMM into the variable)."""
    g = parse_graph(ir("""
        func @f(%0: f32[3,4], %1: f32[3,2], %2: f32[]) -> () {
          %3: f32[4,2] = matmul[transpose_a=true, transpose_b=false](%0, %1) {name="MatMul"}
          %4: f32[] = constant[value=dense<f32[]>(0.5)]() {name="Half"}
          %5: f32[] = multiply(%2, %4) {name="Lr"}
          %6: f32[4,2] = multiply(%5, %3) {name="Scaled"}
          %7: f32[4,2] = variable[dtype=f32, shape=[4, 2], var="W"]() {name="W"}
          %8: f32[4,2] = assign_sub[dtype=f32, shape=[4, 2], var="W"](%6) {name="Update"}
          return
        }"""))
    (kernel,) = [n for n in fuse(g).nodes if n.op == "fused"]
    assert kernel.attr("kind") == "contraction"
    assert {n.name for n in kernel.attr("body").nodes} >= {"MatMul", "Lr", "Scaled", "Update"}


def test_fuse_does_not_recompute_a_small_producer_inside_a_big_loop():
    g = parse_graph(ir("""
        func @f(%0: f32[64,32], %1: f32[32]) -> (f32[64,32]) {
          %2: f32[32] = exp(%1) {name="Exp"}
          %3: f32[64,32] = multiply(%0, %2) {name="Mul"}
          return %3
        }"""))
    assert [n.op for n in fuse(g).nodes] == ["exp", "multiply"]
    assert "different iteration spaces" in explain_fusion(g)[0]


def test_fuse_never_forms_a_cycle_between_kernels():
    # exp(x) feeds both a reduction and (through an unfusable layout op) another loop.
    g = parse_graph(ir("""
        func @f(%0: f32[4,4]) -> (f32[4,4]) {
          %1: f32[4,4] = exp(%0) {name="a"}
          %2: f32[4,4] = transpose[perm=[1, 0]](%1) {name="t"}
          %3: f32[4,4] = neg(%1) {name="b"}
          %4: f32[4,4] = add(%3, %2) {name="c"}
          return %4
        }"""))
    out = fuse(g)
    verify(out)
    assert any("cycle" in d for d in explain_fusion(g))
    np.testing.assert_allclose(run_graph(out, [np.eye(4, dtype=np.float32)])[0],
                               run_graph(g, [np.eye(4, dtype=np.float32)])[0])


def test_placement_assigns_devices_colocates_and_reports_conflicts():
    gpu = "/job:localhost/replica:0/task:0/device:GPU:0"
    x = tf.placeholder(tf.float32, [2], name="x")
    v = tf.Variable(tf.zeros([2]), name="v")
    with tf.device("/gpu:0"):
        y = tf.exp(x, name="on_gpu")  # line the error must name
    line = test_placement_assigns_devices_colocates_and_reports_conflicts.__code__.co_firstlineno + 5
    upd = v.assign_add(y)
    g = program_for([y, upd], {x: np.ones(2)})
    assert [n.device for n in g.nodes if n.name == "on_gpu"] == [gpu]
    with pytest.raises(PlacementError, match=rf"operation on_gpu \(created at .*test_passes.py:{line}\).*GPU:0"):
        Place()(g)
    soft = Place(allow_soft_placement=True)
    placed = soft(g)
    assert all(n.device.endswith("CPU:0") for n in placed.nodes)
    assert soft.fallbacks == ["on_gpu: " + gpu + " -> /job:localhost/replica:0/task:0/device:CPU:0 (no such device)"]


def test_placement_inserts_one_copy_per_value_and_device():
    cpu, gpu = "/job:localhost/replica:0/task:0/device:CPU:0", "/job:localhost/replica:0/task:0/device:GPU:0"
    g = parse_graph(ir("""
        func @f(%0: f32[2] {device="CPU:0"}) -> (f32[2], f32[2]) {
          %1: f32[2] = exp(%0) {name="e", device="CPU:0"}
          %2: f32[2] = neg(%1) {name="n", device="GPU:0"}
          %3: f32[2] = abs(%1) {name="a", device="GPU:0"}
          return %2, %3
        }"""))
    out = Place(devices=(cpu, gpu), has_kernel=lambda d, op: True)(g)
    copies = [n for n in out.nodes if n.op == "device_copy"]
    assert len(copies) == 1 and copies[0].device == gpu and copies[0].attr("device") == gpu
    assert all(v.node is copies[0] for n in out.nodes if n.name in ("n", "a") for v in n.inputs)
    np.testing.assert_allclose(run_graph(out, [np.ones(2, np.float32)])[1], np.exp(np.ones(2)))


def test_memory_plan_reuses_dead_buffers_never_in_place():
    g = parse_graph(ir("""
        func @f(%0: f32[1024]) -> (f32[]) {
          %1: f32[1024] = exp(%0)
          %2: f32[1024] = neg(%1)
          %3: f32[1024] = sqrt(%2)
          %4: f32[1024] = abs(%3)
          %5: f32[] = sum[axes=none, keepdims=false](%4)
          return %5
        }"""))
    memory = plan(g)
    assert memory.intermediate_bytes == 4 * 4096
    # a kernel never writes over its own input (numba's loop would run scalar): two buffers
    assert memory.planned_bytes == 2 * 4096
    stamped = plan_memory(g)
    assert [n.buffers for n in stamped.nodes] == [(0,), (1,), (0,), (1,), None]
    assert print_graph(parse_graph(print_graph(stamped))) == print_graph(stamped)


def test_memory_plan_keeps_a_buffer_while_views_of_it_live():
    """A reshape's result views its input: the input's buffer is not free until the view dies,
    and a value reaching a result through views is not planned at all."""
    g = parse_graph(ir("""
        func @f(%0: f32[64]) -> (f32[8, 8], f32[64]) {
          %1: f32[64] = exp(%0)
          %2: f32[8, 8] = reshape[shape=[8, 8]](%1)
          %3: f32[64] = neg(%0)
          %4: f32[8, 8] = sqrt(%2)
          %5: f32[64] = abs(%3)
          %6: f32[64] = exp(%5)
          %7: f32[8, 8] = reshape[shape=[8, 8]](%6)
          %8: f32[8, 8] = add(%4, %7)
          %9: f32[64] = neg(%0)
          %10: f32[64] = reshape[shape=[64]](%9)
          return %8, %10
        }"""))
    memory = plan(g)
    b = memory.buffer_of
    # %1 lives through its view %2 (read at %4): %3 must not take %1's buffer
    assert b[g.nodes[0].out] != b[g.nodes[2].out]
    # %5 comes after %4, the last reader of %1's view: it may take %1's buffer
    assert b[g.nodes[4].out] == b[g.nodes[0].out]
    # %9 is handed back through a view; results and views are never planned
    assert g.nodes[8].out not in b and g.nodes[1].out not in b and g.nodes[7].out not in b
    assert memory.planned_bytes == 3 * 256
    assert memory.offsets() == ([0, 256, 512], 768)


def test_memory_plan_leaves_values_a_stateful_op_may_keep_unplanned():
    g = parse_graph(ir("""
        func @f(%0: f32[64]) -> (f32[64]) {
          %1: f32[64] = exp(%0)
          %2: f32[64] = neg(%1)
          %3: f32[64] = reshape[shape=[64]](%1)
          %4: f32[64] = abs(%2)
          return %4
        }"""))
    keeps_reshape = plan(g, retains=lambda n: n.op == "reshape")
    assert g.nodes[0].out not in keeps_reshape.buffer_of and g.nodes[1].out in keeps_reshape.buffer_of
    assert g.nodes[0].out in plan(g).buffer_of


def test_memory_plan_offsets_are_aligned():
    from tfjit.passes.plan_memory import ALIGNMENT, MemoryPlan

    memory = MemoryPlan({}, [4, 100, 64, 1], 169)
    offsets, total = memory.offsets()
    assert offsets == [0, 64, 192, 256] and total == 320 and ALIGNMENT == 64


def test_pass_manager_levels_switches_timing_and_errors(capsys):
    g = parse_graph(ir(SOFTMAX))
    assert "fuse" not in [p.name for p in PassManager(level=1).passes()]
    assert "fuse" not in [p.name for p in PassManager(disabled=frozenset({"fuse"})).passes()]
    with pytest.raises(ValueError, match="unknown pass"):
        PassManager(disabled=frozenset({"nope"})).passes()
    pm = PassManager(verify_each=True, dump_after=frozenset({"fuse"}))
    pm.run(g)
    assert [r.name for r in pm.records][-2:] == ["fuse", "plan_memory"]
    assert "// after fuse" in capsys.readouterr().err

    def broken(graph):
        raise ValueError("boom")

    with pytest.raises(PassError, match=r"pass `fuse` failed on @softmax \(passes before it: .*dce, decompose, cse_decomposed, place, split_reductions, merge_matmuls\): boom"):
        PassManager(overrides={"fuse": broken}).run(g)


# -- semantic tests -------------------------------------------------------------------------------
def run_both(fetches, feed_dict, variables=None):
    """Run the program unoptimised and optimised on the reference backend; compare results and
    the variables' values afterwards."""
    program = program_for(fetches, feed_dict)
    optimized = PassManager(verify_each=True).run(program)
    args = [np.asarray(feed_dict[k], dtype=k.dtype.np_dtype) for k in _feed_order(program, feed_dict)]
    states = []
    outs = []
    for g in (program, optimized):
        state = RuntimeState()
        for name, value in (variables or {}).items():
            state.write(name, np.array(value))
        outs.append(run_graph(g, args, state))
        states.append(state)
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    assert states[0].variables.keys() == states[1].variables.keys()
    for name in states[0].variables:
        np.testing.assert_allclose(states[0].variables[name], states[1].variables[name], rtol=2e-6, atol=1e-7)
    return program, optimized


def _feed_order(program, feed_dict):
    by_name = {k.op.name: k for k in feed_dict}
    return [by_name[p.node.name] for p in program.params]


def test_decompose_spells_softmax_as_steps_that_fuse_into_one_row_kernel():
    from tfjit.passes.decompose import decompose

    x = tf.placeholder(tf.float32, [4, 6], name="x")
    outs = [tf.nn.softmax(x * 2.0), tf.nn.log_softmax(x, axis=0)]
    program = program_for(outs, {x: np.zeros((4, 6))})
    assert [n.op for n in decompose(program).nodes if n.op in ("softmax", "log_softmax")] == []
    _, optimized = run_both(outs, {x: np.random.default_rng(3).standard_normal((4, 6)) * 5})
    assert [n.attr("kind") for n in optimized.nodes if n.op == "fused"] == ["reduction", "reduction"]


@pytest.mark.parametrize("dtype, shape, axes, steps", [
    (tf.float32, [3, 4, 5], [0, 2], [(2,), (0,)]),
    (tf.float32, [2, 1, 3, 1, 4], [0, 1, 4], [(4,), (0, 1)]),
    (tf.float32, [1, 3, 4, 5], [0, 1, 3], [(3,), (0, 1)]),
    (tf.float32, [1, 4, 5], [0, 2], [(0, 2)]),       # one block once size-1 dims are set aside
    (tf.float32, [3, 1, 5], [0, 2], [(0, 2)]),
    (tf.int32, [3, 4, 5], [0, 2], [(0, 2)]),         # an integer mean truncates: kept whole
    (tf.float16, [3, 4, 5], [0, 2], [(0, 2)]),       # float16 is summed in float32: kept whole
])
def test_split_reductions_reduces_scattered_axes_block_by_block(dtype, shape, axes, steps):
    from tfjit.passes.split_reductions import split_reductions

    x = tf.placeholder(dtype, shape, name="x")
    out = tf.reduce_mean(x, axes)
    values = np.random.default_rng(4).integers(-9, 10, shape)
    program = program_for(out, {x: values})
    assert [n.attr("axes") for n in split_reductions(program).nodes if n.op == "mean"] == steps
    run_both(out, {x: values})


def test_split_reductions_leaves_gpu_reductions_whole():
    """The CUDA backend reduces any axes in one kernel."""
    from tfjit.passes.split_reductions import split_reductions

    x = tf.placeholder(tf.float32, [3, 4, 5], name="x")
    with tf.device("/gpu:0"):
        y = tf.reduce_max(x, [0, 2])
    program = program_for(y, {x: np.zeros((3, 4, 5))})
    assert [n.attr("axes") for n in split_reductions(program).nodes if n.op == "max"] == [(0, 2)]


def test_softmax_and_layer_norm_block_optimises_to_the_same_numbers_in_one_kernel():
    x = tf.placeholder(tf.float32, [8, 32], name="x")
    mean, var = tf.reduce_mean(x, -1, keepdims=True), None
    var = tf.reduce_mean(tf.square(x - mean), -1, keepdims=True)
    ln = (x - mean) * tf.rsqrt(var + 1e-5)
    out = tf.nn.softmax(ln * 2.0 + 0.5)
    rng = np.random.default_rng(0)
    _, optimized = run_both(out, {x: rng.standard_normal((8, 32))})
    kernels = [n for n in optimized.nodes if n.op not in ("constant",)]
    assert len(kernels) == 1 and kernels[0].op == "fused"


def test_lecture_training_step_optimises_to_the_same_update():
    x = tf.placeholder(tf.float32, [None, 12], name="x")
    d = tf.placeholder(tf.float32, [None, 3], name="d")
    W = tf.Variable(tf.random_normal([12, 3], seed=1), name="W")
    b = tf.Variable(tf.zeros([3]), name="b")
    loss = tf.reduce_mean(tf.square(tf.nn.sigmoid(tf.matmul(x, W) + b) - d))
    step = tf.train.GradientDescentOptimizer(0.01).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        init = dict(sess.state.variables)
    rng = np.random.default_rng(2)
    _, optimized = run_both([loss, step], {x: rng.standard_normal((8, 12)), d: rng.random((8, 3))}, init)
    assert sum(n.op == "fused" for n in optimized.nodes) <= 4


def mlp_training_step(optimizer):
    x = tf.placeholder(tf.float32, [16, 20], name="x")
    labels = tf.placeholder(tf.int64, [16], name="labels")
    h = x
    for i, n in enumerate([12, 8]):
        with tf.variable_scope(f"layer{i}"):
            w = tf.get_variable("w", [h.shape[1].value, n])
            b = tf.get_variable("b", [n], initializer=tf.zeros_initializer())
            h = tf.nn.relu(tf.matmul(h, w) + b)
    logits = tf.layers_dense(h) if hasattr(tf, "layers_dense") else tf.matmul(h, tf.get_variable("out", [8, 5]))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = optimizer.minimize(loss)
    return x, labels, loss, step


@pytest.mark.parametrize("make_optimizer", [
    lambda: tf.train.GradientDescentOptimizer(0.1),
    lambda: tf.train.AdamOptimizer(0.01),
    lambda: tf.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
], ids=["sgd", "adam", "momentum"])
def test_mlp_training_step_optimises_to_the_same_update(make_optimizer):
    x, labels, loss, step = mlp_training_step(make_optimizer())
    rng = np.random.default_rng(1)
    init = {}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        init = dict(sess.state.variables)
    run_both([loss, step], {x: rng.standard_normal((16, 20)), labels: rng.integers(0, 5, 16)}, init)


@st.composite
def random_effectful_program(draw):
    """Random elementwise/reduction programs over a variable, some of them assigning it."""
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [3, 4], name="x")
    v = tf.Variable(np.ones((3, 4), np.float32), name="v")
    values = [x, v.value()]
    fetches = []
    for _ in range(draw(st.integers(1, 10))):
        a, b = draw(st.sampled_from(values)), draw(st.sampled_from(values))
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "assign", "const"]))
        if kind == "unary":
            values.append(getattr(tf, draw(st.sampled_from(["exp", "tanh", "abs", "negative", "square"])))(a * 0.1))
        elif kind == "binary":
            values.append(getattr(tf, draw(st.sampled_from(["add", "subtract", "multiply", "maximum"])))(a, b))
        elif kind == "reduce":
            values.append(tf.reduce_sum(a, axis=draw(st.sampled_from([-1, 0])), keepdims=True) + a)
        elif kind == "assign":
            fetches.append(v.assign_add(a * 0.5))
        else:
            values.append(a + tf.constant(draw(st.floats(-2, 2, width=32)), tf.float32) * tf.ones([3, 4]))
    fetches.append(values[-1])
    return fetches, x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_effectful_program())
def test_random_programs_optimise_to_the_same_results_and_effects(case):
    fetches, x = case
    run_both(fetches, {x: np.linspace(-1, 1, 12).reshape(3, 4)}, {"v": np.full((3, 4), 0.5, np.float32)})
