"""Tiny programs the CUDA backend's tests run (under the simulator) and compile (to PTX).

Each builder makes a program in the current default graph and returns `(fetches, feeds)`;
shapes stay tiny because the simulator costs per simulated thread (at most 64 elements).
"""
from __future__ import annotations

import numpy as np

import tfjit as tf


def elementwise_broadcast(dtype=tf.float32):
    rng = np.random.default_rng(1)
    x = tf.placeholder(dtype, [3, 1, 4], name="x")
    b = tf.placeholder(dtype, [2, 4], name="b")
    s = tf.placeholder(dtype, [], name="s")
    y = tf.nn.gelu(tf.tanh(x * b + s) - tf.exp(-tf.abs(x)), approximate=True)
    z = tf.maximum(tf.nn.relu6(x * 3.0), tf.sigmoid(b)) / (1.0 + tf.square(b))
    w = tf.where_v2(x > 0.0, tf.sqrt(tf.abs(x)), tf.round(x * 2.5) + tf.floor(b))
    feeds = {x: rng.standard_normal((3, 1, 4)), b: rng.standard_normal((2, 4)), s: np.float64(0.5)}
    return [y, z, w, tf.transpose(x, [2, 1, 0]) * 2.0], feeds


def softmax_rows():
    """Softmax and log-softmax written out (one row kernel), and a lone reduction."""
    rng = np.random.default_rng(2)
    x = tf.placeholder(tf.float32, [2, 24], name="x")
    shifted = x - tf.reduce_max(x, -1, keepdims=True)
    total = tf.reduce_sum(tf.exp(shifted), -1, keepdims=True)
    fetches = [tf.exp(shifted) / total, shifted - tf.log(total), tf.reduce_min(x, -1)]
    return fetches, {x: rng.standard_normal((2, 24)) * 3}


def layer_norm_rows():
    rng = np.random.default_rng(3)
    x = tf.placeholder(tf.float32, [2, 3, 8], name="x")
    gamma = tf.constant(np.linspace(0.5, 1.5, 8, dtype=np.float32))
    mean = tf.reduce_mean(x, -1, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), -1, keepdims=True)
    return [(x - mean) * tf.rsqrt(var + 1e-5) * gamma], {x: rng.standard_normal((2, 3, 8)) * 2 + 1}


def lecture_model():
    """The lecture's regression model: one SGD step's fetches (loss and the update)."""
    rng = np.random.default_rng(4)
    tf.set_random_seed(5)
    x = tf.placeholder(tf.float32, [None, 8])
    d = tf.placeholder(tf.float32, [None, 2])
    W = tf.Variable(tf.random_normal([8, 2], stddev=0.1))
    b = tf.Variable(tf.zeros([2]))
    y = tf.nn.sigmoid(tf.matmul(x, W) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    step = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    feeds = {x: rng.standard_normal((4, 8)).astype(np.float32), d: rng.random((4, 2)).astype(np.float32)}
    return [loss, step], feeds


def mlp_train_step():
    """A tiny MLP with softmax cross-entropy and Adam: the training step's fetches."""
    rng = np.random.default_rng(6)
    tf.set_random_seed(9)
    x = tf.placeholder(tf.float32, [None, 6])
    labels = tf.placeholder(tf.int64, [None])
    h = tf.nn.relu(tf.matmul(x, tf.get_variable("w1", [6, 8])) + tf.get_variable("b1", [8]))
    logits = tf.matmul(h, tf.get_variable("w2", [8, 3]))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = tf.train.AdamOptimizer(0.05).minimize(loss)
    feeds = {x: rng.standard_normal((4, 6)).astype(np.float32), labels: rng.integers(0, 3, 4)}
    return [loss, step], feeds


def tiny_conv_net():
    """Conv (SAME) + bias + relu, a 2x2 max-pool, dropout and a dense softmax layer; SGD."""
    rng = np.random.default_rng(7)
    tf.set_random_seed(3)
    x = tf.placeholder(tf.float32, [None, 4, 4, 2])
    labels = tf.placeholder(tf.int64, [None])
    filters = tf.Variable(tf.random_normal([3, 3, 2, 3], stddev=0.3, seed=1))
    bias = tf.Variable(tf.zeros([3]))
    h = tf.nn.relu(tf.nn.conv2d(x, filters, [1, 1, 1, 1], "SAME") + bias)
    h = tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    h = tf.nn.dropout(tf.reshape(h, [-1, 12]), keep_prob=0.9, seed=2)
    logits = tf.matmul(h, tf.Variable(tf.random_normal([12, 3], stddev=0.3, seed=4)))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    feeds = {x: rng.standard_normal((2, 4, 4, 2)).astype(np.float32), labels: rng.integers(0, 3, 2)}
    return [loss, step], feeds


def gpu_resident_model():
    """A per-feature logistic model with the batch on the last axis: every op of its training
    step (forward, gradients over trailing axes, updates) has a CUDA kernel, so a step on the
    GPU copies only its feeds and fetches."""
    rng = np.random.default_rng(8)
    x = tf.placeholder(tf.float32, [6, 4], name="x")
    d = tf.placeholder(tf.float32, [6, 4], name="d")
    w = tf.Variable(np.linspace(-0.5, 0.5, 6, dtype=np.float32).reshape(6, 1), name="w")
    b = tf.Variable(np.float32(0.1), name="b")
    y = tf.sigmoid(x * w + b)
    loss = tf.reduce_mean(tf.square(y - d))
    step = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    feeds = {x: rng.standard_normal((6, 4)).astype(np.float32), d: rng.random((6, 4)).astype(np.float32)}
    return [loss, step], feeds


KERNEL_PROGRAMS = [elementwise_broadcast, softmax_rows, layer_norm_rows]
TRAINING_PROGRAMS = [lecture_model, mlp_train_step, tiny_conv_net, gpu_resident_model]


def optimized(build):
    """The optimised program of a builder, placed as on a GPU (with or without one), and its
    feeds in parameter order (fresh graph)."""
    from tfjit import config
    from tfjit.backends.numba_cuda.placement import gpu_placement
    from tfjit.debug import program_for
    from tfjit.passes.manager import PassManager

    tf.reset_default_graph()
    fetches, feeds = build()
    manager = PassManager(level=config.current.optimization_level, overrides={"place": gpu_placement()})
    program = manager.run(program_for(fetches, feeds, default_device=None))
    ordered = sorted(feeds, key=lambda t: t.op.node.uid)
    return program, [np.asarray(feeds[k], k.dtype.np_dtype) for k in ordered]


def train(build, backend: str, steps: int = 3) -> list[float]:
    """Losses of `steps` training steps of a builder's program on `backend`."""
    from tfjit import config

    previous = config.current.backend
    config.set_backend(backend)
    try:
        tf.reset_default_graph()
        (loss, step), feeds = build()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return [float(sess.run([loss, step], feed_dict=feeds)[0]) for _ in range(steps)]
    finally:
        config.set_backend(previous)
