"""tf.layers and tf.contrib.slim / tf.contrib.layers: variable names and shapes as TF makes
them, values against NumPy, batch norm's moving averages through UPDATE_OPS, arg_scope."""
import numpy as np
import pytest

import tfjit as tf

slim = tf.contrib.slim


# -- NumPy references ---------------------------------------------------------------------------------
def np_conv2d(x, w, stride=(1, 1), padding="SAME"):
    """NHWC x, HWIO w; TF's SAME padding (the extra row/column goes after)."""
    (kh, kw), (sh, sw) = w.shape[:2], stride
    n, h, wd, _ = x.shape
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-wd // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - wd, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + sh * oh:sh, j:j + sw * ow:sw] @ w[i, j]
    return out


def np_pool(x, k, s, kind):
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    windows = np.stack([x[:, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)])
    return windows.max(0) if kind == "max" else windows.mean(0)


def load_random(sess, rng, scale=0.5):
    for v in tf.trainable_variables():
        v.load(rng.standard_normal(v.shape.as_list()) * scale, sess)


def names_and_shapes(collection=None):
    vs = tf.get_collection(collection) if collection else tf.global_variables()
    return [(v.name.split(":")[0], v.shape.as_list()) for v in vs]


# -- tf.layers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_dense_names_values_and_rank3_inputs(dtype):
    rng = np.random.default_rng(0)
    x = tf.placeholder(dtype, [None, 4])
    seq = tf.placeholder(dtype, [None, 2, 3])
    y = tf.layers.dense(x, 3, activation=tf.nn.relu)
    with tf.variable_scope("s"):
        z = tf.layers.dense(seq, 5, use_bias=False)
        tf.layers.dense(x, 2, name="fc")
    assert y.shape.as_list() == [None, 3] and z.shape.as_list() == [None, 2, 5] and y.dtype == dtype
    assert names_and_shapes() == [("dense/kernel", [4, 3]), ("dense/bias", [3]), ("s/dense/kernel", [3, 5]),
                                  ("s/fc/kernel", [4, 2]), ("s/fc/bias", [2])]
    xv, sv = rng.standard_normal((5, 4)), rng.standard_normal((5, 2, 3))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(tf.global_variables()[1]), 0)
        load_random(sess, rng)
        k, b, k2 = sess.run(tf.global_variables()[:3])
        got_y, got_z = sess.run([y, z], {x: xv, seq: sv})
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(got_y, np.maximum(xv @ k + b, 0), rtol=tol, atol=tol)
    np.testing.assert_allclose(got_z, sv @ k2, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="fc/kernel already exists"):
        tf.layers.dense(x, 2, name="s/fc")


def test_dense_reuse_and_regularizers():
    x = tf.placeholder(tf.float32, [None, 4])
    a = tf.layers.dense(x, 3, name="shared", kernel_regularizer=tf.contrib.layers.l2_regularizer(0.5))
    b = tf.layers.dense(x, 3, name="shared", reuse=True)
    assert len(tf.global_variables()) == 2
    losses = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    assert len(losses) == 1
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        kernel = sess.run(tf.global_variables()[0])
        got_a, got_b, got_loss = sess.run([a, b, losses[0]], {x: np.ones((2, 4))})
    np.testing.assert_allclose(got_a, got_b)
    np.testing.assert_allclose(got_loss, 0.5 * np.sum(kernel ** 2) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="last dimension of the inputs should be defined"):
        tf.layers.dense(tf.placeholder(tf.float32, [2, None]), 3)


@pytest.mark.parametrize("padding, strides", [("same", 1), ("valid", 2), ("SAME", (2, 1))])
def test_conv2d_layer_matches_numpy(padding, strides):
    rng = np.random.default_rng(1)
    x = tf.placeholder(tf.float64, [None, 7, 6, 2])
    y = tf.layers.conv2d(x, 3, [3, 2], strides=strides, padding=padding, activation=tf.nn.relu)
    assert names_and_shapes() == [("conv2d/kernel", [3, 2, 2, 3]), ("conv2d/bias", [3])]
    xv = rng.standard_normal((2, 7, 6, 2))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        load_random(sess, rng)
        k, b = sess.run(tf.global_variables())
        got = sess.run(y, {x: xv})
    s = (strides, strides) if isinstance(strides, int) else strides
    want = np.maximum(np_conv2d(xv, k, s, padding.upper()) + b, 0)
    assert y.shape.as_list() == [None, *want.shape[1:]]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv2d_channels_first_and_pooling_layers():
    rng = np.random.default_rng(2)
    xv = rng.standard_normal((2, 3, 6, 6))
    x = tf.constant(xv)
    y = tf.layers.conv2d(x, 4, 3, padding="same", data_format="channels_first", use_bias=False)
    mx = tf.layers.max_pooling2d(tf.transpose(x, [0, 2, 3, 1]), 2, 2)
    av = tf.layers.average_pooling2d(tf.transpose(x, [0, 2, 3, 1]), 3, 3, name="avg")
    assert y.shape.as_list() == [2, 4, 6, 6] and mx.op.name.startswith("max_pooling2d/")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        k = sess.run(tf.global_variables()[0])
        got_y, got_max, got_avg = sess.run([y, mx, av])
    nhwc = xv.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got_y, np_conv2d(nhwc, k).transpose(0, 3, 1, 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_max, np_pool(nhwc, 2, 2, "max"))
    np.testing.assert_allclose(got_avg, np_pool(nhwc, 3, 3, "avg"), rtol=1e-12)


