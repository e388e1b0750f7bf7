"""Column sums in row kernels: a sum or mean over the leading axes of a value a row kernel
computes (a bias gradient after softmax cross-entropy's gradient, a layer norm's scale
gradient) joins the row kernel, with the math on it at its shape. Results as the reference
backend's (float32 and float64, a batch of one row, batches that are no multiple of a vector,
rows narrower and wider than a vector, NaN/inf, parallel blocks of rows); the cases the fuse
pass refuses; an MLP that trains as on the reference with one distinct kernel fewer."""
from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import column, reduction
from tfjit.backends.numba_cpu.compile import strip_comments
from tfjit.backends.numba_cpu.executable import compile_graph as numba_compile
from tfjit.backends.numba_cpu.executable import kernel_sources
from tfjit.backends.reference import run_graph
from tfjit.debug import program_for
from tfjit.ir import parse_graph
from tfjit.passes import fuse as fuse_pass
from tfjit.passes.fuse import explain_fusion, fuse
from tfjit.runtime.state import RuntimeState

from test_numba_backend import assert_same, both, generated

RNG = np.random.default_rng(5)
KERNELS = (reduction.RowKernel, column.ColumnKernel)


def _row_kernel_with_columns(exe):
    """The plan's one row or column kernel, asserted to be a row kernel with column sums."""
    (kernel,) = generated(exe, KERNELS)
    assert isinstance(kernel, reduction.RowKernel) and kernel.columns
    return kernel


def _cross_entropy_step(batch, width, dtype):
    """Softmax cross-entropy of `z + b`: the loss, the logits' gradient and the bias's gradient
    and step (the bias gradient sums the logits' gradient over the batch)."""
    z = tf.placeholder(dtype, [batch, width], name="z")
    b = tf.placeholder(dtype, [width], name="b")
    labels = tf.placeholder(dtype, [batch, width], name="labels")
    logits = z + b
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits))
    dlogits, db = tf.gradients(loss, [logits, b])
    feeds = {z: RNG.standard_normal((batch, width)) * 3, b: RNG.standard_normal(width),
             labels: np.eye(width)[RNG.integers(0, width, batch)]}
    return [loss, dlogits, db, b - 0.1 * db], feeds


@pytest.mark.parametrize("width", [5, 19], ids=["narrow", "wide"])  # under and over one vector
@pytest.mark.parametrize("batch", [1, 13])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_cross_entropy_gradient_and_bias_step_are_one_row_kernel(dtype, batch, width):
    fetches, feeds = _cross_entropy_step(batch, width, dtype)
    got, want, exe = both(fetches, feeds)
    assert_same(got, want, rtol=1e-5 if dtype == tf.float32 else 1e-12, atol=1e-7)
    kernel = _row_kernel_with_columns(exe)
    assert len(kernel.body.results) == 4  # the loss rows, the logits' gradient, the bias's gradient and step


def test_as_many_rows_as_columns_keep_row_and_column_values_apart():
    """With rows == cols, the loss rows and the bias gradient have the same shape: the one is
    per row, the other per column."""
    fetches, feeds = _cross_entropy_step(5, 5, tf.float64)
    got, want, exe = both(fetches, feeds)
    assert_same(got, want, rtol=1e-12, atol=1e-14)
    _row_kernel_with_columns(exe)


def test_nan_and_inf_logits_reach_the_column_sums_as_in_numpy():
    fetches, feeds = _cross_entropy_step(6, 5, tf.float32)
    z = next(k for k in feeds if k.op.name == "z")
    values = feeds[z]
    values[1, 2] = np.nan          # a NaN row: NaN in every column's sum
    values[3, 0] = np.inf          # an inf row (NaN through inf - inf)
    values[4, :] = -np.inf         # an all -inf row
    got, want, exe = both(fetches, feeds)
    assert np.isnan(want[2]).all()  # the case checks what it means to
    assert_same(got, want, rtol=1e-5)
    _row_kernel_with_columns(exe)


def test_parallel_blocks_of_rows_add_up_their_own_column_sums(monkeypatch):
    """With the parallel threshold lowered, each block of rows sums into its own row of the
    scratch; a sum and a mean of different values, each with math after it."""
    monkeypatch.setattr(reduction, "PARALLEL_MIN_ELEMENTS", 1)
    fetches, feeds = _cross_entropy_step(37, 19, tf.float32)
    loss, dlogits, db, step = fetches
    extra = tf.reduce_mean(dlogits * dlogits, 0, keepdims=True) * 2.0
    got, want, exe = both([loss, dlogits, db, step, extra], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-7)
    kernel = _row_kernel_with_columns(exe)
    assert kernel.parallel and len(kernel.columns) == 2


