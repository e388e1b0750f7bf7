"""tf.losses, tf.metrics.accuracy and the clipping functions against NumPy re-implementations."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit.compat.losses import l2_regularizer

RNG = np.random.default_rng(11)


def _run(t, feed=None):
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(tf.local_variables_initializer())
        return sess.run(t, feed)


def _nonzero_mean(losses: np.ndarray, weights) -> np.ndarray:
    """TF's SUM_BY_NONZERO_WEIGHTS: weighted sum over the number of non-zero (broadcast) weights."""
    w = np.broadcast_to(np.asarray(weights, np.float32), losses.shape)
    present = np.count_nonzero(w)
    return np.float32((losses * w).sum() / present) if present else np.float32(0.0)


# -- regression losses -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_mean_squared_error_and_absolute_difference(dtype):
    labels = (RNG.standard_normal((4, 3)) * 3).astype(dtype)
    predictions = (RNG.standard_normal((4, 3)) * 3).astype(dtype)
    weights = np.array([[1.0], [0.0], [2.0], [0.5]], np.float32)  # [4, 1] broadcasts over columns
    mse = tf.losses.mean_squared_error(labels, predictions, weights=weights)
    mae = tf.losses.absolute_difference(labels, predictions)
    assert mse.dtype == tf.float32 and mse.shape.as_list() == []
    diff = predictions.astype(np.float32) - labels.astype(np.float32)
    got = _run([mse, mae])
    np.testing.assert_allclose(got[0], _nonzero_mean(diff ** 2, weights), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.abs(diff).mean(), rtol=1e-6)
    assert tf.get_collection(tf.GraphKeys.LOSSES) == [mse, mae]
    assert mse.name == "mean_squared_error/value:0"


@pytest.mark.parametrize("reduction", ["none", "weighted_sum", "weighted_mean", "weighted_sum_over_batch_size",
                                       "weighted_sum_by_nonzero_weights"])
def test_reductions(reduction):
    losses = RNG.random((3, 2)).astype(np.float64)
    weights = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 1.0]], np.float32)
    loss = tf.losses.compute_weighted_loss(losses, weights, reduction=reduction)
    assert loss.dtype == tf.float64  # cast back to the losses' dtype
    weighted = losses.astype(np.float32) * weights
    expected = {"none": weighted, "weighted_sum": weighted.sum(),
                "weighted_mean": weighted.sum() / weights.sum(),
                "weighted_sum_over_batch_size": weighted.sum() / 6,
                "weighted_sum_by_nonzero_weights": weighted.sum() / 4}[reduction]
    np.testing.assert_allclose(_run(loss), expected, rtol=1e-6)


def test_all_zero_weights_give_zero_and_bad_weights_fail():
    loss = tf.losses.mean_squared_error(np.ones(3), np.zeros(3), weights=np.zeros(3, np.float32))
    assert _run(loss) == 0.0
    with pytest.raises(ValueError, match=r"weights can not be broadcast to values. values.rank=2. weights.rank=1"):
        tf.losses.mean_squared_error(np.ones((2, 3)), np.zeros((2, 3)), weights=np.ones(3))
    with pytest.raises(ValueError, match="Mismatch at dim 1"):
        tf.losses.mean_squared_error(np.ones((2, 3)), np.zeros((2, 3)), weights=np.ones((2, 2)))
    with pytest.raises(ValueError, match="Invalid Reduction Key bogus"):
        tf.losses.compute_weighted_loss(np.ones(2), reduction="bogus")
    with pytest.raises(ValueError, match="`labels` must not be None"):
        tf.losses.mean_squared_error(None, np.ones(2))


def test_weights_of_unknown_batch_size_are_fed():
    labels = tf.placeholder(tf.float32, [None, 2])
    weights = tf.placeholder(tf.float32, [None, 1])
    loss = tf.losses.mean_squared_error(labels, tf.zeros_like(labels), weights=weights)
    lv, wv = RNG.random((5, 2)).astype(np.float32), np.float32([[1], [0], [0], [2], [1]])
    np.testing.assert_allclose(_run(loss, {labels: lv, weights: wv}), _nonzero_mean(lv ** 2, wv), rtol=1e-6)


