"""Generated reduction kernels (row and column) give the reference backend's results: every
reduce op over every class of axes (trailing, leading, middle, several, all, none), each
dtype, keepdims, NaN/inf, size-1 and empty dims, and fused prologues/epilogues. The
reductions of one case share one prologue, so fusion makes them one kernel (few compiles)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import tfjit as tf
from tfjit.backends.numba_cpu import column, reduction

from test_numba_backend import assert_same, both, generated

RNG = np.random.default_rng(11)
KERNELS = (reduction.RowKernel, column.ColumnKernel)

# axes -> the kernel expected for a (3, 4, 5) input. Axes (0, 2) reduce in two steps
# (passes/decompose.py): the prologue fuses into the row kernel of the inner one.
AXES = [((2,), reduction.RowKernel), ((0,), column.ColumnKernel), ((1,), column.ColumnKernel),
        ((0, 1), column.ColumnKernel), ((1, 2), reduction.RowKernel), (None, reduction.RowKernel),
        ((), column.ColumnKernel), ((0, 2), reduction.RowKernel)]


def _reductions(p, axes, keepdims, dtype):
    outs = [tf.reduce_sum(p, axes, keepdims=keepdims), tf.reduce_mean(p, axes, keepdims=keepdims),
            tf.reduce_max(p, axes, keepdims=keepdims), tf.reduce_min(p, axes, keepdims=keepdims),
            tf.reduce_prod(p, axes, keepdims=keepdims)]
    if axes is not None and len(axes) == 1:
        outs += [tf.argmax(p, axes[0]), tf.argmin(p, axes[0], output_type=tf.int32)]
    return outs


@pytest.mark.parametrize("axes, kernel", AXES, ids=[str(a) for a, _ in AXES])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32])
def test_every_reduce_op_over_every_class_of_axes(axes, kernel, dtype):
    x = tf.placeholder(dtype, [3, 4, 5], name="x")
    keepdims = axes in ((0,), (1, 2))
    if dtype.is_floating:
        values = RNG.standard_normal((3, 4, 5))
        p = x * 0.25 + 1.0  # prod of 60 such factors stays finite
    else:
        values = RNG.integers(-9, 10, (3, 4, 5))
        p = x * 3 - 1
    outs = _reductions(p, axes, keepdims, dtype)
    got, want, exe = both(outs, {x: values})
    assert_same(got, want, rtol=1e-5 if dtype == tf.float32 else 1e-12)
    assert len(generated(exe, KERNELS)) == 1 and generated(exe, kernel)


SCATTERED = [((3, 4, 5), (0, 2)), ((2, 3, 4, 5), (0, 2)), ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), (0, 1, 3)),
             ((2, 1, 3, 1, 4), (0, 1, 4)), ((2, 3, 4, 5, 6), (0, 2, 4))]


@pytest.mark.parametrize("shape, axes", SCATTERED, ids=[f"{s}-{a}" for s, a in SCATTERED])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32])
def test_reductions_over_scattered_axes_match_numpy_and_run_generated(shape, axes, dtype):
    """Checked against NumPy itself: the reference backend runs the same split program."""
    x = tf.placeholder(dtype, shape, name="x")
    floating = dtype.is_floating
    values = RNG.standard_normal(shape) if floating else RNG.integers(-9, 10, shape)
    values = values.astype(dtype.np_dtype)
    p = x * 0.25 + 1.0 if floating else x * 3 - 1
    q = values * dtype.np_dtype.type(0.25) + dtype.np_dtype.type(1) if floating else values * 3 - 1
    keep = len(axes) == 3
    outs = [tf.reduce_sum(p, axes, keepdims=keep), tf.reduce_max(p, axes), tf.reduce_min(p, axes, keepdims=keep),
            tf.reduce_prod(p, axes), tf.reduce_any(p > 1, axes), tf.reduce_all(p > -2, axes, keepdims=keep)]
    want = [q.sum(axes, q.dtype, keepdims=keep), q.max(axes), q.min(axes, keepdims=keep), q.prod(axes, q.dtype),
            (q > 1).any(axes), (q > -2).all(axes, keepdims=keep)]
    if floating:
        outs.append(tf.reduce_mean(p, axes, keepdims=keep))
        want.append(q.mean(axes, keepdims=keep))
    got, _, exe = both(outs, {x: values})
    assert_same(got, [np.asarray(w) for w in want], rtol=1e-5 if dtype == tf.float32 else 1e-12)
    assert generated(exe, KERNELS)


def test_gradients_through_a_reduction_over_scattered_axes_match_numpy():
    x = tf.placeholder(tf.float32, [3, 4, 5], name="x")
    loss = tf.reduce_sum(tf.reduce_mean(tf.exp(x), [0, 2]) * tf.constant(np.arange(4, dtype=np.float32)))
    values = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    got, _, _ = both(tf.gradients(loss, [x]), {x: values})
    want = np.exp(values) * np.arange(4, dtype=np.float32)[None, :, None] / 15.0
    assert_same(got, [want], rtol=1e-5)


@pytest.mark.parametrize("axes", [(0,), (1,), (2,)])
def test_any_and_all(axes):
    x = tf.placeholder(tf.float32, [3, 4, 5], name="x")
    values = RNG.standard_normal((3, 4, 5))
    values[:, 0, :] = 1.0  # some groups all true
    positive = x > 0.0
    outs = [tf.reduce_any(positive, axes), tf.reduce_all(positive, axes, keepdims=True),
            tf.reduce_any(tf.logical_not(positive), axes)]
    got, want, exe = both(outs, {x: values})
    assert_same(got, want)
    assert generated(exe, KERNELS)


@pytest.mark.parametrize("axis, width", [(0, 6), (1, 6), (1, 17)])
def test_nan_and_inf_propagate_as_in_numpy(axis, width):
    x = tf.placeholder(tf.float32, [4, width], name="x")
    values = RNG.standard_normal((4, width)).astype(np.float32)
    values[1, 0] = values[3, 0] = np.nan   # column 0: NaN twice; row 1: NaN first
    values[2, 1] = np.inf                  # column 1 and row 2: +inf
    values[:, 2] = -np.inf                 # column 2: all -inf (argmax 0)
    values[0, 3], values[2, 3] = np.inf, -np.inf  # column 3: inf + -inf = NaN
    p = x * 2.0  # a prologue, so the reductions fuse into one kernel
    outs = [tf.reduce_max(p, axis), tf.reduce_min(p, axis), tf.reduce_sum(p, axis), tf.reduce_mean(p, axis),
            tf.argmax(p, axis), tf.argmin(p, axis)]
    got, want, exe = both(outs, {x: values})
    assert_same(got, want)
    (kernel,) = generated(exe, KERNELS)
    if axis == 1:  # a row max of computed values goes through a row scratch ...
        wide = width >= reduction.VECTOR_LANES  # ... and scalar_lib's function, or a loop over a narrow one
        assert ("_row_max(row_" in kernel.source and "_row_min(row_" in kernel.source) == wide
        narrow_max = re.search(r"(red_\d+) = \1 if \(\1 > \1_x or \1 != \1\) else \1_x", kernel.source)
        assert ("_row_max(" not in kernel.source and narrow_max is not None) == (not wide)


def test_size_one_dims_around_the_reduced_axes():
    x = tf.placeholder(tf.float32, [1, 3, 1, 4, 1], name="x")
    p = tf.exp(x)
    outs = [tf.reduce_sum(p, [0, 1], keepdims=True), tf.reduce_max(p, [1, 2]), tf.reduce_mean(p, [1])]
    got, want, _ = both(outs, {x: RNG.standard_normal((1, 3, 1, 4, 1))})
    assert_same(got, want, rtol=1e-5)


@pytest.mark.parametrize("shape, axis", [((0, 3), 0), ((3, 0), 0), ((4, 0), 1)])
def test_empty_inputs_fall_back_to_the_reference_with_tf_identities(shape, axis):
    x = tf.placeholder(tf.float32, shape, name="x")
    p = x * 2.0
    outs = [tf.reduce_sum(p, axis), tf.reduce_max(p, axis), tf.reduce_min(p, axis), tf.reduce_mean(p, axis)]
    got, want, exe = both(outs, {x: np.zeros(shape)})
    assert_same(got, want)
    assert not generated(exe, KERNELS)


def test_batch_norm_over_n_h_w_is_one_column_kernel_with_recomputed_prologue():
    x = tf.placeholder(tf.float32, [2, 3, 3, 4], name="x")
    gamma = tf.placeholder(tf.float32, [4], name="gamma")
    beta = tf.placeholder(tf.float32, [4], name="beta")
    h = tf.nn.relu(x * 1.5 - 0.5)
    mean, var = tf.nn.moments(h, axes=[0, 1, 2])
    y = (h - mean) * tf.rsqrt(var + 1e-3) * gamma + beta
    feeds = {x: RNG.standard_normal((2, 3, 3, 4)), gamma: RNG.standard_normal(4), beta: RNG.standard_normal(4)}
    got, want, exe = both([y, mean, var], feeds)
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert len(generated(exe, column.ColumnKernel)) == 1


def test_softmax_over_a_leading_axis_runs_three_phases():
    x = tf.placeholder(tf.float64, [5, 3, 4], name="x")
    y = tf.nn.softmax(x * 2.0, axis=1)
    got, want, exe = both(y, {x: RNG.standard_normal((5, 3, 4)) * 3})
    assert_same(got, want, rtol=1e-12)
    assert generated(exe, column.ColumnKernel)


def test_bias_gradient_through_a_relu_is_one_column_kernel():
    h = tf.placeholder(tf.float32, [6, 8], name="h")
    dy = tf.placeholder(tf.float32, [6, 8], name="dy")
    d_pre = tf.where_v2(h > 0.0, dy * 2.0, tf.zeros_like(dy))  # relu's gradient of a squared loss
    db = tf.reduce_sum(d_pre, axis=0)
    got, want, exe = both([db, d_pre], {h: RNG.standard_normal((6, 8)), dy: RNG.standard_normal((6, 8))})
    assert_same(got, want, rtol=1e-5, atol=1e-6)
    assert len(generated(exe, column.ColumnKernel)) == 1


@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_row_max_and_min_of_an_input_with_several_accumulators(dtype):
    x = tf.placeholder(dtype, [5, 19], name="x")  # 19: two blocks of eight and a tail
    values = np.round(RNG.standard_normal((5, 19)) * 4).astype(dtype.np_dtype)
    if dtype.is_floating:
        values[0, 0] = values[1, 8] = values[2, 18] = np.nan  # first, in a block, in the tail
        values[3, 5], values[3, 17] = np.inf, -np.inf
    peak = tf.reduce_max(x, 1, keepdims=True)
    outs = [tf.reduce_max(x, 1), tf.reduce_min(x, 1), tf.reduce_sum(x - peak, 1)]
    got, want, exe = both(outs, {x: values})
    assert_same(got, want)
    assert "_row_max(" in generated(exe, reduction.RowKernel)[0].source


def test_float32_row_max_and_min_order_every_kind_of_value():
    """The float32 row max/min compare integer order keys: negative values, -inf, denormals of
    both signs, zeros and a negative NaN must come out as the float comparison gives them."""
    x = tf.placeholder(tf.float32, [6, 20], name="x")
    values = RNG.standard_normal((6, 20)).astype(np.float32) - np.float32(10.0)  # all negative
    values[1] = -np.inf
    values[2, ::2], values[2, 1::2] = -1e-45, -3e-45  # negative denormals only
    values[3, :] = 0.0
    values[3, ::3] = -0.0
    values[4, 7] = -np.nan  # NaN with the sign bit set
    values[5, :10], values[5, 10:] = 2e-45, np.inf
    peak = tf.reduce_max(x, 1, keepdims=True)
    outs = [tf.reduce_max(x, 1), tf.reduce_min(x, 1), tf.reduce_sum(x - peak, 1)]
    got, want, exe = both(outs, {x: values})
    assert_same(got, want)
    assert "_row_max(" in generated(exe, reduction.RowKernel)[0].source


@pytest.mark.parametrize("width", [10, 16])
def test_softmax_cross_entropy_rows_narrower_than_a_vector_call_libm(width):
    """A narrow row's loops cannot vectorise: its max is a plain loop and its exp libm's; the
    log of each row's sum is libm's in every kernel. Both widths give the reference's values,
    NaN and inf included."""
    x = tf.placeholder(tf.float32, [5, width], name="x")
    labels = tf.placeholder(tf.float32, [5, width], name="labels")
    values = RNG.standard_normal((5, width)).astype(np.float32) * 4
    values[1, 3], values[2, 0], values[3, :] = np.nan, np.inf, -np.inf
    loss = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=x)
    hot = np.eye(width, dtype=np.float32)[RNG.integers(0, width, 5)]
    got, want, exe = both([loss], {x: values, labels: hot})
    assert_same(got, want, rtol=1e-5, atol=1e-6)
    (kernel,) = generated(exe, reduction.RowKernel)
    narrow = width < reduction.VECTOR_LANES
    assert ("math.exp(" in kernel.source) == narrow and ("_f32_exp(" in kernel.source) == (not narrow)
    assert "math.log(" in kernel.source and "_f32_log(" not in kernel.source
    # A narrow row's length is a constant of its kernel (LLVM unrolls its loops), a wide one's an argument.
    assert (f"COLS = {width}" in kernel.source) == narrow and ("ROWS, COLS)" in kernel.source) == (not narrow)


@pytest.mark.parametrize("width", [6, 20])
def test_a_per_row_value_a_later_pass_reads_is_read_again_not_kept_in_a_scratch_row(width):
    x = tf.placeholder(tf.float32, [5, width], name="x")
    g = tf.placeholder(tf.float32, [5, 1], name="g")  # broadcast along the row, read in the last pass
    y = tf.nn.softmax(x) * tf.broadcast_to(g, [5, width])
    got, want, exe = both([y], {x: RNG.standard_normal((5, width)), g: RNG.standard_normal((5, 1))})
    assert_same(got, want, rtol=1e-5, atol=1e-7)
    (kernel,) = generated(exe, reduction.RowKernel)
    assert len(kernel.scratch) == 1, kernel.source  # the row of exp values only


def test_big_row_kernels_run_in_parallel_blocks():
    x = tf.placeholder(tf.float32, [1030, 1024], name="x")
    values = RNG.standard_normal((1030, 1024)) * 3
    values[7, 100] = np.nan
    got, want, exe = both(tf.nn.softmax(x), {x: values})
    assert_same(got, want, rtol=1e-5, atol=1e-7)
    assert generated(exe, reduction.RowKernel)[0].parallel


def test_big_column_kernels_run_blocks_of_the_kept_axis_in_parallel():
    x = tf.placeholder(tf.float32, [520, 2050], name="x")  # 2050 columns: uneven blocks
    values = RNG.standard_normal((520, 2050))
    values[3, 7] = np.nan
    p = x * 2.0
    mean = tf.reduce_mean(p, 0, keepdims=True)
    outs = [p - mean, tf.reduce_max(p, 0), tf.argmin(p, 0)]
    got, want, exe = both(outs, {x: values})
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    assert generated(exe, column.ColumnKernel)[0].parallel


def test_a_shape_that_fits_two_spans_falls_back_to_the_reference():
    x = tf.placeholder(tf.float32, [4, 4, 4], name="x")
    w = tf.placeholder(tf.float32, [4, 4], name="w")  # broadcast over axis 0, or the kept (0, 2) shape?
    y = tf.reduce_sum(x * w, axis=1)
    got, want, exe = both(y, {x: RNG.standard_normal((4, 4, 4)), w: RNG.standard_normal((4, 4))})
    assert_same(got, want, rtol=1e-5)
    assert not generated(exe, KERNELS)


def test_a_value_broadcast_inside_the_kept_axes_is_indexed_by_its_own_shape():
    # divide's gradient w.r.t. b: sum over axis 0 of a[2,1,3] / b[2,3] * u[2,2,3]; a's
    # non-unit dims equal the kept shape's, yet it broadcasts along axis 1, not axis 0
    a = tf.placeholder(tf.float64, [2, 1, 3], name="a")
    b = tf.placeholder(tf.float64, [2, 3], name="b")
    u = tf.placeholder(tf.float64, [2, 2, 3], name="u")
    y = tf.reduce_sum(a / b * u, axis=0)
    feed = {a: RNG.standard_normal((2, 1, 3)), b: RNG.standard_normal((2, 3)) + 3.0, u: RNG.standard_normal((2, 2, 3))}
    got, want, _ = both(y, feed)
    assert_same(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis, kernel, shapes", [
    (1, reduction.RowKernel, [(6, 17), (3, 20)]), (1, reduction.RowKernel, [(6, 5), (3, 5)]),
    (0, column.ColumnKernel, [(6, 5), (3, 9)])])
def test_one_compiled_kernel_serves_every_shape_of_a_body(axis, kernel, shapes):
    """Sizes are kernel arguments: a new batch size or width reuses the compiled kernel (but
    for a row narrower than a vector, whose length is a constant of its kernel)."""
    compiled = []
    for shape in shapes:
        x = tf.placeholder(tf.float32, shape, name="x")
        p = x * 0.5
        outs = [tf.reduce_mean(p, axis), tf.reduce_max(p, axis), p - tf.reduce_sum(p, axis, keepdims=True)]
        got, want, exe = both(outs, {x: RNG.standard_normal(shape)})
        assert_same(got, want)
        (k,) = generated(exe, kernel)
        compiled.append(k._kernel)
    assert compiled[0] is compiled[1]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_softmax_cross_entropy_over_rows_and_columns_runs_as_generated_kernels(dtype):
    logits = tf.placeholder(dtype, [6, 7], name="logits")
    labels = tf.placeholder(dtype, [6, 7], name="labels")
    soft = tf.placeholder(dtype, [1, 7], name="soft")  # labels broadcast over the rows
    loss = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
    columns = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits, axis=0)
    spread = tf.nn.softmax_cross_entropy_with_logits_v2(labels=soft, logits=logits)
    (grad,) = tf.gradients(tf.reduce_sum(loss), [logits])
    values = RNG.standard_normal((6, 7)) * 4
    values[1, 2], values[2, :] = np.inf, -np.inf  # NaN rows as in the reference
    values[3, 4] = np.nan
    feed = {logits: values, labels: RNG.dirichlet(np.ones(7), 6), soft: RNG.dirichlet(np.ones(7), 1)}
    got, want, exe = both([loss, columns, spread, grad], feed)
    assert not any(n.op == "softmax_cross_entropy_with_logits" for n, _ in exe.kernels)
    # The row softmaxes and the gradient share their max, exp and sum (one row kernel); the column one is another.
    assert len(generated(exe, KERNELS)) == sum(n.op == "fused" for n, _ in exe.kernels) == 2
    assert_same(got, want, rtol=1e-5 if dtype == tf.float32 else 1e-12)


def test_a_mean_cross_entropy_and_its_gradient_are_one_row_kernel():
    """The loss of a classifier step and its gradient w.r.t. the logits: the gradient's seed is
    a constant (simplify), its softmax is the loss's (cse after decompose), so one row kernel
    computes both; the mean runs apart. Values as the reference's, the gradient also against
    finite differences of the loss."""
    logits = tf.placeholder(tf.float64, [5, 4], name="logits")
    labels = tf.placeholder(tf.float64, [5, 4], name="labels")
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits))
    (grad,) = tf.gradients(loss, [logits])
    values, hot = RNG.standard_normal((5, 4)) * 3, np.eye(4)[RNG.integers(0, 4, 5)]
    got, want, exe = both([loss, grad], {logits: values, labels: hot})
    assert_same(got, want, rtol=1e-12, atol=1e-14)
    (kernel,) = generated(exe, KERNELS)
    assert isinstance(kernel, reduction.RowKernel) and len(kernel.body.results) == 2
    direction = RNG.standard_normal((5, 4))

    def loss_at(x):
        z = x - x.max(1, keepdims=True)
        return float(np.mean(-(hot * (z - np.log(np.exp(z).sum(1, keepdims=True)))).sum(1)))
    slope = (loss_at(values + 1e-6 * direction) - loss_at(values - 1e-6 * direction)) / 2e-6
    np.testing.assert_allclose(np.sum(got[1] * direction), slope, rtol=1e-6)


@pytest.mark.parametrize("axis, kernel", [(1, reduction.RowKernel), (0, column.ColumnKernel)])
def test_scalar_inputs_come_as_scalars_and_arrays_with_the_dims_they_vary_along(axis, kernel):
    """A scalar (a learning rate) reaches a row or column kernel as a NumPy scalar, never
    indexed, and a column kernel's arrays have only the dims of their span; values as the
    reference's."""
    x = tf.placeholder(tf.float32, [3, 4], name="x")
    lr = tf.placeholder(tf.float32, [], name="lr")
    b = tf.placeholder(tf.float32, [4], name="b")
    p = x * b
    outs = [tf.reduce_sum(p, axis) * lr, tf.reduce_max(p - lr, axis)]
    feed = {x: RNG.standard_normal((3, 4)), lr: np.float32(0.3), b: RNG.standard_normal(4)}
    got, want, exe = both(outs, feed)
    assert_same(got, want)
    (k,) = generated(exe, kernel)
    scalar = f"in{[q.type.shape for q in k.body.params].index(())}"
    assert re.search(rf"\b{scalar}\b", k.source) and not re.search(rf"\b{scalar}\[", k.source)
    if kernel is column.ColumnKernel:  # over axis 0 of [3, 4]: O = 1, so x is (R, I) and b is (I,)
        assert "[r, i]" in k.source and ", r, i]" not in k.source
        # the sum, the max and sum * lr are made in the last loop: locals, not I-sized arrays
        signature = k.source.splitlines()[0]
        assert "acc_" in signature and "red_" not in signature and "kv_" not in signature