@pytest.mark.parametrize("shape", [(7, 6), (2, 4, 6)])  # rows along one or two leading axes
def test_log_softmax_gradient_sums_its_bias_gradient_in_the_row_kernel(shape):
    z = tf.placeholder(tf.float64, shape, name="z")
    b = tf.placeholder(tf.float64, [6], name="b")
    t = tf.placeholder(tf.float64, shape, name="t")
    loss = tf.reduce_sum(tf.nn.log_softmax(z + b) * t)
    feeds = {z: RNG.standard_normal(shape), b: RNG.standard_normal(6), t: RNG.standard_normal(shape)}
    got, want, exe = both(tf.gradients(loss, [z, b]), feeds)
    assert_same(got, want, rtol=1e-12)
    _row_kernel_with_columns(exe)


def test_layer_norm_scale_gradient_sums_in_the_row_kernel():
    """The scale's gradient sums a value of the rows (the normalised input times the incoming
    gradient); the offset's sums an input, so its column kernel stays apart."""
    x = tf.placeholder(tf.float64, [6, 9], name="x")
    g = tf.placeholder(tf.float64, [9], name="g")
    b = tf.placeholder(tf.float64, [9], name="b")
    w = tf.placeholder(tf.float64, [6, 9], name="w")
    mean, var = tf.nn.moments(x, [1], keep_dims=True)
    loss = tf.reduce_sum(((x - mean) / tf.sqrt(var + 1e-5) * g + b) * w)
    feeds = {x: RNG.standard_normal((6, 9)), g: RNG.standard_normal(9), b: RNG.standard_normal(9),
             w: RNG.standard_normal((6, 9))}
    got, want, exe = both(tf.gradients(loss, [x, g, b]), feeds)
    assert_same(got, want, rtol=1e-12)
    (row,) = generated(exe, reduction.RowKernel)
    assert row.columns and len(generated(exe, column.ColumnKernel)) == 1


# -- what the fuse pass refuses ------------------------------------------------------------------
def _ir(text: str) -> str:
    return textwrap.dedent(text).strip()


ROWS_THEN = """
    func @f(%0: f32[4,3,5]) -> ({shape}, f32[4,3]) {{
      %1: f32[4,3,1] = max[axes=[2], keepdims=true](%0) {{device="{device}"}}
      %2: f32[4,3,5] = subtract(%0, %1) {{device="{device}"}}
      %3: f32[4,3,5] = exp(%2) {{device="{device}"}}
      %4: f32[4,3] = sum[axes=[2], keepdims=false](%3) {{device="{device}"}}
      %5: {shape} = {column} {{device="{device}"}}
      %6: {shape} = multiply(%5, %5) {{device="{device}"}}
      return %6, %4
    }}"""
FOLDED = dict(shape="f32[5]", column="sum[axes=[0, 1], keepdims=false](%3)", device="CPU:0")


@pytest.mark.parametrize("case, reason", [
    ({}, None),
    (dict(column="mean[axes=[0, 1], keepdims=false](%3)"), None),
    (dict(shape="f32[4,5]", column="sum[axes=[1], keepdims=false](%3)"), "a sum over axes (1,), not the leading"),
    (dict(shape="f32[3,5]", column="sum[axes=[0], keepdims=false](%3)"), "a sum over axes (0,), not the leading"),
    (dict(column="max[axes=[0, 1], keepdims=false](%3)"), "only float sums and means"),
    (dict(device="GPU:0"), "the CUDA backend's row kernels have no column sums"),
], ids=["sum", "mean", "middle-axis", "first-axis", "max", "gpu"])
def test_the_fuse_pass_folds_leading_sums_of_row_values_and_refuses_the_rest(case, reason):
    graph = parse_graph(_ir(ROWS_THEN.format(**{**FOLDED, **case})))
    fused = fuse(graph)
    kernels = [n for n in fused.nodes if n.op == "fused"]
    decisions = explain_fusion(graph)
    if reason is None:
        assert len(kernels) == 1 and len(kernels[0].attr("body").nodes) == 6
    else:
        assert len(kernels) == 2 and any(d.startswith("not fused") and reason in d for d in decisions)
    x = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    for g, w in zip(run_graph(fused, [x]), run_graph(graph, [x])):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_a_value_of_the_rows_that_reads_a_column_sum_stays_in_another_kernel():
    """The column sums are ready only after the last row: a value at the rows' shape that reads
    one (`x - sum(x, 0)`) cannot be in the same kernel; nor can a bias's assignment."""
    graph = parse_graph(_ir("""
        func @f(%0: f32[4,5]) -> (f32[4,5], f32[5]) {
          %1: f32[4,1] = max[axes=[1], keepdims=true](%0)
          %2: f32[4,5] = subtract(%0, %1)
          %3: f32[5] = sum[axes=[0], keepdims=false](%2)
          %4: f32[4,5] = subtract(%2, %3)
          %5: f32[5] = variable[dtype=f32, shape=[5], var="b"]() {name="b"}
          %6: f32[5] = assign_sub[dtype=f32, shape=[5], var="b"](%3) {name="AssignSub"}
          return %4, %6
        }"""))
    decisions = explain_fusion(graph)
    assert any("not fused" in d and "reads column sums and values of the rows" in d for d in decisions)
    assert any("not fused" in d and "AssignSub" in d for d in decisions)
    (kernel,) = [n for n in fuse(graph).nodes if n.op == "fused"]  # the rows and the column sum
    assert [n.op for n in kernel.attr("body").nodes] == ["max", "subtract", "sum"]