# -- classification losses ---------------------------------------------------------------------
def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_sparse_softmax_cross_entropy(dtype):
    logits = RNG.standard_normal((5, 4)).astype(dtype)
    classes = RNG.integers(0, 4, 5)
    onehot = np.eye(4, dtype=dtype)[classes]
    weights = np.float32([1, 0, 2, 1, 1])
    dense = tf.losses.softmax_cross_entropy(onehot, logits, weights=weights)
    smooth = tf.losses.softmax_cross_entropy(onehot, logits, label_smoothing=0.2)
    sparse = tf.losses.sparse_softmax_cross_entropy(classes.astype(np.int32), logits, weights=weights)
    column = tf.losses.sparse_softmax_cross_entropy(classes.reshape(5, 1).astype(np.int64), logits)
    assert dense.dtype.np_dtype == dtype and sparse.dtype.np_dtype == dtype
    per_row = -(onehot * _log_softmax(logits.astype(np.float64))).sum(-1)
    smoothed = onehot * 0.8 + 0.2 / 4
    got = _run([dense, smooth, sparse, column])
    rtol = 1e-5 if dtype == np.float32 else 1e-6  # the reduction runs in float32, as in TF
    np.testing.assert_allclose(got[0], _nonzero_mean(per_row, weights), rtol=rtol)
    np.testing.assert_allclose(got[1], (-(smoothed * _log_softmax(logits.astype(np.float64))).sum(-1)).mean(),
                               rtol=rtol)
    np.testing.assert_allclose(got[2], got[0], rtol=rtol)
    np.testing.assert_allclose(got[3], per_row.mean(), rtol=rtol)


def test_sigmoid_cross_entropy_with_smoothing():
    logits = RNG.standard_normal((3, 4)).astype(np.float32) * 4
    labels = RNG.integers(0, 2, (3, 4))
    loss = tf.losses.sigmoid_cross_entropy(labels, logits, weights=2.0, label_smoothing=0.1)
    z = labels * 0.9 + 0.05
    per = np.maximum(logits, 0) - logits * z + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(_run(loss), (2 * per).sum() / per.size, rtol=1e-5)


def test_softmax_loss_trains_with_gradients_only_to_the_logits():
    W = tf.Variable(np.zeros((3, 2), np.float32), name="W")
    labels = tf.Variable(np.float32([[1, 0], [0, 1]]), name="labels")
    x = np.float32([[1, 2, 3], [-1, 0, 1]])
    loss = tf.losses.softmax_cross_entropy(labels, tf.matmul(x, W))
    assert tf.gradients(loss, [labels.value()]) == [None]
    train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run(loss)
        for _ in range(5):
            sess.run(train)
        assert sess.run(loss) < first
        np.testing.assert_array_equal(sess.run(labels), [[1, 0], [0, 1]])


# -- regularization and the total loss ---------------------------------------------------------
def test_regularization_and_total_loss():
    assert _run(tf.losses.get_regularization_loss()) == 0.0
    with tf.variable_scope("net", regularizer=l2_regularizer(0.1)):
        tf.get_variable("W", initializer=np.float32([[1.0, -2.0], [0.5, 3.0]]))
    b = tf.get_variable("b", initializer=np.float32([4.0]), regularizer=l2_regularizer(0.5))
    tf.get_variable("c", [2], regularizer=l2_regularizer(0.0))  # scale 0 adds nothing
    regs = tf.losses.get_regularization_losses()
    assert len(regs) == 2 and regs[0].op.name.startswith("net/W/Regularizer")
    data = tf.losses.mean_squared_error(np.float32([1.0]), b)
    total_reg = tf.losses.get_regularization_loss()
    total = tf.losses.get_total_loss()
    w = np.float32([[1.0, -2.0], [0.5, 3.0]])
    expected_reg = 0.1 * (w ** 2).sum() / 2 + 0.5 * 16 / 2
    got = _run([total_reg, total, tf.losses.get_total_loss(add_regularization_losses=False)])
    np.testing.assert_allclose(got, [expected_reg, expected_reg + 9.0, 9.0], rtol=1e-6)
    assert total_reg.op.name == "total_regularization_loss" and total.op.name == "total_loss"
    assert data in tf.losses.get_losses()
    with pytest.raises(ValueError, match="scale cannot be an integer"):
        l2_regularizer(1)
    with pytest.raises(ValueError, match="less than 0"):
        l2_regularizer(-0.5)


