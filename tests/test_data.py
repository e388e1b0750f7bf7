"""tf.data pipelines (sources, map, filter, batch, shuffle, repeat, take, skip, zip) read
through one-shot and initializable iterators, compared with NumPy, on both backends."""
import threading

import numpy as np
import pytest

import tfjit as tf
from tfjit import config


@pytest.fixture(params=["reference", "numba"])
def backend(request):
    old = config.current.backend
    tf.config.set_backend(request.param)
    yield request.param
    tf.config.set_backend(old)


def _drain(sess, tensors, feed=None):
    out = []
    while True:
        try:
            out.append(sess.run(tensors, feed))
        except tf.errors.OutOfRangeError:
            return out


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
def test_map_and_batch_match_numpy(backend, dtype):
    x = (np.arange(22).reshape(11, 2) - 5).astype(dtype)
    ds = tf.data.Dataset.from_tensor_slices(x).map(lambda r: tf.square(r) + r).batch(4)
    assert ds.output_types == tf.as_dtype(dtype) and ds.output_shapes.as_list() == [None, 2]
    nxt = ds.make_one_shot_iterator().get_next()
    assert nxt.op.node.op == "iterator_get_next"
    with tf.Session() as sess:
        got = _drain(sess, nxt)
    want = x * x + x
    assert [b.shape[0] for b in got] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(got), want)
    assert got[0].dtype == dtype


def test_structures_tuple_and_dict_with_map(backend):
    x = np.arange(6, dtype=np.float32)
    y = np.arange(6, dtype=np.int32) * 10
    ds = tf.data.Dataset.from_tensor_slices((x, {"y": y}))
    assert ds.output_types == (tf.float32, {"y": tf.int32})
    ds = ds.map(lambda a, d: {"sum": a + tf.cast(d["y"], tf.float32), "y": d["y"]})
    nxt = ds.batch(3, drop_remainder=True).make_one_shot_iterator().get_next()
    assert nxt["sum"].shape.as_list() == [3] and nxt["y"].dtype == tf.int32
    with tf.Session() as sess:
        got = _drain(sess, nxt)
    np.testing.assert_allclose(np.concatenate([g["sum"] for g in got]), x + y)
    np.testing.assert_array_equal(np.concatenate([g["y"] for g in got]), y)


def test_sources_range_from_tensors_zip_take_skip_repeat_filter():
    r = tf.data.Dataset.range(2, 12, 3)  # 2 5 8 11
    assert r.output_types == tf.int64
    pairs = tf.data.Dataset.zip((r, tf.data.Dataset.from_tensor_slices([1.5, 2.5, 3.5]))).repeat(2)
    whole = tf.data.Dataset.from_tensors(np.eye(2, dtype=np.float32)).repeat(3)
    odd = tf.data.Dataset.range(10).filter(lambda v: tf.equal(v % 2, 1)).skip(1).take(3)
    cat = tf.data.Dataset.range(2).concatenate(tf.data.Dataset.range(5, 7)).prefetch(1)
    with tf.Session() as sess:
        got_pairs = _drain(sess, pairs.make_one_shot_iterator().get_next())
        got_whole = _drain(sess, whole.make_one_shot_iterator().get_next())
        got_odd = _drain(sess, odd.make_one_shot_iterator().get_next())
        got_cat = _drain(sess, cat.make_one_shot_iterator().get_next())
    assert [(int(a), float(b)) for a, b in got_pairs] == [(2, 1.5), (5, 2.5), (8, 3.5)] * 2
    assert len(got_whole) == 3 and all((w == np.eye(2)).all() for w in got_whole)
    assert got_odd == [3, 5, 7]
    assert got_cat == [0, 1, 5, 6]
    assert np.asarray(got_pairs[0][1]).dtype == np.float32  # Python floats become float32


def _shuffled(seed, epochs=1, buffer=5):
    tf.reset_default_graph()
    ds = tf.data.Dataset.range(12).shuffle(buffer, seed=seed).repeat(epochs)
    with tf.Session() as sess:
        return [int(v) for v in _drain(sess, ds.make_one_shot_iterator().get_next())]