def test_column_accumulators_restart_for_every_outer_element_without_a_loop_of_their_own():
    """Over the middle axis of [3, 4, 5] (O = 3): the caller fills the accumulators, each o's
    last read restarts them for the next o; sums, maxima and argmins as the reference's."""
    x = tf.placeholder(tf.float32, [3, 4, 5], name="x")
    p = x * 2.0
    outs = [tf.reduce_sum(p, 1), tf.reduce_max(p, 1), tf.argmin(p, 1)]
    values = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    values[1, 2, 3] = np.nan
    got, want, exe = both(outs, {x: values})
    assert_same(got, want)
    (k,) = generated(exe, column.ColumnKernel)
    assert "for o in range(O):" in k.source and k.source.count("for i in range(I):") == 2, k.source


def test_row_results_of_a_square_input_are_told_from_columns_by_how_they_are_made():
    x = tf.placeholder(tf.float32, [3, 3], name="x")
    b = tf.placeholder(tf.float32, [3], name="b")  # a column, as NumPy broadcasts it
    rows = tf.reduce_sum(x + b, 1)
    fetches = [rows * 2.0 + tf.reduce_max(x, 1), tf.ones_like(rows), x - tf.reduce_mean(x, 1, keepdims=True) * b]
    feed = {x: RNG.standard_normal((3, 3)), b: RNG.standard_normal(3)}
    got, want, exe = both(fetches, feed)
    assert len(generated(exe, KERNELS)) == 2
    assert_same(got, want)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("axes, keepdims", [((2,), False), ((0,), True), ((0, 2), False), (None, False)])
def test_logsumexp_runs_as_generated_max_and_sum_steps_matching_scipy(dtype, axes, keepdims):
    from scipy.special import logsumexp

    values = RNG.normal(0, 30, (3, 4, 5)).astype(dtype.np_dtype)
    values[0, 0, :] = values[:, 1, 0] = -np.inf     # a row and a column of -inf: stays -inf
    values[1, 2, 3], values[2, 3, 1] = np.inf, np.nan
    x = tf.placeholder(dtype, [3, 4, 5], name="x")
    got, _, exe = both([tf.reduce_logsumexp(x * 2.0, axes, keepdims=keepdims)], {x: values})
    with np.errstate(all="ignore"):
        want = logsumexp(values * 2, axis=axes, keepdims=keepdims).astype(dtype.np_dtype)
    assert_same(got, [want], rtol=1e-5 if dtype == tf.float32 else 1e-12)
    assert generated(exe, KERNELS)
