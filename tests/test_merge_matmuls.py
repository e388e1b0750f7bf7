"""merge_matmuls: independent matmuls sharing their right operand run as one, with the same
results; dependent ones (through data or a variable's effects) stay apart."""
from __future__ import annotations

import numpy as np

import tfjit as tf
from tfjit.backends.reference import run_graph
from tfjit.debug import program_for
from tfjit.ir.verifier import verify
from tfjit.passes.manager import PassManager
from tfjit.passes.merge_matmuls import merge_matmuls
from tfjit.runtime.state import RuntimeState

RNG = np.random.default_rng(5)


def programs(fetches, feeds):
    """The program optimised with and without the pass, and its arguments."""
    program = program_for(fetches, feeds)
    args = [np.asarray(feeds[k], k.dtype.np_dtype) for k in sorted(feeds, key=lambda t: t.op.node.uid)]
    merged = PassManager().run(program)
    apart = PassManager(disabled=frozenset({"merge_matmuls"})).run(program)
    return merged, apart, args


def matmuls(graph):
    return [n for n in graph.all_nodes() if n.op == "matmul"]


def test_an_unrolled_two_layer_rnn_merges_each_layers_input_products_and_its_gradients():
    steps, batch, depth, units = 4, 3, 5, 6
    x = tf.placeholder(tf.float64, [steps, batch, depth], name="x")
    wx = [tf.placeholder(tf.float64, [depth, units], name="wx0"), tf.placeholder(tf.float64, [units, units], name="wx1")]
    wh = [tf.placeholder(tf.float64, [units, units], name="wh0"), tf.placeholder(tf.float64, [units, units], name="wh1")]
    h = [tf.zeros([batch, units], tf.float64)] * 2
    for x_t in tf.unstack(x):
        for layer in range(2):
            h[layer] = tf.tanh(tf.matmul(x_t, wx[layer]) + tf.matmul(h[layer], wh[layer]))
            x_t = h[layer]
    loss = tf.reduce_sum(h[1] * h[1])
    grads = tf.gradients(loss, [x, *wx, *wh])
    feeds = {x: RNG.standard_normal((steps, batch, depth)),
             **{w: RNG.standard_normal(w.shape.as_list()) * 0.5 for w in wx + wh}}
    merged, apart, args = programs([h[1], *grads], feeds)
    verify(merged)
    got = run_graph(merged, args, RuntimeState())
    want = run_graph(apart, args, RuntimeState())
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    rows = sorted(n.inputs[0].type.shape[0] for n in matmuls(merged) if n.inputs[0].type.shape[0] > batch)
    # forward: each layer's x_t @ wx over all steps; backward: the steps' errors @ wx^T too
    assert rows.count(steps * batch) >= 4
    assert len(matmuls(merged)) < len(matmuls(apart))


def test_a_chain_of_products_with_one_weight_is_not_merged():
    x = tf.placeholder(tf.float32, [2, 3], name="x")
    w = tf.placeholder(tf.float32, [3, 3], name="w")
    y = tf.matmul(tf.matmul(tf.matmul(x, w), w), w)
    program = program_for([y], {x: np.ones((2, 3)), w: np.ones((3, 3))})
    assert len(matmuls(merge_matmuls(program))) == 3


def test_products_ordered_by_a_variable_write_are_not_merged_and_read_the_new_value():
    v = tf.Variable(np.ones((2, 3), np.float32), name="v")
    w = tf.placeholder(tf.float32, [3, 3], name="w")
    first = tf.matmul(v.read_value(), w)
    with tf.control_dependencies([tf.assign(v, first * 2.0)]):
        second = tf.matmul(v.read_value(), w)
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    ws = RNG.standard_normal((3, 3)).astype(np.float32)
    got_first, got_second = sess.run([first, second], {w: ws})
    np.testing.assert_allclose(got_first, np.ones((2, 3), np.float32) @ ws, rtol=1e-6)
    np.testing.assert_allclose(got_second, (got_first * 2.0) @ ws, rtol=1e-6)


