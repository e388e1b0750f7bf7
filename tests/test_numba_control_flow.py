"""`while`, `cond`, dynamic_rnn and static_rnn on the numba backend give the reference backend's
results (outputs and gradients, variable lengths), with their sub-graphs run as generated
kernels; identical kernels (an unrolled RNN's cells) share one compile; the split kernels and
the loop kernels' remembered per-shape plans an unrolled RNN runs give the reference's results."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import control_flow, loop
from tfjit.backends.numba_cpu.executable import compile_graph as numba_compile
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.compat.cond_while import loop as while_node
from tfjit.debug import program_for
from tfjit.errors import InvalidArgumentError
from tfjit.runtime.results import owner
from tfjit.runtime.state import RuntimeState

RNG = np.random.default_rng(11)
rnn_cell = tf.nn.rnn_cell


def on_both(backend, fetches, feed_dict=None, init=False):
    """`fetches` run by one session on the reference backend, then on the numba backend."""
    sess = tf.Session()
    if init:  # once: both backends read the same random initial values
        sess.run(tf.global_variables_initializer())
    results = []
    for name in ("reference", "numba"):
        backend(name)
        results.append(sess.run(fetches, feed_dict=feed_dict))
    return results


def assert_close(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def kernels_of(fetches, feed_dict, op):
    """The numba kernels built for the `op` nodes of the optimised program computing `fetches`."""
    program = config.pass_manager().run(program_for(fetches, feed_dict))
    exe = numba_compile(program)
    return exe, [k for n, k in exe.kernels if n.op == op]


def test_while_loop_with_stacked_values_matches_reference_for_any_trip_count(backend):
    n = tf.placeholder(tf.int32, [], name="n")
    x = tf.placeholder(tf.float32, [3, 4], name="x")

    def step(values):
        i, acc = values
        new = tf.tanh(acc * 0.5 + x) + tf.cast(i, tf.float32)
        return [i + 1, new], [new * 2.0, tf.reduce_sum(new, axis=1)]

    final, stacked = while_node(lambda v: tf.less(v[0], n), step, [tf.constant(0), tf.zeros([3, 4])],
                                [tf.constant(0).type, tf.zeros([3, 4]).type], False, "loop")
    xs = RNG.standard_normal((3, 4)).astype(np.float32)
    # 20 iterations outgrow the first buffer; then fewer, then none (an empty stack).
    for trips in (20, 5, 0, 20):
        want, got = on_both(backend, [*final, *stacked], {n: trips, x: xs})
        assert got[2].shape == (trips, 3, 4) and got[3].shape == (trips, 3)
        assert_close(got, want)
    _, whiles = kernels_of([*final, *stacked], {n: 3, x: xs}, "while")
    assert len(whiles) == 1 and isinstance(whiles[0], control_flow.WhileKernel)
    assert any(isinstance(k, loop.LoopKernel) for _, k in whiles[0].body.kernels)


def test_tf_while_loop_and_cond_match_reference(backend):
    x = tf.placeholder(tf.float64, [5], name="x")
    limit = tf.placeholder(tf.float64, [], name="limit")
    i, y = tf.while_loop(lambda i, y: tf.reduce_sum(y) < limit,
                         lambda i, y: (i + 1, y * 1.5 + tf.sin(y)), [tf.constant(0), x])
    z = tf.cond(tf.reduce_max(y) > 10.0, lambda: tf.exp(-y) * 3.0, lambda: tf.sqrt(tf.abs(y)) - 1.0)
    for xs, lim in ((np.linspace(0.5, 1.0, 5), 40.0), (np.linspace(0.1, 0.2, 5), 3.0), (np.ones(5), 0.0)):
        want, got = on_both(backend, [i, y, z], {x: xs, limit: lim})
        assert_close(got, want, rtol=1e-12, atol=1e-12)
    _, conds = kernels_of([z], {x: np.ones(5), limit: 1.0}, "cond")
    assert len(conds) == 1 and isinstance(conds[0], control_flow.CondKernel)


def test_a_stacked_value_that_changes_shape_fails_on_both_backends(backend):
    def step(values):
        i, = values
        return [i + 1], [tf.cast(tf.range(i), tf.float32)]

    _, stacked = while_node(lambda v: tf.less(v[0], 3), step, [tf.constant(0)], [tf.constant(0).type],
                            False, "loop")
    sess = tf.Session()
    for name in ("reference", "numba"):
        backend(name)
        with pytest.raises(InvalidArgumentError):
            sess.run(stacked[0])


def _lstm_rnn(dynamic: bool, lengths: tf.Tensor | None, x: tf.Tensor, units: int):
    cell = rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(units), rnn_cell.BasicLSTMCell(units)])
    if dynamic:
        return tf.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tf.float32)
    return tf.nn.static_rnn(cell, tf.unstack(x, axis=1), sequence_length=lengths, dtype=tf.float32)


@pytest.mark.parametrize("dynamic", [True, False])
def test_two_layer_lstm_outputs_and_gradients_match_reference_with_variable_lengths(backend, dynamic):
    batch, steps, depth, units = 3, 5, 4, 6
    x = tf.placeholder(tf.float32, [batch, steps, depth], name="x")
    lengths = tf.placeholder(tf.int32, [batch], name="lengths")
    outputs, state = _lstm_rnn(dynamic, lengths, x, units)
    outputs = tf.stack(outputs, axis=1) if not dynamic else outputs
    loss = tf.reduce_sum(tf.square(outputs)) + tf.reduce_sum(state[1].h * state[0].c)
    weights = tf.trainable_variables()
    grads = tf.gradients(loss, [x, *weights])
    feeds = {x: RNG.standard_normal((batch, steps, depth)).astype(np.float32), lengths: [5, 2, 0]}
    want, got = on_both(backend, [outputs, state[1].h, state[0].c, loss, *grads], feeds, init=True)
    assert_close(got, want, rtol=2e-5, atol=2e-6)
    assert np.all(got[0][2] == 0) and np.all(got[0][1, 2:] == 0)  # outputs past a sequence's end


def test_unrolled_cells_share_their_compiled_kernels():
    steps, batch, depth, units = 4, 2, 3, 5
    x = tf.placeholder(tf.float32, [steps, batch, depth], name="x")
    w = tf.placeholder(tf.float32, [depth + units, 4 * units], name="w")
    h0 = tf.placeholder(tf.float32, [batch, units], name="h0")
    h = c = h0
    for x_t in tf.unstack(x):
        i, j, f, o = tf.split(tf.matmul(tf.concat([x_t, h], 1), w), 4, axis=1)
        c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
    feeds = {x: RNG.standard_normal((steps, batch, depth)), w: RNG.standard_normal((depth + units, 4 * units)),
             h0: RNG.standard_normal((batch, units))}
    exe, cells = kernels_of([h], feeds, "fused")
    args = [feeds[x].astype(np.float32), feeds[w].astype(np.float32), feeds[h0].astype(np.float32)]
    want = reference_compile(exe.graph).run(args, RuntimeState())
    got = exe.run(args, RuntimeState())
    assert_close(got, want)
    # Every cell's gate kernel but the last (which returns h alone) computes the same thing.
    gates = [k for k in cells if isinstance(k, loop.LoopKernel) and len(k.body.results) == 2]
    assert len(gates) == steps - 1
    compiled = {id(f) for k in gates for f in k._compiled.values()}
    assert len(compiled) == 1


@pytest.mark.parametrize("axis, sizes", [(1, None), (0, (1, 3)), (-1, (2, -1, 0))])
def test_split_kernels_and_repeated_loop_calls_match_reference(axis, sizes):
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    b = tf.placeholder(tf.float32, [6], name="b")
    s = tf.placeholder(tf.float32, [], name="s")
    y = tf.sigmoid(x + b) * s  # a broadcast and a scalar input: the loop kernel's fitted views
    pieces = tf.split(y, sizes if sizes is not None else 2, axis=axis)
    outs = [tf.tanh(p) + 1.0 for p in pieces] + list(pieces)
    exe = None
    for seed in range(2):  # the second call takes each loop kernel's remembered plan
        rng = np.random.default_rng(seed)
        feeds = {x: rng.standard_normal((4, 6)), b: rng.standard_normal(6), s: np.float32(rng.standard_normal())}
        if exe is None:
            exe, splits = kernels_of(outs, feeds, "split")
            assert splits and all(type(k).__name__ == "PiecesKernel" for k in splits)
        args = [np.asarray(feeds[k], np.float32) for k in (x, b, s)]
        got = exe.run(args, RuntimeState())
        want = reference_compile(exe.graph).run(args, RuntimeState())
        assert_close(got, want)
        views = got[len(pieces):]  # the pieces are views of y's one buffer (the reference copies them)
        assert all(not g.flags.owndata and owner(g) is owner(views[0]) for g in views)