def test_a_row_kernel_never_takes_a_value_of_the_rows_computed_from_its_column_sum():
    """`x - sum(y, 0)` stays apart from the rows of `y`; a row sum of it that later meets the
    rows of `y` (an add of two row sums) still may not bring it in."""
    graph = parse_graph(_ir("""
        func @f(%0: f32[4,5]) -> (f32[4], f32[5]) {
          %1: f32[4,1] = max[axes=[1], keepdims=true](%0)
          %2: f32[4,5] = subtract(%0, %1)
          %3: f32[5] = sum[axes=[0], keepdims=false](%2)
          %4: f32[4,5] = subtract(%0, %3)
          %5: f32[4] = sum[axes=[1], keepdims=false](%4)
          %6: f32[4] = sum[axes=[1], keepdims=false](%2)
          %7: f32[4] = add(%5, %6)
          return %7, %3
        }"""))
    decisions = explain_fusion(graph)
    assert any(d.startswith("not fused") and "a subtract of shape (4, 5) reads column sums" in d for d in decisions)
    fused = fuse(graph)
    assert sum(n.op == "fused" for n in fused.nodes) == 2
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    for g, w in zip(run_graph(fused, [x]), run_graph(graph, [x])):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_a_row_kernel_body_whose_column_sum_feeds_the_rows_runs_node_by_node():
    """A body the fuse pass would not form (a value of the rows reads a column sum): the backend
    builds no row kernel and runs it node by node, with the reference's values."""
    graph = parse_graph(_ir("""
        func @f(%0: f64[4,5]) -> (f64[4,5], f64[5]) {
          %1: f64[4,5], %2: f64[5] = fused[kind="reduction"](%0) {name="rows"}
            body func @rows(%0: f64[4,5]) -> (f64[4,5], f64[5]) {
              %1: f64[4,1] = max[axes=[1], keepdims=true](%0)
              %2: f64[4,5] = subtract(%0, %1)
              %3: f64[5] = sum[axes=[0], keepdims=false](%2)
              %4: f64[4,5] = subtract(%2, %3)
              return %4, %3
            }
          return %1, %2
        }"""))
    (node,) = graph.nodes
    assert reduction.build(node) is None
    x = RNG.standard_normal((4, 5))
    got = numba_compile(graph).run([x], RuntimeState())
    assert_same(got, run_graph(graph, [x]), rtol=1e-12)


# -- the MLP training step ---------------------------------------------------------------------
def _mlp(batch=12):
    tf.reset_default_graph()
    tf.set_random_seed(7)
    x = tf.placeholder(tf.float32, [batch, 20], name="x")
    labels = tf.placeholder(tf.int64, [batch], name="labels")
    h = x
    for i, n in enumerate([16, 16]):
        with tf.variable_scope(f"layer{i}"):
            w = tf.get_variable("w", [h.shape[1].value, n])
            b = tf.get_variable("b", [n], initializer=tf.zeros_initializer())
            h = tf.nn.relu(tf.matmul(h, w) + b)
    with tf.variable_scope("logits"):
        logits = tf.matmul(h, tf.get_variable("w", [16, 10])) + tf.get_variable("b", [10])
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.one_hot(labels, 10), logits=logits))
    train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    rng = np.random.default_rng(2)
    return loss, train, {x: rng.standard_normal((batch, 20)).astype(np.float32), labels: rng.integers(0, 10, batch)}


def test_an_mlp_trains_as_on_the_reference_backend():
    losses = {}
    for backend in ("reference", "numba"):
        previous = config.current.backend
        config.set_backend(backend)
        try:
            loss, train, feed = _mlp()
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                losses[backend] = [sess.run([loss, train], feed)[0] for _ in range(4)]
        finally:
            config.set_backend(previous)
    np.testing.assert_allclose(losses["numba"], losses["reference"], rtol=1e-5)
    assert losses["numba"][-1] < losses["numba"][0]


def _distinct_kernels():
    """The number of distinct numba kernels (by their compiled code) of the MLP step's plan."""
    loss, train, feed = _mlp()
    exe = numba_compile(config.pass_manager().run(program_for([loss, train], feed)))
    functions = re.split(r"\n(?=\s*def kernel\()", kernel_sources(exe))[1:]
    return len({strip_comments(textwrap.dedent(f)).strip() for f in functions}), exe


def test_the_mlp_step_compiles_one_distinct_kernel_fewer(monkeypatch):
    """Its output layer's bias gradient and step join the cross-entropy's row kernel: with the
    fold refused, the same step needs one more distinct kernel (a column kernel)."""
    folded, exe = _distinct_kernels()
    _row_kernel_with_columns(exe)
    monkeypatch.setattr(fuse_pass, "_why_not_column_sums", lambda p, c: "refused by the test")
    apart, exe = _distinct_kernels()
    assert len(generated(exe, column.ColumnKernel)) == 1
    assert folded == apart - 1