def test_independent_products_of_different_row_counts_split_back_exactly():
    w = tf.placeholder(tf.float32, [4, 5], name="w")
    a = tf.placeholder(tf.float32, [2, 4], name="a")
    b = tf.placeholder(tf.float32, [7, 4], name="b")
    c = tf.placeholder(tf.float32, [4, 4], name="c")
    outs = [tf.matmul(a, w), tf.nn.relu(tf.matmul(b, w)), tf.matmul(c, w, transpose_a=True),
            tf.matmul(a, tf.transpose(w), transpose_b=True)]
    feeds = {w: RNG.standard_normal((4, 5)), a: RNG.standard_normal((2, 4)), b: RNG.standard_normal((7, 4)),
             c: RNG.standard_normal((4, 4))}
    merged, apart, args = programs(outs, feeds)
    got = run_graph(merged, args, RuntimeState())
    want = run_graph(apart, args, RuntimeState())
    for g, w_ in zip(got, want):
        assert g.shape == w_.shape
        np.testing.assert_allclose(g, w_, rtol=1e-6, atol=1e-6)
    assert any(n.inputs[0].type.shape == (9, 4) for n in matmuls(merged))  # a and b; c is transposed


def _stacked_lefts(graph):
    """The ops producing the left operands of the merged products."""
    return sorted(n.inputs[0].node.op for n in matmuls(graph) if n.name and n.name.endswith("/merged"))


def test_all_unstacked_or_split_rows_in_order_are_a_reshape_of_their_source_not_a_concat():
    w = tf.placeholder(tf.float32, [4, 5], name="w")
    v = tf.placeholder(tf.float32, [4, 3], name="v")
    x = tf.placeholder(tf.float32, [3, 2, 4], name="x")  # steps of an RNN's input
    y = tf.placeholder(tf.float32, [6, 4], name="y")
    outs = [tf.tanh(tf.matmul(x_t, w)) for x_t in tf.unstack(x)] + \
        [tf.matmul(y_i, v) for y_i in tf.split(y, [1, 2, 3], axis=-2)]
    feeds = {w: RNG.standard_normal((4, 5)), v: RNG.standard_normal((4, 3)), x: RNG.standard_normal((3, 2, 4)),
             y: RNG.standard_normal((6, 4))}
    merged, apart, args = programs(outs, feeds)
    verify(merged)
    for g, w_ in zip(run_graph(merged, args, RuntimeState()), run_graph(apart, args, RuntimeState())):
        assert g.shape == w_.shape
        np.testing.assert_allclose(g, w_, rtol=1e-6, atol=1e-6)
    assert _stacked_lefts(merged) == ["reshape", "reshape"]
    assert not any(n.op in ("unstack", "split") and n.inputs[0].node.op == "param" for n in merged.nodes)


def test_pieces_used_elsewhere_or_merged_in_part_or_out_of_order_keep_their_source_and_a_concat():
    w = tf.placeholder(tf.float32, [4, 5], name="w")
    v = tf.placeholder(tf.float32, [4, 3], name="v")
    x = tf.placeholder(tf.float32, [3, 2, 4], name="x")
    z = tf.placeholder(tf.float32, [3, 2, 4], name="z")
    pieces = tf.unstack(x)
    used_elsewhere = [tf.matmul(p, w) for p in pieces] + [pieces[1] * 2.0]
    zs = tf.unstack(z)
    partial = [tf.matmul(zs[2], v), tf.matmul(zs[0], v)]  # two of three pieces, in reverse order
    feeds = {w: RNG.standard_normal((4, 5)), v: RNG.standard_normal((4, 3)), x: RNG.standard_normal((3, 2, 4)),
             z: RNG.standard_normal((3, 2, 4))}
    merged, apart, args = programs(used_elsewhere + partial, feeds)
    verify(merged)
    for g, w_ in zip(run_graph(merged, args, RuntimeState()), run_graph(apart, args, RuntimeState())):
        np.testing.assert_allclose(g, w_, rtol=1e-6, atol=1e-6)
    assert _stacked_lefts(merged) == ["concat", "reshape"]
    assert sum(n.op == "unstack" for n in merged.nodes) == 2  # x's: a piece is still read
