"""tfjit against TensorFlow's own `compat.v1` (CPU): the same model with the same initial weights
(TF's values copied into tfjit's variables by name) gives the same outputs and gradients."""
import numpy as np
import pytest

import tfjit as tf

real_tf = pytest.importorskip("tensorflow")
tf1 = real_tf.compat.v1
from tensorflow.python.ops import rnn as tf_rnn  # noqa: E402  (TF 2.x keeps the TF1 RNNs here)
from tensorflow.python.ops import rnn_cell_impl as tf_cells  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def run_tensorflow(build, feeds):
    """Build with TF in a fresh graph; returns (fetched values, {variable name: value})."""
    graph = tf1.Graph()
    with graph.as_default():
        placeholders, fetches = build()
        variables = tf1.global_variables()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            values = sess.run(fetches, dict(zip(placeholders, feeds)))
            weights = {v.name: w for v, w in zip(variables, sess.run(variables))}
    return values, weights


def run_tfjit(build, feeds, weights):
    """Build with tfjit; its variables must be TF's, by name and shape; load TF's values."""
    placeholders, fetches = build()
    variables = tf.global_variables()
    assert {v.name: v.shape.as_list() for v in variables} == {k: list(w.shape) for k, w in weights.items()}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for v in variables:
            v.load(weights[v.name], sess)
        return sess.run(fetches, dict(zip(placeholders, feeds)))


def assert_all_close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def sequence_model(api, cells, rnn_cell, rnn_fn, directions):
    """[batch, time, depth] inputs with lengths through `rnn_fn`; a loss of every output and the
    last layer's final state; its gradients with respect to the inputs and every variable."""
    def build():
        x = api.placeholder(api.float32, [None, 5, 3])
        lengths = api.placeholder(api.int32, [None])
        outputs, state = rnn_fn(cells(rnn_cell), x, lengths)
        last = state[-1] if isinstance(state, tuple) and not hasattr(state, "h") else state
        h = last.h if hasattr(last, "h") else last
        loss = api.reduce_sum(outputs * directions[0]) + api.reduce_sum(h * directions[1])
        grads = api.gradients(loss, [x] + api.trainable_variables())
        return [x, lengths], [outputs, h, loss] + grads
    return build


def lstm_stack(cells):
    return cells.MultiRNNCell([cells.DropoutWrapper(cells.BasicLSTMCell(4), input_keep_prob=1.0,
                                                    output_keep_prob=1.0) for _ in range(2)])


@pytest.mark.parametrize("kind", ["dynamic_multi_lstm", "static_lstm_peepholes_projection", "dynamic_gru"])
def test_rnns_match_tensorflow(kind):
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((3, 5, 3)).astype(np.float32)
    lv = np.array([5, 2, 4], np.int32)

    def dynamic(api_dynamic):
        return lambda cell, x, lengths: api_dynamic(cell, x, sequence_length=lengths, dtype=x.dtype)

    def static(api_static, api):
        def fn(cell, x, lengths):
            steps = [x[:, t] for t in range(5)]
            outs, state = api_static(cell, steps, sequence_length=lengths, dtype=x.dtype)
            return api.stack(outs, 1), state
        return fn

    make = {
        "dynamic_multi_lstm": (lstm_stack, dynamic(tf_rnn.dynamic_rnn), dynamic(tf.nn.dynamic_rnn)),
        "static_lstm_peepholes_projection": (
            lambda c: c.LSTMCell(4, use_peepholes=True, num_proj=3, cell_clip=1.5),
            static(tf_rnn.static_rnn, tf1), static(tf.nn.static_rnn, tf)),
        "dynamic_gru": (lambda c: c.GRUCell(4), dynamic(tf_rnn.dynamic_rnn), dynamic(tf.nn.dynamic_rnn)),
    }[kind]
    out_units = 3 if "projection" in kind else 4
    directions = [rng.standard_normal((3, 5, out_units)).astype(np.float32),
                  rng.standard_normal((3, out_units)).astype(np.float32)]
    want, weights = run_tensorflow(sequence_model(tf1, make[0], tf_cells, make[1], directions), [xv, lv])
    got = run_tfjit(sequence_model(tf, make[0], tf.nn.rnn_cell, make[2], directions), [xv, lv], weights)
    assert len(got) == len(want)
    assert_all_close(got, want)


