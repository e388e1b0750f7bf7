"""`tf.gradients` and friends: the driver's behaviour, TF's conventions, higher orders.

Per-op gradient checks live in test_autodiff_ops.py; here: the lecture's model against its
analytic gradient, accumulation, unconnected and stopped gradients, names and source lines,
custom gradients, Hessians, gradient penalties and gradients inside `@tfjit.function`.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import tfjit
import tfjit as tf
from tfjit.autodiff import backward_ops
from tfjit.errors import GraphError
from tfjit.ops.registry import REGISTRY


def rng(seed=0):
    return np.random.default_rng(seed)


def run(fetches, feed=None, init=False):
    with tf.Session() as sess:
        if init:
            sess.run(tf.global_variables_initializer())
        return sess.run(fetches, feed_dict=feed)


def line_of(marker: str) -> int:
    """The line of this file holding `marker` (so tests do not hard-code line numbers)."""
    lines = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    return next(i for i, text in enumerate(lines, start=1) if marker in text and "line_of(" not in text)


# -- the lecture's model -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_lecture_model_gradients_equal_the_numpy_analytic_gradient(dtype, rtol):
    r = rng(1)
    xv, dv = r.standard_normal((16, 8)).astype(dtype), r.random((16, 3)).astype(dtype)
    w0, b0 = (0.3 * r.standard_normal((8, 3))).astype(dtype), (0.1 * r.standard_normal(3)).astype(dtype)
    x = tf.placeholder(dtype, shape=[None, 8])
    d = tf.placeholder(dtype, shape=[None, 3])
    W, b = tf.Variable(w0), tf.Variable(b0)
    y = tf.nn.sigmoid(tf.matmul(x, W) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    gW, gb = tf.gradients(loss, [W, b])
    got_w, got_b = run([gW, gb], {x: xv, d: dv}, init=True)

    x64, d64 = xv.astype(np.float64), dv.astype(np.float64)
    yv = 1 / (1 + np.exp(-(x64 @ w0.astype(np.float64) + b0)))
    dz = 2 * (yv - d64) / yv.size * yv * (1 - yv)
    np.testing.assert_allclose(got_w, x64.T @ dz, rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(got_b, dz.sum(axis=0), rtol=rtol, atol=rtol * 1e-3)
    assert got_w.dtype == dtype and got_b.dtype == dtype


def test_gradients_are_graph_nodes_under_the_gradients_scope_with_forward_lines():
    x = tf.placeholder(tf.float64, [3], name="x")
    h = tf.sin(x) * x  # forward-line
    loss = tf.reduce_sum(h)  # loss-line
    before = len(tf.get_default_graph().nodes)
    (g,) = tf.gradients(loss, x)
    (g2,) = tf.gradients(loss, x)
    nodes = tf.get_default_graph().nodes[before:]
    assert g.name.startswith("gradients/") and g2.name.startswith("gradients_1/")
    assert all(n.name.startswith(("gradients/", "gradients_1/")) for n in nodes)
    lines = {n.name: n.loc.line for n in nodes}
    assert lines["gradients/Sum_grad/Unreduce"] == line_of("# loss-line")
    assert lines["gradients/Mul_grad/Mul"] == line_of("# forward-line")
    assert lines["gradients/Sin_grad/Mul"] == line_of("# forward-line")


# -- accumulation, connection, stopping ----------------------------------------------------------
def test_a_value_used_twice_gets_both_contributions():
    xv = np.array([0.5, -1.0, 2.0])
    x = tf.placeholder(tf.float64, [3])
    y = x * x + tf.sin(x) + x
    (g,) = tf.gradients(y, x)
    np.testing.assert_allclose(run(g, {x: xv}), 2 * xv + np.cos(xv) + 1, rtol=1e-14)


def test_several_ys_are_summed_and_grad_ys_weights_them():
    xv = np.array([1.0, 2.0])
    x = tf.placeholder(tf.float64, [2])
    (g,) = tf.gradients([x * 3.0, tf.square(x)], x)
    (w,) = tf.gradients(tf.square(x), x, grad_ys=np.array([10.0, -1.0]))
    got_g, got_w = run([g, w], {x: xv})
    np.testing.assert_allclose(got_g, 3 + 2 * xv)
    np.testing.assert_allclose(got_w, np.array([10.0, -1.0]) * 2 * xv)


def test_unconnected_x_gives_none_or_zeros():
    x = tf.placeholder(tf.float64, [2, 3])
    z = tf.placeholder(tf.float32, [None, 4])
    y = tf.reduce_sum(tf.exp(x))
    assert tf.gradients(y, [x, z])[1] is None
    gx, gz = tf.gradients(y, [x, z], unconnected_gradients="zero")
    gz2 = tf.gradients(y, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)[0]
    zv = np.ones((5, 4), np.float32)
    got = run([gz, gz2], {x: np.zeros((2, 3)), z: zv})
    for value in got:
        assert value.dtype == np.float32 and value.shape == (5, 4) and not value.any()


def test_integer_and_bool_inputs_get_no_gradient():
    i = tf.placeholder(tf.int32, [3])
    x = tf.placeholder(tf.float64, [3])
    through_int = tf.cast(tf.cast(x, tf.int32), tf.float64)
    y = tf.reduce_sum(tf.cast(i, tf.float64) * x + tf.cast(x > 0, tf.float64) + through_int)
    gi, gx = tf.gradients(y, [i, x])
    assert gi is None
    np.testing.assert_array_equal(run(gx, {i: [1, 2, 3], x: [0.5, 1.5, -2.0]}), [1.0, 2.0, 3.0])


def test_stop_gradient_op_blocks_the_path():
    xv = np.array([1.0, 3.0])
    x = tf.placeholder(tf.float64, [2])
    (g,) = tf.gradients(tf.stop_gradient(x) * x, x)
    assert tf.gradients(tf.stop_gradient(x) * 2.0, x) == [None]
    np.testing.assert_allclose(run(g, {x: xv}), xv)


def test_stop_gradients_argument_treats_values_as_constants():
    a = tf.constant(0.0)
    b = 2 * a
    ga, gb = tf.gradients(a + b, [a, b], stop_gradients=[a, b])
    assert run([ga, gb]) == [1.0, 1.0]  # TF's documented example
    x = tf.placeholder(tf.float64, [])
    h = tf.square(x)
    (g,) = tf.gradients(h + 3.0 * x, x, stop_gradients=[h])
    assert run(g, {x: 5.0}) == 3.0


def test_gradient_with_respect_to_an_intermediate_and_an_input():
    x = tf.placeholder(tf.float64, [])
    h = tf.exp(x)
    y = h * h
    gx, gh = tf.gradients(y, [x, h])
    got_x, got_h = run([gx, gh], {x: 0.5})
    np.testing.assert_allclose(got_h, 2 * np.exp(0.5))
    np.testing.assert_allclose(got_x, 2 * np.exp(1.0))


# -- TF's conventions at kinks and special points ------------------------------------------------
def test_maximum_and_minimum_ties_go_to_x_relu_and_abs_at_zero_give_zero():
    x = tf.constant([1.0, 2.0, 0.0])
    y = tf.constant([1.0, 1.0, 0.0])
    gx_max, gy_max = tf.gradients(tf.maximum(x, y), [x, y])
    gx_min, gy_min = tf.gradients(tf.minimum(x, y), [x, y])
    relu0, abs0 = tf.gradients(tf.nn.relu(x) + tf.abs(y), [x, y])
    got = run([gx_max, gy_max, gx_min, gy_min, relu0, abs0])
    np.testing.assert_array_equal(got[0], [1, 1, 1])
    np.testing.assert_array_equal(got[1], [0, 0, 0])
    np.testing.assert_array_equal(got[2], [1, 0, 1])
    np.testing.assert_array_equal(got[3], [0, 1, 0])
    np.testing.assert_array_equal(got[4], [1, 1, 0])
    np.testing.assert_array_equal(got[5], [1, 1, 0])


def test_reduce_max_shares_the_gradient_among_ties():
    x = tf.constant([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    (g,) = tf.gradients(tf.reduce_max(x, axis=1), x)
    np.testing.assert_allclose(run(g), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_pow_with_zero_base_has_finite_gradients():
    x = tf.constant([0.0, 0.0, 2.0])
    y = tf.constant([2.0, 3.0, 0.5])
    gx, gy = tf.gradients(tf.pow(x, y), [x, y])
    got_x, got_y = run([gx, gy])
    np.testing.assert_allclose(got_x, [0.0, 0.0, 0.5 * 2.0 ** -0.5])
    np.testing.assert_allclose(got_y, [0.0, 0.0, 2.0 ** 0.5 * np.log(2.0)])


def test_prod_gradient_is_exact_with_zeros():
    xv = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 4.0, -2.0]])
    x = tf.placeholder(tf.float64, [3, 3])
    (g,) = tf.gradients(tf.reduce_prod(x, axis=1), x)
    expected = [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [-8.0, -2.0, 4.0]]
    np.testing.assert_array_equal(run(g, {x: xv}), expected)


def test_legacy_softmax_cross_entropy_gives_labels_no_gradient_v2_does():
    logits = tf.constant([[1.0, 2.0, 0.5]])
    labels = tf.constant([[0.2, 0.7, 0.1]])
    legacy = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    v2 = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
    assert tf.gradients(legacy, labels) == [None]
    gl, gy = tf.gradients(v2, [logits, labels])
    got_l, got_y = run([gl, gy])
    z = np.array([[1.0, 2.0, 0.5]])
    soft = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(got_l, soft - [[0.2, 0.7, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(got_y, -np.log(soft), rtol=1e-6)


# -- broadcasting is undone once, statically when the shapes allow -----------------------------
def _ops_added(build):
    graph = tf.get_default_graph()
    before = len(graph.nodes)
    build()
    return [n.op for n in graph.nodes[before:]]


def test_broadcast_reduction_is_static_when_shapes_tell_and_dynamic_otherwise():
    x = tf.placeholder(tf.float32, [None, 3])
    b = tf.placeholder(tf.float32, [3])
    y = tf.placeholder(tf.float32, [None, 3])
    assert "sum_to_shape" not in _ops_added(lambda: tf.gradients(x + b, [x, b]))
    assert "sum_to_shape" in _ops_added(lambda: tf.gradients(x + y, [x, y]))
    assert "sum_to_shape" not in _ops_added(lambda: tf.gradients(tf.nn.relu(x), x))
    gy, = tf.gradients(x + y, y)
    xv, yv = np.ones((4, 3), np.float32), np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(run(gy, {x: xv, y: yv}), [[4.0, 4.0, 4.0]])


# -- errors --------------------------------------------------------------------------------------
def test_missing_rule_names_the_op_and_its_line(monkeypatch):
    monkeypatch.setattr(REGISTRY["sin"], "grad", None)
    x = tf.placeholder(tf.float32, [2])
    y = tf.sin(x)  # sin-line
    message = rf"No gradient defined for op `sin` at .*test_autodiff.py:{line_of('# sin-line')}"
    with pytest.raises(LookupError, match=message):
        tf.gradients(y, x)


def test_bad_arguments_are_reported():
    x = tf.placeholder(tf.float32, [2])
    with pytest.raises(ValueError, match="got 2 grad_ys for 1 ys"):
        tf.gradients(x * 2.0, x, grad_ys=[x, x])
    with pytest.raises(TypeError, match="grad_ys\\[0\\] has dtype float64"):
        tf.gradients(x * 2.0, x, grad_ys=[tf.constant([1.0, 1.0], tf.float64)])
    with pytest.raises(TypeError, match="must be a Tensor or Variable"):
        tf.gradients(x * 2.0, [np.ones(2)])
    with tf.Graph().as_default():
        other = tf.placeholder(tf.float32, [2])
    with pytest.raises(ValueError, match="different graph"):
        tf.gradients(x * 2.0, other)


def test_gradient_only_ops_reject_shapes_they_cannot_undo():
    g = tf.placeholder(tf.float32, [2, 3])
    with pytest.raises(GraphError, match=r"op `sum_to_shape`.*f32\[4\] does not broadcast to it"):
        backward_ops.sum_to_shape(g, tf.placeholder(tf.float32, [4]))
    with pytest.raises(GraphError, match=r"op `unreduce`.*f32\[2,3\] is not a reduction of f32\[2,3,4\]"):
        backward_ops.unreduce(g, tf.placeholder(tf.float32, [2, 3, 4]), (0, 1), False)


# -- higher order --------------------------------------------------------------------------------
def test_nested_gradients_give_higher_derivatives():
    x = tf.placeholder(tf.float64, [4])
    d1 = tf.gradients(tf.sin(x), x)[0]
    d2 = tf.gradients(d1, x)[0]
    d3 = tf.gradients(d2, x)[0]
    xv = np.array([0.1, 1.0, -2.0, 3.0])
    got = run([d1, d2, d3], {x: xv})
    np.testing.assert_allclose(got, [np.cos(xv), -np.sin(xv), -np.cos(xv)], rtol=1e-14)


def test_hessians_of_a_quadratic_form():
    a = rng(2).standard_normal((3, 3))
    x = tf.placeholder(tf.float64, [3])
    y = tf.reduce_sum(x * tf.matmul(tf.constant(a), tf.reshape(x, [3, 1]))[:, 0])
    (h,) = tf.hessians(y, x)
    np.testing.assert_allclose(run(h, {x: np.ones(3)}), a + a.T, rtol=1e-14)
    assert tf.hessians(y, tf.placeholder(tf.float64, [2])) == [None]


def _mlp_loss(w1, w2, x, t):
    h = tf.tanh(tf.matmul(x, w1))
    return tf.reduce_mean(tf.square(tf.matmul(h, w2) - t))


def test_hessian_vector_product_of_an_mlp_loss_matches_finite_differences():
    r = rng(3)
    xv, tv = r.standard_normal((5, 4)), r.standard_normal((5, 2))
    w1v, w2v = r.standard_normal((4, 3)), r.standard_normal((3, 2))
    v1, v2 = r.standard_normal((4, 3)), r.standard_normal((3, 2))
    w1, w2 = tf.placeholder(tf.float64, [4, 3]), tf.placeholder(tf.float64, [3, 2])
    loss = _mlp_loss(w1, w2, tf.constant(xv), tf.constant(tv))
    g1, g2 = tf.gradients(loss, [w1, w2])
    dot = tf.reduce_sum(g1 * tf.constant(v1)) + tf.reduce_sum(g2 * tf.constant(v2))
    hv1, hv2 = tf.gradients(dot, [w1, w2])
    with tf.Session() as sess:
        got = sess.run([hv1, hv2], {w1: w1v, w2: w2v})
        h = 1e-4
        plus = sess.run([g1, g2], {w1: w1v + h * v1, w2: w2v + h * v2})
        minus = sess.run([g1, g2], {w1: w1v - h * v1, w2: w2v - h * v2})
    for hv, p, m in zip(got, plus, minus):
        np.testing.assert_allclose(hv, (p - m) / (2 * h), rtol=1e-6, atol=1e-9)


def test_gradient_penalty_gradient_of_a_gradient_norm():
    r = rng(4)

    def penalty(w, x):
        (gx,) = tf.gradients(tf.reduce_sum(tf.nn.softplus(tf.matmul(x, w))), x)
        return tf.square(tf.sqrt(tf.reduce_sum(tf.square(gx))) - 1.0)

    assert tf.test.check_gradients(penalty, [r.standard_normal((3, 2)), r.standard_normal((4, 3))]) < 1e-6


# -- custom gradients ----------------------------------------------------------------------------
def test_custom_gradient_replaces_the_gradient_of_its_body():
    @tf.custom_gradient
    def log1pexp(x):
        e = tf.exp(x)

        def grad(dy):
            return dy * (1 - 1 / (1 + e))
        return tf.log(1 + e), grad

    x = tf.placeholder(tf.float32, [2])
    (g,) = tf.gradients(log1pexp(x), x)
    got = run(g, {x: [0.0, 100.0]})
    np.testing.assert_allclose(got, [0.5, 1.0])  # the body's own gradient would be NaN at 100


def test_custom_gradient_with_several_inputs_and_a_variable():
    w = tf.Variable(np.array([2.0, 3.0]))

    @tf.custom_gradient
    def scaled(x, y):
        def grad(dy, variables=None):
            return [dy * 10.0, dy * 20.0], [dy * 30.0]
        return x * y * w, grad

    x, y = tf.constant([1.0, 1.0], tf.float64), tf.constant([1.0, 2.0], tf.float64)
    out = scaled(x, y)
    gx, gy, gw = tf.gradients(out, [x, y, w])
    got = run([out, gx, gy, gw], init=True)
    np.testing.assert_allclose(got[0], [2.0, 6.0])
    np.testing.assert_allclose(got[1:], [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])


def test_custom_gradient_using_variables_needs_a_variables_argument():
    w = tf.Variable(1.0)

    @tf.custom_gradient
    def f(x):
        return x * w, lambda dy: dy

    with pytest.raises(TypeError, match="keyword argument 'variables'"):
        f(tf.constant(2.0))


# -- inside @tfjit.function ----------------------------------------------------------------------
def test_gradients_inside_a_traced_function():
    @tfjit.function
    def loss_and_grads(x, w):
        loss = tf.reduce_sum(tf.tanh(tf.matmul(x, w)))
        return loss, tf.gradients(loss, w)[0]

    r = rng(5)
    xv, wv = r.standard_normal((4, 3)), r.standard_normal((3, 2))
    loss, gw = loss_and_grads(xv, wv)
    np.testing.assert_allclose(loss, np.tanh(xv @ wv).sum(), rtol=1e-12)
    np.testing.assert_allclose(gw, xv.T @ (1 - np.tanh(xv @ wv) ** 2), rtol=1e-12)


def test_a_training_step_as_a_traced_function_updates_a_variable():
    w0 = np.array([[1.0], [-1.0]])
    w = tf.Variable(w0)
    r = rng(6)
    xv, tv = r.standard_normal((8, 2)), r.standard_normal((8, 1))

    @tfjit.function
    def step(x, t):
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - t))
        (g,) = tf.gradients(loss, w)
        return w.assign_sub(0.1 * g)

    with tf.Session() as sess:
        sess.run(w.initializer)
        step(xv, tv)
        got = sess.run(w)
    expected = w0 - 0.1 * (2 / 8) * xv.T @ (xv @ w0 - tv)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_colocate_gradients_with_ops_places_backward_nodes_with_their_forward_nodes():
    x = tf.placeholder(tf.float32, [3])
    with tf.device("/gpu:0"):
        y = tf.exp(x)
    before = len(tf.get_default_graph().nodes)
    tf.gradients(tf.reduce_sum(y), x, colocate_gradients_with_ops=True)
    exp_grads = [n for n in tf.get_default_graph().nodes[before:] if n.name.startswith("gradients/Exp_grad/")]
    assert exp_grads and all(n.device == y.op.node.device for n in exp_grads)


# -- the gradient checker itself -----------------------------------------------------------------
def _square_with(grad_fn):
    def fn(x):
        @tf.custom_gradient
        def square(v):
            return v * v, lambda dy: grad_fn(dy, v)
        return square(x)
    return fn


def test_check_gradients_catches_wrong_first_and_second_derivatives():
    x = [rng(7).standard_normal((2, 3))]
    with pytest.raises(AssertionError, match=r"gradient check failed for input 0 \(float64\[2, 3\]\)"):
        tf.test.check_gradients(_square_with(lambda dy, v: dy * 2.01 * v), x)
    first_only = _square_with(lambda dy, v: dy * 2.0 * tf.stop_gradient(v))
    assert tf.test.check_gradients(first_only, x) < 1e-6
    with pytest.raises(AssertionError, match="gradient check failed"):
        tf.test.check_gradients(first_only, x, order=2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_check_gradients_tolerances_follow_the_dtype(dtype):
    r = rng(8)
    inputs = [r.standard_normal((4, 3)).astype(dtype), (0.5 * r.standard_normal((3, 2))).astype(dtype)]
    error = tf.test.check_gradients(lambda x, w: tf.nn.softmax(tf.tanh(tf.matmul(x, w))), inputs)
    assert error < tf.test.RTOL[np.dtype(dtype).name]