def test_flatten_and_dropout_layers():
    x = tf.placeholder(tf.float32, [None, 2, 3, 4])
    flat = tf.layers.flatten(x)
    assert flat.shape.as_list() == [None, 24]
    dynamic = tf.layers.flatten(tf.placeholder(tf.float32, [None, None, 2]))
    training = tf.placeholder(tf.bool, [])
    off = tf.layers.dropout(x, 0.5)
    on = tf.layers.dropout(x, 0.5, training=True, seed=1)
    switched = tf.layers.dropout(x, 0.5, training=training, seed=1)
    xv = np.random.default_rng(3).standard_normal((50, 2, 3, 4)).astype(np.float32)
    with tf.Session() as sess:
        got_flat, got_off, got_on = sess.run([flat, off, on], {x: xv})
        np.testing.assert_array_equal(sess.run(dynamic, {dynamic.op.inputs[0]: np.ones((2, 5, 2))}).shape, (2, 10))
        got_inference = sess.run(switched, {x: xv, training: False})
        got_training = sess.run(switched, {x: xv, training: True})
    np.testing.assert_array_equal(got_flat, xv.reshape(50, 24))
    np.testing.assert_array_equal(got_off, xv)
    np.testing.assert_array_equal(got_inference, xv)
    for dropped in (got_on, got_training):
        kept = dropped != 0
        np.testing.assert_allclose(dropped[kept], xv[kept] * 2, rtol=1e-6)
        assert 0.4 < kept.mean() < 0.6


def np_batch_norm(x, axes, gamma, beta, eps):
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta, mean.ravel(), var.ravel()


@pytest.mark.parametrize("shape, axis, bessel", [((8, 3), -1, False), ((4, 3, 3, 2), -1, True),
                                                 ((4, 2, 3, 3), 1, True)])