# -- the lecture's Inception-ResNet block -----------------------------------------------------------------
def block(net, slim_conv, api, scale=0.17, activation_fn=None, scope=None):
    """Inception-ResNet block: 1x1 branch, 1x1 -> 1x7 -> 7x1 branch, concat, 1x1 up-projection
    without activation, `net += scale * up`, relu."""
    activation_fn = activation_fn or api.nn.relu
    with api.variable_scope(scope, "Block", [net]):
        with api.variable_scope("Branch_0"):
            tower_conv = slim_conv(net, 6, 1, scope="Conv2d_1x1")
        with api.variable_scope("Branch_1"):
            tower_conv1_0 = slim_conv(net, 4, 1, scope="Conv2d_0a_1x1")
            tower_conv1_1 = slim_conv(tower_conv1_0, 5, [1, 7], scope="Conv2d_0b_1x7")
            tower_conv1_2 = slim_conv(tower_conv1_1, 6, [7, 1], scope="Conv2d_0c_7x1")
        mixed = api.concat(axis=3, values=[tower_conv, tower_conv1_2])
        up = slim_conv(mixed, net.get_shape()[3], 1, normalizer_fn=None, activation_fn=None, scope="Conv2d_1x1")
        net += scale * up
        if activation_fn:
            net = activation_fn(net)
    return net


def tf_slim_conv(with_batch_norm):
    """slim.conv2d written with TensorFlow's own ops and slim's variable names."""
    def conv(x, num_outputs, kernel_size, scope, normalizer_fn="default", activation_fn=tf1.nn.relu):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        n = int(num_outputs)
        norm = with_batch_norm and normalizer_fn == "default"
        with tf1.variable_scope(scope):
            w = tf1.get_variable("weights", [kh, kw, x.shape[-1], n],
                                 initializer=tf1.glorot_uniform_initializer())
            y = tf1.nn.conv2d(x, w, [1, 1, 1, 1], "SAME")
            if norm:
                with tf1.variable_scope("BatchNorm"):
                    beta = tf1.get_variable("beta", [n], initializer=tf1.random_normal_initializer(0.0, 0.1))
                    tf1.get_variable("moving_mean", [n], initializer=tf1.zeros_initializer(), trainable=False)
                    tf1.get_variable("moving_variance", [n], initializer=tf1.ones_initializer(), trainable=False)
                    y = tf1.nn.fused_batch_norm(y, tf1.ones([n]), beta, epsilon=0.001)[0]
            else:
                b = tf1.get_variable("biases", [n], initializer=tf1.random_normal_initializer(0.0, 0.1))
                y = tf1.nn.bias_add(y, b)
            return activation_fn(y) if activation_fn is not None else y
    return conv


def jit_slim_conv(x, num_outputs, kernel_size, scope, **kwargs):
    return tf.contrib.slim.conv2d(x, num_outputs, kernel_size, scope=scope, **kwargs)


@pytest.mark.parametrize("with_batch_norm", [False, True])
def test_inception_resnet_block_matches_tensorflow(with_batch_norm):
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((2, 8, 8, 5)).astype(np.float32)
    direction = rng.standard_normal((2, 8, 8, 5)).astype(np.float32)

    def build_tf():
        x = tf1.placeholder(tf1.float32, [None, 8, 8, 5])
        y = block(x, tf_slim_conv(with_batch_norm), tf1, scope="Block17")
        loss = tf1.reduce_sum(y * direction)
        return [x], [y] + tf1.gradients(loss, [x] + tf1.trainable_variables())

    def build_jit():
        x = tf.placeholder(tf.float32, [None, 8, 8, 5])
        slim = tf.contrib.slim
        params = {}
        if with_batch_norm:
            params = {"normalizer_fn": slim.batch_norm, "normalizer_params": {"is_training": True}}
        with slim.arg_scope([slim.conv2d], **params):
            y = block(x, jit_slim_conv, tf, scope="Block17")
        loss = tf.reduce_sum(y * direction)
        return [x], [y] + tf.gradients(loss, [x] + tf.trainable_variables())

    want, weights = run_tensorflow(build_tf, [xv])
    got = run_tfjit(build_jit, [xv], weights)
    assert len(got) == len(want) == 2 + 10  # output, input gradient, two variables per conv
    assert_all_close(got, want)