def test_shuffle_is_deterministic_with_a_seed_and_reshuffles_each_epoch():
    a, b, c = _shuffled(3, epochs=2), _shuffled(3, epochs=2), _shuffled(4, epochs=2)
    assert a == b and a != c
    assert sorted(a[:12]) == list(range(12)) and sorted(a[12:]) == list(range(12))
    assert a[:12] != list(range(12)) and a[:12] != a[12:]
    assert _shuffled(3, buffer=1) == list(range(12))  # a buffer of one keeps the order
    # A buffer of k can only move an element forward by less than k places.
    assert all(v <= i + 4 for i, v in enumerate(_shuffled(5, buffer=5)))


def test_graph_seed_makes_shuffle_deterministic():
    def run():
        tf.reset_default_graph()
        tf.set_random_seed(11)
        ds = tf.data.Dataset.range(20).shuffle(20)
        with tf.Session() as sess:
            return [int(v) for v in _drain(sess, ds.make_one_shot_iterator().get_next())]

    assert run() == run()


def test_initializable_iterator_with_fed_placeholder_restarts(backend):
    p = tf.placeholder(tf.float32, [None, 3])
    ds = tf.data.Dataset.from_tensor_slices(p).map(lambda r: r * 2.0).batch(2)
    it = ds.make_initializable_iterator()
    nxt = it.get_next()
    assert it.initializer.node.op == "iterator_init"
    a = np.arange(15, dtype=np.float32).reshape(5, 3)
    b = -np.ones((2, 3), np.float32)
    with tf.Session() as sess:
        with pytest.raises(tf.errors.FailedPreconditionError, match="not been initialized"):
            sess.run(nxt)
        sess.run(it.initializer, {p: a})
        np.testing.assert_array_equal(sess.run(nxt), a[:2] * 2)
        sess.run(it.initializer, {p: b})  # re-initialising starts over with the new data
        np.testing.assert_array_equal(np.concatenate(_drain(sess, nxt)), b * 2)
        sess.run(it.initializer, {p: a})
        np.testing.assert_array_equal(np.concatenate(_drain(sess, nxt)), a * 2)
    with pytest.raises(ValueError, match="one-shot iterator"):
        ds.make_one_shot_iterator()
    with pytest.raises(ValueError, match="does not have an initializer"):
        tf.data.Dataset.range(3).make_one_shot_iterator().initializer


def test_build_errors():
    with pytest.raises(ValueError, match="one first dimension"):
        tf.data.Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="rank >= 1"):
        tf.data.Dataset.from_tensor_slices(np.float32(1.0))
    with pytest.raises(ValueError, match="batch_size must be greater than zero"):
        tf.data.Dataset.range(3).batch(0)
    with pytest.raises(tf.errors.GraphError, match=r"matmul"):
        tf.data.Dataset.from_tensor_slices(np.zeros((4, 3), np.float32)).map(
            lambda r: tf.matmul(r, r))  # rank-1 operands: the trace names the op


def test_training_loop_over_a_dataset_counts_every_example(backend):
    rng = np.random.default_rng(2)
    n = 40
    xs = rng.standard_normal((n, 2)).astype(np.float32)
    ys = xs @ np.array([[2.0], [-1.0]], np.float32) + 0.5
    ds = tf.data.Dataset.from_tensor_slices((xs, ys, np.arange(n))).shuffle(16, seed=0).repeat(3).batch(8)
    bx, by, bid = ds.make_one_shot_iterator().get_next()
    w = tf.Variable(tf.zeros([2, 1]))
    b = tf.Variable(0.0)
    loss = tf.reduce_mean(tf.square(tf.matmul(bx, w) + b - by))
    step = tf.train.GradientDescentOptimizer(0.2).minimize(loss)
    seen, losses = [], []
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for ids, value, _ in _drain(sess, [bid, loss, step]):
            seen.extend(ids.tolist())
            losses.append(value)
    assert sorted(seen) == sorted(list(range(n)) * 3)
    assert losses[-1] < 0.05 * losses[0]


def test_threads_share_one_iterator_without_duplicates():
    nxt = tf.data.Dataset.range(200).make_one_shot_iterator().get_next()
    seen = [[], []]
    with tf.Session() as sess:
        def pull(k):
            seen[k].extend(int(v) for v in _drain(sess, nxt))

        threads = [threading.Thread(target=pull, args=(k,), daemon=True) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5.0)
    assert sorted(seen[0] + seen[1]) == list(range(200))
