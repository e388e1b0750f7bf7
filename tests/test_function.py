"""`@tfjit.function`: tracing per signature, retrace reports, input signatures, variables."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import tfjit
import tfjit as tf
from tfjit.ir import parse_graph, print_graph
from tfjit.ir.verifier import verify


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_function_computes_the_same_numbers_as_numpy():
    @tfjit.function
    def dense(x, w, b):
        return tf.nn.relu(x @ w + b)

    x, w, b = f32(5, 3), f32(3, 2, seed=1), f32(2, seed=2)
    np.testing.assert_allclose(dense(x, w, b), np.maximum(x @ w + b, 0), rtol=1e-6)


def test_nested_outputs_and_keyword_arguments():
    @tfjit.function
    def stats(x, *, axis=0):
        return {"mean": tf.reduce_mean(x, axis=axis), "both": (tf.reduce_max(x), tf.reduce_min(x))}

    x = f32(4, 3)
    out = stats(x, axis=1)
    np.testing.assert_allclose(out["mean"], x.mean(axis=1), rtol=1e-6)
    assert out["both"][0] == x.max() and out["both"][1] == x.min()


def test_one_trace_per_signature_and_a_report_of_why_it_retraced(caplog):
    @tfjit.function
    def scale(x, factor):
        return x * factor

    with caplog.at_level(logging.INFO, logger="tfjit"):
        scale(f32(32, 784), 2.0)
        scale(f32(32, 784, seed=1), 2.0)
        assert scale.experimental_get_tracing_count() == 1
        scale(f32(64, 784), 2.0)
        scale(f32(64, 784), 3.0)
    assert scale.experimental_get_tracing_count() == 3
    assert scale.retrace_reasons == [
        "retraced `scale` because argument `x` changed from f32[32,784] to f32[64,784]",
        "retraced `scale` because argument `factor` changed from Python value 2.0 to Python value 3.0",
    ]
    assert scale.retrace_reasons[0] in caplog.text


def test_calls_of_plain_arrays_find_their_trace_by_dtype_and_shape_and_still_report_retraces():
    """Such calls skip binding the arguments (Function._arrays_key); alternating signatures,
    dtypes, array subclasses and defaults must still find the right trace and retrace reasons."""
    @tfjit.function
    def shift(x, y):
        return x + y * 2.0

    a, b = f32(3, 4), f32(3, 4, seed=1)
    for _ in range(2):
        np.testing.assert_allclose(shift(a, b), a + b * 2, rtol=1e-6)
        np.testing.assert_allclose(shift(a[:2], b[:2]), a[:2] + b[:2] * 2, rtol=1e-6)
    assert shift.experimental_get_tracing_count() == 2
    wide = shift(a.astype(np.float64), b.astype(np.float64))
    assert wide.dtype == np.float64 and shift.experimental_get_tracing_count() == 3
    shift(a[:2], b[:2])  # known: no retrace ...
    shift(f32(5, 4), f32(5, 4))  # ... so this one is reported as changed from the call before it
    assert shift.retrace_reasons[-1] == "retraced `shift` because argument `x` changed from f32[2,4] to f32[5,4]; " \
                                        "argument `y` changed from f32[2,4] to f32[5,4]"
    class Sub(np.ndarray):
        pass

    np.testing.assert_allclose(shift(a.view(Sub), b), a + b * 2, rtol=1e-6)  # a subclass: the slow path
    assert shift.experimental_get_tracing_count() == 4

    @tfjit.function
    def scaled(x, factor=3.0):
        return x * factor

    np.testing.assert_allclose(scaled(a), a * 3, rtol=1e-6)
    np.testing.assert_allclose(scaled(a, 2.0), a * 2, rtol=1e-6)
    np.testing.assert_allclose(scaled(a), a * 3, rtol=1e-6)
    assert scaled.experimental_get_tracing_count() == 2


def test_repeated_retraces_warn_naming_the_argument_and_caller_line():
    @tfjit.function
    def square(x):
        return x * x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 7):
            square(np.ones(n, np.float32))
    messages = [str(w.message) for w in caught]
    assert messages, "expected a retrace warning"
    assert "argument `x` changed from f32[4] to f32[5]" in messages[0]
    assert "test_function.py" in messages[0] and "input_signature" in messages[0]


def test_input_signature_gives_one_trace_for_every_batch_size():
    @tfjit.function(input_signature=[tfjit.TensorSpec([None, 784], tfjit.float32)])
    def logits(x):
        return tf.reduce_sum(x, axis=1)

    for batch in (1, 5, 17):
        x = f32(batch, 784)
        np.testing.assert_allclose(logits(x), x.sum(axis=1), rtol=1e-5)
    assert logits.experimental_get_tracing_count() == 1
    assert logits.graph_for(f32(2, 784)).params[0].type.shape == (None, 784)
    with pytest.raises(TypeError, match=r"argument `x` is f32\[2,5\].*f32\[\?,784\]"):
        logits(f32(2, 5))


def test_graph_for_prints_round_trips_and_verifies():
    @tfjit.function
    def loss(x, d):
        y = tf.nn.sigmoid(x)
        return tf.reduce_mean(tf.square(y - d))

    g = loss.graph_for(f32(3, 4), f32(3, 4))
    text = print_graph(g)
    assert text.startswith("func @loss(%0: f32[3,4] {name=\"x\"")
    assert "test_function.py" in text
    assert print_graph(parse_graph(text)) == text
    verify(g)


def test_tensor_as_python_bool_inside_function_names_line_and_cond():
    @tfjit.function
    def branchy(x):
        if x > 0:  # data-dependent Python control flow cannot be traced
            return x
        return -x

    with pytest.raises(TypeError, match=r"test_function.py:\d+.*tfjit.cond"):
        branchy(np.float32(1.0))


def test_function_calling_function_traces_through():
    @tfjit.function
    def inner(x):
        return x + 1.0

    @tfjit.function
    def outer(x):
        return inner(x) * 2.0

    np.testing.assert_allclose(outer(np.ones(3, np.float32)), [4.0, 4.0, 4.0])
    assert inner.experimental_get_tracing_count() == 0


def test_function_reads_and_updates_session_variables():
    v = tf.Variable(np.ones(3, np.float32), name="v")

    @tfjit.function
    def step(x):
        return v.assign_add(x * v)

    with tf.Session() as sess:
        sess.run(v.initializer)
        np.testing.assert_allclose(step(np.full(3, 2.0, np.float32)), [3, 3, 3])
        np.testing.assert_allclose(step(np.full(3, 2.0, np.float32)), [9, 9, 9])
        np.testing.assert_allclose(sess.run(v), [9, 9, 9])


def test_unhashable_static_argument_is_a_clear_error():
    @tfjit.function
    def f(x, options):
        return x

    with pytest.raises(TypeError, match="argument `options` of type set"):
        f(np.ones(2), {1, 2})


def test_an_optimizer_with_slots_trains_inside_a_function_like_in_a_session():
    x = f32(8, 3, seed=4)
    y = f32(8, 2, seed=5)

    def losses_in_session():
        tf.reset_default_graph()
        w = tf.Variable(np.ones((3, 2), np.float32), name="w")
        xs, ys = tf.placeholder(tf.float32, [8, 3]), tf.placeholder(tf.float32, [8, 2])
        loss = tf.reduce_mean(tf.square(tf.matmul(xs, w) - ys))
        train = tf.train.AdamOptimizer(0.1).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return [sess.run([loss, train], {xs: x, ys: y})[0] for _ in range(4)]

    expected = losses_in_session()
    tf.reset_default_graph()
    w = tf.Variable(np.ones((3, 2), np.float32), name="w")
    optimizer = tf.train.AdamOptimizer(0.1)

    @tfjit.function
    def step(xs, ys):
        loss = tf.reduce_mean(tf.square(tf.matmul(xs, w) - ys))
        with tf.control_dependencies([optimizer.minimize(loss)]):
            return tf.identity(loss)

    with tf.Session() as sess:
        sess.run(w.initializer)
        got = [step(x, y) for _ in range(4)]  # the trace's slot variables start initialised
    np.testing.assert_allclose(got, expected, rtol=1e-6)
