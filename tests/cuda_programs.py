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


def matmul_epilogue(dtype=tf.float32):
    """GEMMs over more than one K tile: a bias-add-relu epilogue, both transposes, a broadcast
    batch (a [2,1,3,20] times b [3,20,4]) with a scalar epilogue operand, and tensordots."""
    rng = np.random.default_rng(7)
    x = tf.placeholder(dtype, [3, 20], name="x")
    w = tf.placeholder(dtype, [20, 4], name="w")
    bias = tf.placeholder(dtype, [4], name="bias")
    wt = tf.placeholder(dtype, [4, 20], name="wt")
    xt = tf.placeholder(dtype, [20, 3], name="xt")
    a = tf.placeholder(dtype, [2, 1, 3, 20], name="a")
    b = tf.placeholder(dtype, [3, 20, 4], name="b")
    s = tf.placeholder(dtype, [], name="s")
    relu = tf.nn.relu(tf.matmul(x, w) + bias)
    both = tf.matmul(xt, wt, transpose_a=True, transpose_b=True) * s
    batched = tf.tanh(tf.matmul(a, b)) - s
    feeds = {x: rng.standard_normal((3, 20)), w: rng.standard_normal((20, 4)), bias: rng.standard_normal(4),
             wt: rng.standard_normal((4, 20)), xt: rng.standard_normal((20, 3)), s: np.float64(0.5),
             a: rng.standard_normal((2, 1, 3, 20)), b: rng.standard_normal((3, 20, 4))}
    t = tf.placeholder(dtype, [2, 3, 20], name="t")
    feeds[t] = rng.standard_normal((2, 3, 20))
    dense = tf.nn.relu(tf.tensordot(t, w, [[2], [0]]) + bias)  # trailing axes of a: plain GEMM
    leading = tf.tensordot(xt, t, [[0], [2]])  # leading of a, trailing of b: both transposed
    return [relu, both, batched, tf.matmul(x, w), dense, leading], feeds  # x @ w: the first kernel's second result


def axes_reductions():
    """Reductions over leading, middle and mixed axes (column sums, strided rows), with a
    NaN that max must propagate, an int32 sum and a squared prologue."""
    rng = np.random.default_rng(8)
    x = tf.placeholder(tf.float32, [3, 5, 4], name="x")
    d = tf.placeholder(tf.float64, [4, 3], name="d")
    k = tf.placeholder(tf.int32, [6, 2], name="k")
    xs = rng.standard_normal((3, 5, 4))
    xs[1, 2, 3] = np.nan
    fetches = [tf.reduce_sum(x, 0), tf.reduce_max(x, [0, 2]), tf.reduce_mean(x, 1, keepdims=True),
               tf.reduce_min(x, [0, 1]), tf.reduce_sum(tf.square(x), [0, 2]), tf.reduce_prod(d, 0),
               tf.reduce_mean(d, 0), tf.reduce_sum(k, 0)]
    return fetches, {x: xs, d: rng.random((4, 3)) + 0.5, k: rng.integers(-50, 50, (6, 2))}


def gather_scatter():
    """Gathers along axis 0 and 1 (repeated indices), their gradients (scatter-adds that must
    add up repeats), and one_hot along the last and the first axis."""
    rng = np.random.default_rng(10)
    p = tf.placeholder(tf.float32, [5, 3], name="p")
    q = tf.placeholder(tf.float64, [2, 4, 3], name="q")
    i = tf.placeholder(tf.int32, [2, 3], name="i")
    j = tf.placeholder(tf.int64, [5], name="j")
    labels = tf.placeholder(tf.int64, [3], name="labels")
    rows = tf.gather(p, i)
    cols = tf.gather(q, j, axis=1)
    grads = tf.gradients(tf.reduce_sum(rows * rows), p) + tf.gradients(tf.reduce_sum(tf.sin(cols)), q)
    hot = tf.one_hot(labels, 4)
    hot0 = tf.one_hot(tf.cast(labels, tf.int32), 4, on_value=2.5, off_value=-1.0, axis=0)
    feeds = {p: rng.standard_normal((5, 3)), q: rng.standard_normal((2, 4, 3)), i: [[0, 4, 0], [2, 0, 1]],
             j: [3, 3, 0, 1, 3], labels: [2, 0, 5]}
    return [rows, cols, *grads, hot, hot0], feeds


def pooling():
    """Max and average pooling and their gradients, SAME and VALID, NHWC and NCHW, with ties
    and a NaN (the first maximum takes the gradient), and max_pool_grad's own gradient."""
    rng = np.random.default_rng(11)
    x = tf.placeholder(tf.float32, [1, 5, 4, 2], name="x")
    xc = tf.placeholder(tf.float64, [1, 2, 4, 5], name="xc")
    xs = np.round(rng.standard_normal((1, 5, 4, 2)), 1)
    xs[0, 0, 0, 0] = xs[0, 0, 1, 0] = 3.0  # a tie
    xs[0, 4, 3, 1] = np.nan
    mx = tf.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    av = tf.nn.avg_pool(x, [1, 3, 2, 1], [1, 1, 2, 1], "SAME")
    mc = tf.nn.max_pool(xc, [1, 1, 3, 2], [1, 1, 1, 2], "VALID", data_format="NCHW")
    ac = tf.nn.avg_pool(xc, [1, 1, 2, 3], [1, 1, 2, 1], "SAME", data_format="NCHW")
    loss = tf.reduce_sum(tf.sin(mx)) + tf.reduce_sum(tf.square(av))
    lossc = tf.reduce_sum(tf.sin(mc)) + tf.reduce_sum(tf.square(ac))
    dx = tf.gradients(loss, x)[0]
    second = tf.gradients(tf.reduce_sum(dx * dx), x)  # through max_pool_grad: max_pool_grad_grad
    return [mx, av, mc, ac, dx, *tf.gradients(lossc, xc), *second], {x: xs, xc: rng.standard_normal((1, 2, 4, 5))}


