"""tf.cond, tf.while_loop, tf.case, map_fn/scan/foldl/foldr: results against NumPy, nested
structures, captures and variables, build-time errors, gradients (first and second order),
the IR text of sub-graphs, passes inside loop bodies, and both backends."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.compat.cond_while import BodyGraph
from tfjit.ir import parse_graph, print_graph
from tfjit.ir.graph import Graph as IRGraph
from tfjit.ir.verifier import verify
from tfjit.passes.manager import optimize
from tfjit.testing import check_gradients

Pair = collections.namedtuple("Pair", ["a", "b"])


def rng(seed=0):
    return np.random.default_rng(seed)


def run(fetches, feed=None, init=False):
    with tf.Session() as sess:
        if init:
            sess.run(tf.global_variables_initializer())
        return sess.run(fetches, feed_dict=feed)


def node_of(tensor):
    return tensor.op.node


# -- cond ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
def test_cond_takes_each_branch_on_the_predicate_fed_at_run_time(dtype):
    x = tf.placeholder(tf.as_dtype(dtype), [None, 3])
    p = tf.placeholder(tf.bool, [])
    y = tf.cond(p, lambda: x * 2, lambda: x - 1)
    data = rng().integers(-5, 5, size=(4, 3)).astype(dtype)
    assert y.dtype == tf.as_dtype(dtype) and y.shape.as_list() == [None, 3]
    np.testing.assert_array_equal(run(y, {x: data, p: True}), data * 2)
    np.testing.assert_array_equal(run(y, {x: data, p: False}), data - 1)


def test_cond_returns_nested_structures_and_captures_outer_tensors():
    x = tf.placeholder(tf.float32, [2])
    w = tf.constant([3.0, 4.0])
    out = tf.cond(tf.reduce_sum(x) > 0,
                  lambda: {"s": x + w, "t": Pair(x * w, [tf.reduce_max(x)])},
                  lambda: {"s": x - w, "t": Pair(x / w, [tf.reduce_min(x)])})
    assert isinstance(out["t"], Pair) and isinstance(out["t"].b, list)
    data = np.array([1.0, 2.0], np.float32)
    s, a, (b,) = run([out["s"], out["t"].a, out["t"].b], {x: data})
    np.testing.assert_allclose(s, data + [3, 4])
    np.testing.assert_allclose(a, data * [3, 4])
    assert b == 2.0
    s = run(out["s"], {x: -data})
    np.testing.assert_allclose(s, -data - [3, 4])
    node = node_of(out["s"])
    assert node.op == "cond" and len(node.inputs) == 2  # the predicate and x (w is copied in)


def test_cond_merges_shapes_the_branches_disagree_on():
    x = tf.placeholder(tf.float32, [2, 3])
    y = tf.cond(tf.constant(True), lambda: x, lambda: tf.transpose(x))
    assert y.shape.as_list() == [None, None]
    np.testing.assert_array_equal(run(y, {x: np.ones((2, 3))}), np.ones((2, 3)))


def test_cond_reads_and_assigns_variables_inside_branches():
    v = tf.Variable(1.0)
    p = tf.placeholder(tf.bool, [])
    out = tf.cond(p, lambda: v.assign(v * 10.0), lambda: v + 0.5)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(out, {p: False}) == 1.5
        assert sess.run(v) == 1.0
        assert sess.run(out, {p: True}) == 10.0
        assert sess.run(v) == 10.0


def test_cond_in_cond_captures_through_both_levels():
    x = tf.placeholder(tf.float32, [])
    y = tf.cond(x > 0, lambda: tf.cond(x > 10, lambda: x * 100, lambda: x * 10), lambda: -x)
    assert [run(y, {x: v}) for v in (20.0, 2.0, -3.0)] == [2000.0, 20.0, 3.0]


def test_cond_errors_follow_tf():
    x = tf.constant(1.0)
    with pytest.raises(TypeError, match="pred must not be a Python bool"):
        tf.cond(True, lambda: x, lambda: x)
    with pytest.raises(ValueError, match="same number, type, and overall structure"):
        tf.cond(x > 0, lambda: (x, x), lambda: x)
    with pytest.raises(TypeError, match="true_fn returns float32 .* false_fn returns int32"):
        tf.cond(x > 0, lambda: x, lambda: tf.constant(1))
    with pytest.raises(ValueError, match="pred must be a bool scalar, got bool\\[2\\]"):
        tf.cond(tf.constant([True, False]), lambda: x, lambda: x)


def test_tensor_as_bool_inside_a_branch_points_to_tf_cond():
    x = tf.placeholder(tf.float32, [])
    with pytest.raises(TypeError, match="tfjit.cond"):
        tf.cond(x > 0, lambda: x if x > 1 else -x, lambda: x)


# -- case ----------------------------------------------------------------------------------------
def test_case_picks_the_first_true_predicate_else_the_default():
    x = tf.placeholder(tf.int32, [])
    y = tf.case([(tf.less(x, 0), lambda: tf.constant(-1)), (tf.equal(x, 0), lambda: tf.constant(0))],
                default=lambda: x * 10)
    assert [run(y, {x: v}) for v in (-5, 0, 7)] == [-1, 0, 70]
    z = tf.case([(x > 0, lambda: tf.constant(1.0)), (x <= 0, lambda: tf.constant(2.0))])
    assert [run(z, {x: v}) for v in (3, -3)] == [1.0, 2.0]


# -- while_loop ----------------------------------------------------------------------------------
def test_while_loop_counts_and_sums_like_numpy():
    x = tf.placeholder(tf.float64, [None])
    n = tf.placeholder(tf.int32, [])
    i, total = tf.while_loop(lambda i, t: i < n, lambda i, t: (i + 1, t * 0.5 + x), [tf.constant(0), tf.zeros_like(x)])
    data = rng().standard_normal(5)
    expected = np.zeros(5)
    for _ in range(7):
        expected = expected * 0.5 + data
    got_i, got = run([i, total], {x: data, n: 7})
    assert got_i == 7 and total.shape.as_list() == [None]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert run(i, {x: data, n: 0}) == 0


def test_while_loop_single_variable_and_maximum_iterations():
    y = tf.while_loop(lambda v: v < 1000, lambda v: v * 2, tf.constant(1))
    assert run(y) == 1024
    capped = tf.while_loop(lambda v: v < 1000, lambda v: v * 2, [tf.constant(1)], maximum_iterations=3)
    assert run(capped) == 8
    limit = tf.placeholder(tf.int32, [])
    dynamic = tf.while_loop(lambda v: True, lambda v: v + 3, [tf.constant(0)], maximum_iterations=limit)
    assert run(dynamic, {limit: 5}) == 15


def test_while_loop_with_namedtuple_and_nested_loop_vars():
    def body(i, state, acc):
        return i + 1, Pair(state.b, state.a + state.b), [acc[0] + state.a]

    i, fib, (acc,) = tf.while_loop(lambda i, s, a: i < 10, body,
                                   (tf.constant(0), Pair(tf.constant(0), tf.constant(1)), [tf.constant(0)]))
    a, b = 0, 1
    total = 0
    for _ in range(10):
        total += a
        a, b = b, a + b
    assert isinstance(fib, Pair)
    assert run([i, fib.a, fib.b, acc]) == [10, a, b, total]


def test_nested_while_loops_multiply_like_numpy():
    m = tf.placeholder(tf.int32, [])

    def outer(i, total):
        _, inner = tf.while_loop(lambda j, s: j < i, lambda j, s: (j + 1, s + j * m), [0, 0])
        return i + 1, total + inner

    _, total = tf.while_loop(lambda i, t: i < 5, outer, [0, 0])
    expected = sum(j * 3 for i in range(5) for j in range(i))
    assert run(total, {m: 3}) == expected


def test_shape_invariants_let_a_loop_variable_grow():
    n = tf.placeholder(tf.int32, [])
    _, grown = tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, tf.concat([v, [tf.cast(i, tf.float32)]], 0)),
                             [tf.constant(0), tf.zeros([1])],
                             shape_invariants=[tf.TensorShape([]), tf.TensorShape([None])])
    assert grown.shape.as_list() == [None]
    np.testing.assert_array_equal(run(grown, {n: 4}), [0, 0, 1, 2, 3])


def test_a_loop_variable_changing_shape_without_an_invariant_is_tfs_error():
    with pytest.raises(ValueError, match=r"enters the loop with shape \(1,\), but has shape \(2,\) after one "
                                         r"iteration.*shape_invariants"):
        tf.while_loop(lambda v: tf.size(v) < 5, lambda v: tf.concat([v, v], 0), [tf.zeros([1])])
    with pytest.raises(ValueError, match="not compatible with the initial shape"):
        tf.while_loop(lambda v: True, lambda v: v, [tf.zeros([2])], shape_invariants=[tf.TensorShape([3])])
    with pytest.raises(TypeError, match="enters the loop with type int32, but has type float32"):
        tf.while_loop(lambda v: v < 3, lambda v: tf.cast(v, tf.float32), [tf.constant(0)])


def test_while_body_assigns_a_variable_every_iteration():
    v = tf.Variable(0.0)
    n = tf.while_loop(lambda i: i < 4, lambda i: tf.tuple([i + 1], control_inputs=[v.assign_add(2.0)])[0], [0])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(n) == 4
        assert sess.run(v) == 8.0


def test_variables_created_inside_a_body_live_outside_it():
    x = tf.placeholder(tf.float32, [2, 3])

    def body(i, h):
        with tf.variable_scope("cell", reuse=tf.AUTO_REUSE):
            w = tf.get_variable("w", [3, 3], initializer=tf.constant_initializer(0.1))
        return i + 1, tf.tanh(tf.matmul(h, w))

    _, h = tf.while_loop(lambda i, h: i < 3, body, [0, x])
    (w,) = tf.global_variables()
    assert w.op.name == "cell/w" and w.graph is tf.get_default_graph()
    data = rng().standard_normal((2, 3)).astype(np.float32)
    expected = data
    for _ in range(3):
        expected = np.tanh(expected @ np.full((3, 3), 0.1, np.float32))
    np.testing.assert_allclose(run(h, {x: data}, init=True), expected, rtol=1e-5)


def test_a_thousand_step_loop_is_traced_once():
    x = tf.placeholder(tf.float32, [None, 8])
    w_value = rng().standard_normal((8, 8)).astype(np.float32) * 0.1
    w = tf.constant(w_value)
    graph = tf.get_default_graph()
    for steps in (10, 1000):
        before = len(graph.nodes)
        _, h = tf.while_loop(lambda i, h: i < steps, lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w))), [0, x])
        with tf.Session() as sess:
            got = sess.run(h, {x: np.ones((2, 8))})
        loop = node_of(h)
        assert len(graph.nodes) - before == 2  # the counter's initial value and one while node
        assert len(loop.attr("body").nodes) <= 6  # the body is traced once, not once per step
        want = np.ones((2, 8), np.float32)
        for _ in range(steps):
            want = np.tanh(want @ w_value)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- map_fn, scan, foldl, foldr ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_map_fn_applies_fn_to_each_row(dtype):
    x = tf.placeholder(tf.as_dtype(dtype), [None, 3])
    y = tf.map_fn(lambda row: row * 2 + tf.reduce_sum(row), x)
    data = rng().integers(-4, 4, size=(5, 3)).astype(dtype)
    np.testing.assert_array_equal(run(y, {x: data}), data * 2 + data.sum(1, keepdims=True))
    assert run(y, {x: data[:0]}).shape == (0, 3)


def test_map_fn_with_nested_elems_and_dtype():
    a = tf.constant(np.arange(6.0).reshape(3, 2))
    b = tf.constant([1, 2, 3])
    y = tf.map_fn(lambda e: e[0] * tf.cast(e[1], tf.float64), (a, b), dtype=tf.float64)
    assert y.shape.as_list() == [3, 2]
    np.testing.assert_array_equal(run(y), np.arange(6.0).reshape(3, 2) * [[1], [2], [3]])
    with pytest.raises(TypeError, match="dtype says"):
        tf.map_fn(lambda e: e[0], (a, b), dtype=tf.int32)


def test_scan_foldl_foldr_match_numpy():
    data = rng().standard_normal((6, 2))
    x = tf.placeholder(tf.float64, [None, 2])
    sums = tf.scan(lambda acc, e: acc + e, x)
    decayed = tf.scan(lambda acc, e: acc * 0.5 + e, x, initializer=tf.zeros([2], tf.float64))
    backwards = tf.scan(lambda acc, e: acc + e, x, reverse=True)
    left = tf.foldl(lambda acc, e: acc * 2.0 + e, x)
    right = tf.foldr(lambda acc, e: acc * 2.0 + e, x, initializer=tf.ones([2], tf.float64))
    got = run([sums, decayed, backwards, left, right], {x: data})
    np.testing.assert_allclose(got[0], np.cumsum(data, 0))
    expected, acc = [], np.zeros(2)
    for row in data:
        acc = acc * 0.5 + row
        expected.append(acc)
    np.testing.assert_allclose(got[1], expected)
    np.testing.assert_allclose(got[2], np.cumsum(data[::-1], 0)[::-1])
    acc = data[0]
    for row in data[1:]:
        acc = acc * 2 + row
    np.testing.assert_allclose(got[3], acc)
    acc = np.ones(2)
    for row in data[::-1]:
        acc = acc * 2 + row
    np.testing.assert_allclose(got[4], acc)


def test_scan_over_a_tuple_state():
    x = tf.constant(np.arange(1.0, 5.0))
    out = tf.scan(lambda s, e: Pair(s.a + e, s.b * e), x, initializer=Pair(tf.constant(0.0, tf.float64),
                                                                        tf.constant(1.0, tf.float64)))
    a, b = run([out.a, out.b])
    np.testing.assert_allclose(a, np.cumsum(np.arange(1.0, 5.0)))
    np.testing.assert_allclose(b, np.cumprod(np.arange(1.0, 5.0)))


# -- gradients -----------------------------------------------------------------------------------
def test_cond_gradients_in_both_branches():
    def f(x, w):
        return tf.cond(tf.reduce_sum(x) > 1.5, lambda: x * w + tf.sin(w), lambda: tf.exp(x) * 3.0)

    check_gradients(f, [np.array([1.0, 0.9, 0.5]), rng().standard_normal(3)])
    check_gradients(f, [np.array([0.1, 0.2, 0.3]), rng().standard_normal(3)])


def test_while_gradients_first_and_second_order():
    def f(x, w):
        _, h = tf.while_loop(lambda i, h: i < 4, lambda i, h: (i + 1, tf.tanh(h * w) + x), [0, x])
        return h

    inputs = [rng(1).standard_normal(3), rng(2).standard_normal(3)]
    check_gradients(f, inputs)
    check_gradients(f, inputs, order=2)


def test_gradients_with_unknown_shapes_through_map_fn_scan_and_foldl():
    def f(x, w):
        mapped = tf.map_fn(lambda r: tf.tanh(r * w), x)
        summed = tf.scan(lambda a, r: a * w + r, mapped)
        return tf.foldl(lambda a, r: a + tf.reduce_sum(r * r), summed, initializer=tf.zeros([], x.dtype))

    check_gradients(f, [rng().standard_normal((4, 3)), rng(3).standard_normal(3)], static_shapes=False)


def test_gradient_of_a_variable_read_inside_a_loop_trains_it():
    w = tf.Variable(0.5, dtype=tf.float64)
    x = tf.placeholder(tf.float64, [])
    _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * w), [0, x])
    (g,) = tf.gradients(y, [w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(g, {x: 2.0}) == pytest.approx(3 * 2.0 * 0.5 ** 2)


def test_loop_gradient_reuses_the_forward_random_draws():
    x = tf.placeholder(tf.float64, [4])
    _, y = tf.while_loop(lambda i, y: i < 3,
                         lambda i, y: (i + 1, y * tf.random_uniform([4], dtype=tf.float64, seed=1)), [0, x])
    noise_product = y / x
    (g,) = tf.gradients(tf.reduce_sum(y), [x])
    got_y, got_g = run([noise_product, g], {x: np.ones(4)})
    np.testing.assert_allclose(got_g, got_y)


def test_gradient_of_a_loop_without_back_prop_says_so():
    x = tf.placeholder(tf.float32, [])
    _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * x), [0, x], back_prop=False)
    with pytest.raises(ValueError, match="back_prop=False"):
        tf.gradients(y, [x])


# -- IR: text, verifier, passes inside bodies, backends ------------------------------------------
def _program(outputs):
    graph = tf.get_default_graph()
    params = [n.out for n in graph.nodes if n.op == "placeholder"]
    return IRGraph("program", [], [n for n in graph.nodes], [t.value for t in outputs]), params


def test_ir_text_of_cond_and_while_round_trips_and_verifies():
    x = tf.placeholder(tf.float32, [3])
    y = tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: -x)
    _, z = tf.while_loop(lambda i, z: i < 3, lambda i, z: (i + 1, tf.cond(i > 1, lambda: z + y, lambda: z)), [0, y])
    (g,) = tf.gradients(tf.reduce_sum(z), [x])
    graph, _ = _program([z, g])
    text = print_graph(graph)
    assert "then_branch func @then(" in text and "body func @body(" in text and "cond func @cond(" in text
    parsed = parse_graph(text)
    assert print_graph(parsed) == text
    verify(parsed)
    verify(optimize(parsed))


def test_passes_run_inside_loop_bodies():
    x = tf.placeholder(tf.float32, [2])
    scale = tf.constant(2.0) * tf.constant(3.0)  # folded to a constant, then copied into the body
    _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, (y * (scale + 1.0)) + (y * (scale + 1.0))), [0, x],
                         back_prop=False)
    body = node_of(y).attr("body")
    assert [n.op for n in body.nodes].count("multiply") == 2
    optimised = optimize(IRGraph("p", [], tf.get_default_graph().nodes, [y.value]))
    (loop,) = [n for n in optimised.nodes if n.op == "while"]
    ops = [n.op for n in loop.attr("body").nodes]
    assert ops.count("multiply") == 1 and "constant" in ops  # folded (scale + 1) and merged twins
    np.testing.assert_allclose(run(y, {x: [1.0, 2.0]}), np.array([1.0, 2.0]) * 14 ** 3)


def test_unused_per_iteration_values_are_dropped_by_the_passes():
    x = tf.placeholder(tf.float32, [2])
    _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), [0, x])
    assert len(node_of(y).outputs) == 4  # the loop variables, and their per-iteration values
    optimised = optimize(IRGraph("p", [], tf.get_default_graph().nodes, [y.value]))
    (loop,) = [n for n in optimised.nodes if n.op == "while"]
    assert len(loop.outputs) == 2


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_control_flow_runs_on_both_backends(backend):
    config.set_backend(backend)
    try:
        x = tf.placeholder(tf.float32, [None, 3])
        y = tf.cond(tf.reduce_sum(x) > 0, lambda: tf.exp(x) * 2.0 + 1.0, lambda: x)
        _, z = tf.while_loop(lambda i, z: i < 5, lambda i, z: (i + 1, tf.tanh(z) * 0.5 + y), [0, y])
        (g,) = tf.gradients(tf.reduce_sum(z), [x])
        data = rng().standard_normal((2, 3)).astype(np.float32) ** 2
        got_z, got_g = run([z, g], {x: data})
    finally:
        config.set_backend("reference")
    yy = np.exp(data) * 2 + 1
    zz = yy
    for _ in range(5):
        zz = np.tanh(zz) * 0.5 + yy
    np.testing.assert_allclose(got_z, zz, rtol=1e-5)
    assert got_g.shape == (2, 3) and np.all(np.isfinite(got_g))


def test_body_graphs_capture_each_outer_value_once():
    x = tf.placeholder(tf.float32, [])
    seen = []

    def branch():
        seen.append(tf.get_default_graph())
        return x * x + x

    y = tf.cond(x > 0, branch, lambda: x)
    assert isinstance(seen[0], BodyGraph) and seen[0].captures == [x]
    assert len(node_of(y).inputs) == 2
