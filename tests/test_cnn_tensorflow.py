"""The CNN ops against TensorFlow itself (`tensorflow.compat.v1`, CPU): the same inputs and
weights give the same outputs and gradients (rtol 1e-4 in float32), and a 4-conv-layer CNN
written once trains to the same falling losses under `import tfjit as tf` and under TF.

TF's CPU convolutions are compared in NHWC: an NCHW result of tfjit is transposed to NHWC
before the comparison. All TF comparisons live in this one module (importing TF is slow).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import tfjit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
real_tf = pytest.importorskip("tensorflow")
v1 = real_tf.compat.v1
RTOL, ATOL = 1e-4, 1e-5
rng = np.random.default_rng(11)


def normal(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def to_nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def to_nhwc(a):
    return a.transpose(0, 2, 3, 1)


def run_tfjit(build, arrays):
    """build(tf, *tensors) -> fetches, run under tfjit with constants."""
    with tfjit.Graph().as_default():
        fetches = build(tfjit, *[tfjit.constant(a) for a in arrays])
        with tfjit.Session() as sess:
            return sess.run(fetches)


def run_tf(build, arrays):
    with real_tf.Graph().as_default():
        fetches = build(v1, *[v1.constant(a) for a in arrays])
        with v1.Session() as sess:
            return sess.run(fetches)


def with_grads(fn, n_inputs):
    """fn's output and the gradients of <output, dy> with respect to its first n inputs."""

    def build(tf, *tensors):
        y = fn(tf, *tensors[:-1])
        return [y] + tf.gradients(y, list(tensors[:n_inputs]), grad_ys=[tensors[-1]])

    return build


def assert_all_close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# -- conv2d ------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_conv2d_outputs_and_gradients(padding, stride, dilation, fmt):
    x, f = normal(2, 9, 8, 3), normal(3, 3, 3, 4)

    def conv(tf, x, f, data_format="NHWC"):
        quad = [1, stride, stride, 1] if data_format == "NHWC" else [1, 1, stride, stride]
        dil = [1, dilation, dilation, 1] if data_format == "NHWC" else [1, 1, dilation, dilation]
        return tf.nn.conv2d(x, f, quad, padding, data_format=data_format, dilations=dil)

    want_y = run_tf(lambda tf, x, f: conv(tf, x, f), [x, f])
    dy = normal(*want_y.shape)
    want = run_tf(with_grads(conv, 2), [x, f, dy])
    if fmt == "NHWC":
        got = run_tfjit(with_grads(conv, 2), [x, f, dy])
    else:
        got = run_tfjit(with_grads(lambda tf, x, f: conv(tf, x, f, "NCHW"), 2), [to_nchw(x), f, to_nchw(dy)])
        got = [to_nhwc(got[0]), to_nhwc(got[1]), got[2]]
    assert got[0].shape == want[0].shape
    assert_all_close(got, want)


def test_conv2d_transpose_and_depthwise():
    value, f = normal(2, 4, 4, 5), normal(3, 3, 2, 5)
    dy = normal(2, 8, 8, 2)

    def transpose(tf, v, w):
        return tf.nn.conv2d_transpose(v, w, [2, 8, 8, 2], [1, 2, 2, 1], "SAME")

    assert_all_close(run_tfjit(with_grads(transpose, 2), [value, f, dy]), run_tf(with_grads(transpose, 2),
                                                                                 [value, f, dy]))
    x, fd = normal(2, 7, 7, 3), normal(3, 3, 3, 2)
    for strides, rate in [([1, 2, 2, 1], None), ([1, 1, 1, 1], [2, 2])]:
        def depthwise(tf, x, w):
            return tf.nn.depthwise_conv2d(x, w, strides, "SAME", rate=rate)

        dyd = normal(*run_tf(depthwise, [x, fd]).shape)
        assert_all_close(run_tfjit(with_grads(depthwise, 2), [x, fd, dyd]), run_tf(with_grads(depthwise, 2),
                                                                                    [x, fd, dyd]))


# -- pooling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
@pytest.mark.parametrize("k,s,padding", [(2, 2, "SAME"), (3, 2, "SAME"), (3, 1, "VALID"), (2, 1, "SAME")])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_pool_outputs_and_gradients(kind, k, s, padding, fmt):
    # a 0.25 grid gives ties inside windows: max_pool's gradient must pick TF's (the first) one
    x = np.round(normal(2, 7, 6, 3) * 2) / 4

    def pool(tf, x, data_format="NHWC"):
        quad = (lambda v: [1, v, v, 1]) if data_format == "NHWC" else (lambda v: [1, 1, v, v])
        return getattr(tf.nn, kind)(x, quad(k), quad(s), padding, data_format=data_format)

    dy = normal(*run_tf(pool, [x]).shape)
    want = run_tf(with_grads(pool, 1), [x, dy])
    if fmt == "NHWC":
        got = run_tfjit(with_grads(pool, 1), [x, dy])
    else:
        got = [to_nhwc(a) for a in run_tfjit(with_grads(lambda tf, x: pool(tf, x, "NCHW"), 1),
                                             [to_nchw(x), to_nchw(dy)])]
    assert_all_close(got, want)