# -- metrics ------------------------------------------------------------------------------------
def test_accuracy_streams_over_batches():
    labels = tf.placeholder(tf.int64, [None])
    predictions = tf.placeholder(tf.int32, [None, 1])  # a squeezable trailing dim
    acc, update = tf.metrics.accuracy(labels, predictions)
    acc2, update2 = tf.metrics.accuracy(labels, tf.squeeze(predictions, [1]), weights=tf.ones_like(labels) * 2)
    assert [v.op.name for v in tf.local_variables()] == ["accuracy/total", "accuracy/count",
                                                         "accuracy_1/total", "accuracy_1/count"]
    assert tf.trainable_variables() == [] and acc.op.name == "accuracy/value"
    batches = [(np.array([1, 2, 3]), np.array([[1], [0], [3]])), (np.array([0, 0]), np.array([[1], [0]]))]
    correct = total = 0
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        assert sess.run(acc) == 0.0
        for lab, pred in batches:
            correct += int((lab == pred[:, 0]).sum())
            total += len(lab)
            got = sess.run([update, update2], {labels: lab, predictions: pred})
            np.testing.assert_allclose(got, [correct / total] * 2, rtol=1e-6)
            np.testing.assert_allclose(sess.run(acc), correct / total, rtol=1e-6)
        sess.run(tf.local_variables_initializer())
        assert sess.run(acc2) == 0.0


# -- clipping -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_by_norm(dtype):
    t = RNG.standard_normal((3, 4)).astype(dtype) * 3
    whole = tf.clip_by_norm(t, 2.0)
    rows = tf.clip_by_norm(t, 2.0, axes=[1])
    zero = tf.clip_by_norm(np.zeros(3, dtype), 1.0)
    small = tf.clip_by_norm(t * 1e-3, 2.0)
    norm_rows = np.linalg.norm(t, axis=1, keepdims=True)
    got = _run([whole, rows, zero, small])
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[0], t * 2.0 / max(np.linalg.norm(t), 2.0), rtol=rtol)
    np.testing.assert_allclose(got[1], t * 2.0 / np.maximum(norm_rows, 2.0), rtol=rtol)
    np.testing.assert_array_equal(got[2], np.zeros(3))
    np.testing.assert_allclose(got[3], t * 1e-3, rtol=rtol)
    assert whole.op.name == "clip_by_norm" and whole.dtype.np_dtype == dtype


def test_global_norm_and_clip_by_global_norm():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal(4)
    norm = np.sqrt((a ** 2).sum() + (b ** 2).sum())
    clipped, got_norm = tf.clip_by_global_norm([a, None, b], 1.0)
    assert clipped[1] is None and clipped[0].op.name == "clip_by_global_norm/clip_by_global_norm/_0"
    same, _ = tf.clip_by_global_norm([a], 100.0)
    infinite, _ = tf.clip_by_global_norm([np.array([np.inf, 1.0])], 1.0)
    got = _run([tf.global_norm([a, None, b]), got_norm, clipped[0], clipped[2], same[0], infinite[0]])
    np.testing.assert_allclose(got[:2], [norm, norm], rtol=1e-12)
    np.testing.assert_allclose(got[2], a / norm, rtol=1e-12)
    np.testing.assert_allclose(got[3], b / norm, rtol=1e-12)
    np.testing.assert_allclose(got[4], a, rtol=1e-12)
    assert np.isnan(got[5]).all()
    with pytest.raises(TypeError, match="should be a sequence of tensors"):
        tf.clip_by_global_norm(tf.constant([1.0]), 1.0)