def convolutions():
    """conv2d and both gradients: NHWC SAME, NHWC strided and dilated VALID, NCHW strided
    SAME, NHWC explicit padding, and float64."""
    rng = np.random.default_rng(12)
    x = tf.placeholder(tf.float32, [2, 5, 4, 2], name="x")
    f = tf.placeholder(tf.float32, [3, 2, 2, 3], name="f")
    xc = tf.placeholder(tf.float32, [1, 2, 5, 6], name="xc")
    xd = tf.placeholder(tf.float64, [1, 4, 4, 1], name="xd")
    fd = tf.placeholder(tf.float64, [2, 2, 1, 2], name="fd")
    outs = [tf.nn.conv2d(x, f, [1, 1, 1, 1], "SAME"),
            tf.nn.conv2d(x, f, [1, 2, 1, 1], "VALID", dilations=[1, 1, 2, 1]),
            tf.nn.conv2d(xc, f, [1, 1, 2, 2], "SAME", data_format="NCHW"),
            tf.nn.conv2d(x, f, [1, 1, 1, 1], [[0, 0], [1, 0], [0, 2], [0, 0]]),
            tf.nn.conv2d(xd, fd, [1, 2, 2, 1], "SAME")]
    losses = [tf.reduce_sum(tf.sin(o)) for o in outs]
    grads = [g for loss, ins in zip(losses, [(x, f), (x, f), (xc, f), (x, f), (xd, fd)])
             for g in tf.gradients(loss, list(ins))]
    feeds = {x: rng.standard_normal((2, 5, 4, 2)), f: rng.standard_normal((3, 2, 2, 3)),
             xc: rng.standard_normal((1, 2, 5, 6)), xd: rng.standard_normal((1, 4, 4, 1)),
             fd: rng.standard_normal((2, 2, 1, 2))}
    return outs + grads, feeds


def host_fallbacks():
    """Ops and cases without a CUDA kernel, which run their NumPy reference: an int32
    matmul, an integer mean along axis 0, a depthwise convolution and a tensordot."""
    rng = np.random.default_rng(13)
    a = tf.placeholder(tf.int32, [2, 3], name="a")
    b = tf.placeholder(tf.int32, [3, 2], name="b")
    x = tf.placeholder(tf.float32, [1, 3, 3, 2], name="x")
    f = tf.placeholder(tf.float32, [2, 2, 2, 1], name="f")
    t = tf.placeholder(tf.float32, [2, 3, 4], name="t")
    u = tf.placeholder(tf.float32, [3, 5], name="u")
    fetches = [tf.matmul(a, b), tf.reduce_mean(a, 0), tf.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "VALID"),
               tf.tensordot(t, u, [[1], [0]])]  # a middle axis: no GEMM view
    feeds = {a: rng.integers(-5, 5, (2, 3)), b: rng.integers(-5, 5, (3, 2)), x: rng.standard_normal((1, 3, 3, 2)),
             f: rng.standard_normal((2, 2, 2, 1)), t: rng.standard_normal((2, 3, 4)), u: rng.standard_normal((3, 5))}
    return fetches, feeds


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


def conv_net_train_step():
    """A tiny conv net (conv + bias + relu, max and average pooling, a dense layer) trained
    with momentum: the training step's fetches."""
    rng = np.random.default_rng(14)
    tf.set_random_seed(15)
    x = tf.placeholder(tf.float32, [None, 6, 6, 1])
    labels = tf.placeholder(tf.int64, [None])
    bias = tf.get_variable("c1", [4], initializer=tf.zeros_initializer())
    h = tf.nn.relu(tf.nn.conv2d(x, tf.get_variable("k1", [3, 3, 1, 4]), [1, 1, 1, 1], "SAME") + bias)
    h = tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    h = tf.nn.avg_pool(h, [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
    logits = tf.matmul(tf.reshape(h, [-1, 36]), tf.get_variable("w", [36, 3]))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    step = tf.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    return [loss, step], {x: rng.standard_normal((2, 6, 6, 1)).astype(np.float32), labels: rng.integers(0, 3, 2)}


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


KERNEL_PROGRAMS = [elementwise_broadcast, softmax_rows, layer_norm_rows, matmul_epilogue, axes_reductions,
                   gather_scatter, pooling, convolutions]
TRAINING_PROGRAMS = [lecture_model, mlp_train_step, conv_net_train_step, tiny_conv_net, gpu_resident_model]


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