def test_nn_pool_and_dilated_pool():
    x = normal(2, 8, 8, 3)
    for kwargs in [dict(window_shape=[2, 2], pooling_type="MAX", padding="SAME"),
                   dict(window_shape=[3, 3], pooling_type="AVG", padding="SAME", strides=[2, 2]),
                   dict(window_shape=[2, 2], pooling_type="MAX", padding="VALID", dilation_rate=[2, 2]),
                   dict(window_shape=[3, 2], pooling_type="AVG", padding="VALID", dilation_rate=[1, 2])]:
        def pool(tf, x):
            return tf.nn.pool(x, **kwargs)

        dy = normal(*run_tf(pool, [x]).shape)
        assert_all_close(run_tfjit(with_grads(pool, 1), [x, dy]), run_tf(with_grads(pool, 1), [x, dy]))


# -- normalisation -----------------------------------------------------------------------------
def test_l2_normalize_and_lrn():
    x = normal(3, 4, 5)
    for axis in [1, [0, 2], None]:
        def l2(tf, x):
            return tf.nn.l2_normalize(x, axis=axis)

        dy = normal(3, 4, 5)
        assert_all_close(run_tfjit(with_grads(l2, 1), [x, dy]), run_tf(with_grads(l2, 1), [x, dy]))
    x4, dy4 = normal(2, 3, 3, 9), normal(2, 3, 3, 9)

    def lrn(tf, x):
        return tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=0.5, beta=0.75)

    assert_all_close(run_tfjit(with_grads(lrn, 1), [x4, dy4]), run_tf(with_grads(lrn, 1), [x4, dy4]))


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm(training):
    x, scale, offset = normal(4, 5, 5, 3) * 2 + 1, normal(3), normal(3)
    mean, var = normal(3), np.abs(normal(3)) + 0.5
    dy = normal(4, 5, 5, 3)

    def bn(tf, x, scale, offset, mean, var, dy):
        y, m, v = tf.nn.fused_batch_norm(x, scale, offset, None if training else mean, None if training else var,
                                         epsilon=1e-3, is_training=training)
        return [y, m, v] + tf.gradients(y, [x, scale, offset], grad_ys=[dy])

    assert_all_close(run_tfjit(bn, [x, scale, offset, mean, var, dy]), run_tf(bn, [x, scale, offset, mean, var, dy]))


def test_moments_and_batch_normalization():
    x, scale, offset, dy = normal(6, 4), normal(4), normal(4), normal(6, 4)

    def bn(tf, x, scale, offset, dy):
        mean, var = tf.nn.moments(x, [0])
        y = tf.nn.batch_normalization(x, mean, var, offset, scale, 1e-3)
        return [y, mean, var] + tf.gradients(y, [x, scale, offset], grad_ys=[dy])

    assert_all_close(run_tfjit(bn, [x, scale, offset, dy]), run_tf(bn, [x, scale, offset, dy]))


# -- a 4-conv-layer CNN, written once ----------------------------------------------------------
def cnn_weights():
    shapes = {"c1": (3, 3, 1, 8), "c2": (3, 3, 8, 8), "c3": (3, 3, 8, 16), "c4": (3, 3, 16, 16), "fc": (64, 10)}
    weights = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        weights[name + "_b"] = np.full(shape[-1], 0.01, np.float32)
    return weights


def train_cnn(tf, images, labels, weights, steps):
    """conv 3x3 SAME relu x2, 2x2 max-pool, x2; dense to 10; softmax xent; plain SGD."""
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 8, 8, 1])
        y = tf.placeholder(tf.float32, [None, 10])

        def conv(h, name):
            w, b = tf.Variable(weights[name], name=name), tf.Variable(weights[name + "_b"], name=name + "_b")
            return tf.nn.relu(tf.nn.conv2d(h, w, strides=[1, 1, 1, 1], padding="SAME") + b)

        h = tf.nn.max_pool(conv(conv(x, "c1"), "c2"), ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
        h = tf.nn.max_pool(conv(conv(h, "c3"), "c4"), ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
        logits = tf.matmul(tf.reshape(h, [-1, 64]), tf.Variable(weights["fc"])) + tf.Variable(weights["fc_b"])
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
        step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return [sess.run([loss, step], feed_dict={x: images, y: labels})[0] for _ in range(steps)]


def test_a_four_conv_layer_cnn_trains_like_tensorflow():
    images = normal(8, 8, 8, 1)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    weights = cnn_weights()
    ours = train_cnn(tfjit, images, labels, weights, steps=12)
    theirs = train_cnn(v1, images, labels, weights, steps=12)
    assert ours[-1] < 0.7 * ours[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)