def test_batch_normalization_training_updates_moving_averages(shape, axis, bessel):
    rng = np.random.default_rng(4)
    x = tf.placeholder(tf.float64, [None, *shape[1:]])
    y = tf.layers.batch_normalization(x, axis=axis, momentum=0.9, training=True)
    assert names_and_shapes() == [(f"batch_normalization/{n}", [shape[axis]]) for n in
                                  ("gamma", "beta", "moving_mean", "moving_variance")]
    assert len(tf.trainable_variables()) == 2
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    xv = rng.standard_normal(shape) * 3 + 1
    axes = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        load_random(sess, rng)
        gamma, beta = sess.run(tf.trainable_variables())
        got, _ = sess.run([y, updates], {x: xv})
        moving_mean, moving_var = sess.run(tf.global_variables()[2:])
    bshape = [1] * len(shape)
    bshape[axis] = -1
    want, mean, var = np_batch_norm(xv, axes, gamma.reshape(bshape), beta.reshape(bshape), 1e-3)
    n = xv.size / shape[axis]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(moving_mean, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(moving_var, 0.9 + 0.1 * var * (n / (n - 1) if bessel else 1), rtol=1e-12)


def test_batch_normalization_inference_and_training_tensor():
    rng = np.random.default_rng(5)
    x = tf.placeholder(tf.float32, [None, 3])
    training = tf.placeholder(tf.bool, [])
    y = tf.layers.batch_normalization(x, training=training, center=False, epsilon=0.01)
    assert [n for n, _ in names_and_shapes()] == ["batch_normalization/gamma", "batch_normalization/moving_mean",
                                                  "batch_normalization/moving_variance"]
    moving = tf.global_variables()[1:]
    update = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    xv = (rng.standard_normal((6, 3)) * 2 + 3).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(moving[0].assign([1.0, 2.0, 3.0]))
        got_inf, _ = sess.run([y, update], {x: xv, training: False})
        unchanged = sess.run(moving)
        got_train, _ = sess.run([y, update], {x: xv, training: True})
        changed = sess.run(moving)
    np.testing.assert_allclose(got_inf, (xv - [1, 2, 3]) / np.sqrt(1.01), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unchanged[0], [1, 2, 3])
    np.testing.assert_allclose(got_train, np_batch_norm(xv, (0,), 1, 0, 0.01)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(changed[0], 0.99 * np.array([1, 2, 3]) + 0.01 * xv.mean(0), rtol=1e-5)


# -- slim -----------------------------------------------------------------------------------------------
def test_slim_conv2d_variable_names_and_values():
    rng = np.random.default_rng(6)
    x = tf.placeholder(tf.float64, [None, 5, 5, 2])
    with tf.variable_scope("net"):
        a = slim.conv2d(x, 3, [3, 3])
        b = slim.conv2d(a, 4, 1, stride=2, activation_fn=None)
        c = slim.conv2d(b, 2, [1, 3], scope="Conv2d_1x3", padding="VALID", biases_initializer=None)
    assert names_and_shapes() == [("net/Conv/weights", [3, 3, 2, 3]), ("net/Conv/biases", [3]),
                                  ("net/Conv_1/weights", [1, 1, 3, 4]), ("net/Conv_1/biases", [4]),
                                  ("net/Conv2d_1x3/weights", [1, 3, 4, 2])]
    assert tf.get_collection(tf.GraphKeys.MODEL_VARIABLES) == tf.global_variables()
    assert c.shape.as_list() == [None, 3, 1, 2]
    xv = rng.standard_normal((2, 5, 5, 2))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        load_random(sess, rng)
        w1, b1, w2, b2, w3 = sess.run(tf.global_variables())
        got = sess.run(c, {x: xv})
    h = np.maximum(np_conv2d(xv, w1) + b1, 0)
    h = np_conv2d(h, w2, (2, 2)) + b2
    np.testing.assert_allclose(got, np.maximum(np_conv2d(h, w3, padding="VALID"), 0), rtol=1e-12, atol=1e-12)


def test_slim_default_initializers():
    x = tf.placeholder(tf.float32, [None, 8, 8, 16])
    slim.conv2d(x, 32, 3)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w, b = sess.run(tf.global_variables())
    limit = np.sqrt(6 / (9 * 16 + 9 * 32))  # xavier (glorot uniform) weights, zero biases
    assert np.abs(w).max() <= limit and abs(w.std() - limit / np.sqrt(3)) < 0.1 * limit
    np.testing.assert_array_equal(b, 0)


def test_slim_arg_scope():
    x = tf.placeholder(tf.float32, [None, 6, 6, 3])
    with slim.arg_scope([slim.conv2d, slim.fully_connected], activation_fn=None,
                        weights_initializer=tf.constant_initializer(0.1)):
        with slim.arg_scope([slim.conv2d], padding="VALID") as sc:
            a = slim.conv2d(x, 2, 3)
            b = slim.conv2d(x, 2, 3, padding="SAME")
        f = slim.fully_connected(slim.flatten(a), 4)
    with slim.arg_scope(sc):
        c = slim.conv2d(x, 2, 3)
    d = slim.conv2d(x, 2, 3)
    assert a.shape.as_list() == [None, 4, 4, 2] and b.shape.as_list() == [None, 6, 6, 2]
    assert c.shape.as_list() == [None, 4, 4, 2] and d.shape.as_list() == [None, 6, 6, 2]
    assert a.op.node.op == "bias_add" and d.op.node.op == "relu" and f.op.node.op == "bias_add"
    assert [n for n, _ in names_and_shapes()] == [f"{layer}/{v}" for layer in ("Conv", "Conv_1", "fully_connected",
                                                                                "Conv_2", "Conv_3")
                                                  for v in ("weights", "biases")]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_allclose(sess.run(f, {x: np.ones((1, 6, 6, 3))}), 0.1 * 32 * 2.7, rtol=1e-5)

    @slim.add_arg_scope
    def scaled(t, factor=1.0):
        return t * factor

    with slim.arg_scope([scaled], factor=3.0):
        assert slim.has_arg_scope(scaled)
        with tf.Session() as sess:
            assert sess.run(scaled(tf.constant(2.0))) == 6.0
            assert sess.run(scaled(tf.constant(2.0), factor=0.5)) == 1.0
    with pytest.raises(ValueError, match="not decorated with @add_arg_scope"):
        with slim.arg_scope([tf.layers.dense], units=3):
            pass


def test_slim_conv2d_with_batch_norm_normalizer():
    rng = np.random.default_rng(7)
    x = tf.placeholder(tf.float64, [None, 4, 4, 2])
    y = slim.conv2d(x, 3, 3, normalizer_fn=slim.batch_norm,
                    normalizer_params={"decay": 0.5, "is_training": True, "scale": True}, scope="Conv2d_1x1")
    assert names_and_shapes() == [("Conv2d_1x1/weights", [3, 3, 2, 3]), ("Conv2d_1x1/BatchNorm/beta", [3]),
                                  ("Conv2d_1x1/BatchNorm/gamma", [3]), ("Conv2d_1x1/BatchNorm/moving_mean", [3]),
                                  ("Conv2d_1x1/BatchNorm/moving_variance", [3])]
    assert len(tf.trainable_variables()) == 3 and len(tf.get_collection(tf.GraphKeys.MODEL_VARIABLES)) == 5
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    xv = rng.standard_normal((3, 4, 4, 2))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        load_random(sess, rng)
        w, beta, gamma = sess.run(tf.trainable_variables())
        got, _ = sess.run([y, updates], {x: xv})
        moving_mean, moving_var = sess.run(tf.global_variables()[3:])
    want, mean, var = np_batch_norm(np_conv2d(xv, w), (0, 1, 2), gamma, beta, 1e-3)
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(moving_mean, 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(moving_var, 0.5 + 0.5 * var * 48 / 47, rtol=1e-12)


def test_slim_batch_norm_in_place_updates_and_inference():
    x = tf.placeholder(tf.float32, [None, 2])
    y = slim.batch_norm(x, decay=0.5, updates_collections=None)
    assert not tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.variable_scope("inf"):
        z = slim.batch_norm(x, is_training=False)
    xv = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run(y, {x: xv})
        moving_mean = sess.run(tf.global_variables()[1])
        np.testing.assert_allclose(sess.run(z, {x: xv}), xv / np.sqrt(1.001), rtol=1e-6)
    np.testing.assert_allclose(got, (xv - xv.mean(0)) / np.sqrt(xv.var(0) + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(moving_mean, 0.5 * xv.mean(0))


def test_slim_fully_connected_pooling_flatten_dropout():
    rng = np.random.default_rng(8)
    x = tf.placeholder(tf.float32, [None, 4, 4, 2])
    mx = slim.max_pool2d(x, [2, 2])
    av = slim.avg_pool2d(x, 2, stride=1, padding="VALID", scope="pool")
    flat = slim.flatten(mx)
    fc = slim.fully_connected(flat, 3, scope="logits", outputs_collections="outs")
    kept = slim.dropout(fc, 0.5, is_training=False)
    assert mx.op.name.startswith("MaxPool2D/") and av.op.name.startswith("pool/") and flat.shape.as_list() == [None, 8]
    assert names_and_shapes() == [("logits/weights", [8, 3]), ("logits/biases", [3])]
    assert tf.get_collection("outs") == [fc]
    xv = rng.standard_normal((2, 4, 4, 2)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w, b = sess.run(tf.global_variables())
        got_mx, got_av, got_fc, got_kept = sess.run([mx, av, fc, kept], {x: xv})
    np.testing.assert_allclose(got_mx, np_pool(xv, 2, 2, "max"))
    np.testing.assert_allclose(got_av, np_pool(xv, 2, 1, "avg"), rtol=1e-6)
    want_fc = np.maximum(np_pool(xv, 2, 2, "max").reshape(2, 8) @ w + b, 0)
    np.testing.assert_allclose(got_fc, want_fc, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_kept, got_fc)


def test_contrib_namespaces_and_initializers():
    import tfjit
    from tfjit.compat.losses import l2_regularizer

    assert tfjit.contrib.slim is slim
    assert tf.contrib.layers.conv2d is slim.conv2d and tf.contrib.layers.fully_connected is slim.fully_connected
    assert tf.contrib.layers.l2_regularizer is l2_regularizer
    w = tf.get_variable("w", [200, 300], initializer=tf.contrib.layers.xavier_initializer(seed=1))
    v = tf.get_variable("v", [100, 400], initializer=tf.contrib.layers.variance_scaling_initializer(seed=2))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        wv, vv = sess.run([w, v])
    limit = np.sqrt(6 / 500)
    assert np.abs(wv).max() <= limit and abs(wv.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert abs(vv.std() - np.sqrt(2 / 100)) < 0.05 * np.sqrt(2 / 100)  # contrib: variance 2 / fan_in
    x = tf.constant(np.array([[1.0, -2.0]], np.float32))
    with tf.Session() as sess:
        assert sess.run(tf.contrib.layers.l1_regularizer(0.5)(x)) == pytest.approx(1.5)
        assert sess.run(tf.contrib.layers.l2_regularizer(0.5)(x)) == pytest.approx(1.25)


def test_slim_errors_name_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"Convolution expects input with rank 4, got shape \(2, 3\)"):
        slim.conv2d(tf.zeros([2, 3]), 4, 3)
    with pytest.raises(ValueError, match=r"batch_norm: inputs must be floating point, got int32"):
        slim.batch_norm(tf.zeros([2, 3], tf.int32))
    with pytest.raises(ValueError, match="kernel_size` argument must be a tuple of 2"):
        slim.conv2d(tf.zeros([1, 4, 4, 1]), 4, [3, 3, 3])
