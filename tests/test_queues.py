"""Queues (FIFO, random-shuffle, padding), their blocking semantics across threads, queue
runners with the coordinator, and the queue-based input producers, on both backends."""
import threading

import numpy as np
import pytest

import tfjit as tf
from tfjit import config

WAIT = 2.0  # the longest any test waits for a thread (only when something is wrong)
BLOCKED = 0.15  # how long a thread must stay blocked to count as blocked


@pytest.fixture(params=["reference", "numba"])
def backend(request):
    old = config.current.backend
    tf.config.set_backend(request.param)
    yield request.param
    tf.config.set_backend(old)


def _in_thread(fn):
    """Start `fn` in a daemon thread; returns (thread, box) where box gets 'value' or 'error'."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001  (the test inspects it)
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


# -- FIFO basics ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_fifo_enqueue_dequeue_in_order(backend, dtype):
    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((5, 3)) * 4).astype(dtype)
    q = tf.FIFOQueue(10, [tf.as_dtype(dtype), tf.int32], shapes=[[3], []])
    enq = q.enqueue([tf.placeholder(tf.as_dtype(dtype), [3], name="row"), tf.placeholder(tf.int32, [], name="i")])
    enq_many = q.enqueue_many([rows[1:], np.arange(1, 5, dtype=np.int32)])
    one = q.dequeue()
    two = q.dequeue_many(2)
    size = q.size()
    assert enq.node.op == "queue_enqueue" and enq_many.node.op == "queue_enqueue_many"
    assert one[0].op.node.op == "queue_dequeue" and two[0].op.node.op == "queue_dequeue_many"
    assert size.op.node.op == "queue_size" and size.dtype == tf.int32
    assert two[0].shape.as_list() == [2, 3] and two[1].shape.as_list() == [2]
    with tf.Session() as sess:
        sess.run(enq, {"row:0": rows[0], "i:0": 0})
        sess.run(enq_many)
        assert sess.run(size) == 5
        r, i = sess.run(one)
        np.testing.assert_array_equal(r, rows[0])
        assert i == 0 and r.dtype == dtype
        r, i = sess.run(two)
        np.testing.assert_array_equal(r, rows[1:3])
        np.testing.assert_array_equal(i, [1, 2])
        assert sess.run(size) == 2


def test_single_component_and_named_queues():
    q = tf.FIFOQueue(4, tf.float32, shapes=[2])
    d = q.dequeue()
    assert isinstance(d, tf.Tensor) and d.shape.as_list() == [2]
    named = tf.FIFOQueue(4, [tf.float32, tf.int64], shapes=[[], []], names=["x", "y"])
    enq = named.enqueue({"x": 1.5, "y": np.int64(7)})
    out = named.dequeue()
    with tf.Session() as sess:
        sess.run([q.enqueue([[1.0, 2.0]]), enq])
        np.testing.assert_array_equal(sess.run(d), [1.0, 2.0])
        assert sess.run(out) == {"x": np.float32(1.5), "y": 7}
    with pytest.raises(ValueError, match="must enqueue a dictionary"):
        named.enqueue([1.0, 2])
    with pytest.raises(ValueError, match="do not match names"):
        named.enqueue({"x": 1.0, "z": 2})


def test_build_errors_name_the_op_and_shapes():
    q = tf.FIFOQueue(4, [tf.float32], shapes=[[3]])
    with pytest.raises(tf.errors.GraphError, match=r"queue_enqueue.*f32\[2\].*f32\[3\]"):
        q.enqueue([np.zeros(2, np.float32)])
    with pytest.raises(tf.errors.GraphError, match=r"queue_enqueue_many.*rank >= 1"):
        q.enqueue_many([np.float32(1.0)])
    with pytest.raises(tf.errors.GraphError, match=r"queue_enqueue_many.*f32\[4\].*f32\[3\]"):
        q.enqueue_many([np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="2 values"):
        q.enqueue([1.0, 2.0])
    with pytest.raises(ValueError, match="known while building"):
        q.dequeue_many(tf.placeholder(tf.int32, []))
    with pytest.raises(ValueError, match="min_after_dequeue"):
        tf.RandomShuffleQueue(4, 4, tf.float32)


def test_runtime_shape_mismatch_and_unknown_shapes():
    q = tf.FIFOQueue(4, [tf.float32], shapes=[[None]])
    p = tf.placeholder(tf.float32, [None, None])
    enq_many = q.enqueue_many([p])
    loose = tf.FIFOQueue(4, tf.float32)
    with tf.Session() as sess:
        sess.run(enq_many, {p: np.ones((2, 3), np.float32)})
        sess.run(loose.enqueue(np.ones(2, np.float32)))
        np.testing.assert_array_equal(sess.run(loose.dequeue()), np.ones(2, np.float32))
        with pytest.raises(tf.errors.InvalidArgumentError, match="specified shapes"):
            sess.run(loose.dequeue_many(1))


# -- close -----------------------------------------------------------------------------------
def test_close_drains_then_out_of_range(backend):
    q = tf.FIFOQueue(10, tf.int32, shapes=[[]])
    with tf.Session() as sess:
        sess.run(q.enqueue_many([[1, 2, 3, 4, 5]]))
        close = q.close()
        assert close.node.op == "queue_close" and not sess.run(q.is_closed())
        sess.run(close)
        assert sess.run(q.is_closed()) and q.is_closed().op.node.op == "queue_is_closed"
        with pytest.raises(tf.errors.CancelledError, match="is closed"):
            sess.run(q.enqueue(6))
        assert sess.run(q.dequeue()) == 1
        with pytest.raises(tf.errors.OutOfRangeError, match=r"requested 5, current size 4"):
            sess.run(q.dequeue_many(5))  # too few: nothing is taken
        np.testing.assert_array_equal(sess.run(q.dequeue_up_to(3)), [2, 3, 4])
        np.testing.assert_array_equal(sess.run(q.dequeue_up_to(3)), [5])
        assert q.dequeue_up_to(3).op.node.op == "queue_dequeue_up_to"
        with pytest.raises(tf.errors.OutOfRangeError):
            sess.run(q.dequeue_up_to(3))
        with pytest.raises(tf.errors.OutOfRangeError, match="is closed and has insufficient elements"):
            sess.run(q.dequeue())


def test_blocked_dequeue_wakes_on_enqueue_and_on_close():
    q = tf.FIFOQueue(4, tf.float32, shapes=[[]])
    deq, enq, close = q.dequeue(), q.enqueue(2.5), q.close()
    with tf.Session() as sess:
        t, box = _in_thread(lambda: sess.run(deq))
        t.join(BLOCKED)
        assert t.is_alive(), "a dequeue on an empty queue must block"
        sess.run(enq)
        t.join(WAIT)
        assert box == {"value": np.float32(2.5)}
        t, box = _in_thread(lambda: sess.run(deq))
        t.join(BLOCKED)
        assert t.is_alive()
        sess.run(close)
        t.join(WAIT)
        assert isinstance(box.get("error"), tf.errors.OutOfRangeError)


def test_capacity_blocks_enqueue_until_a_dequeue():
    q = tf.FIFOQueue(2, tf.int32, shapes=[[]])
    with tf.Session() as sess:
        sess.run(q.enqueue_many([[1, 2]]))
        enq = q.enqueue(3)
        t, box = _in_thread(lambda: sess.run(enq))
        t.join(BLOCKED)
        assert t.is_alive(), "an enqueue on a full queue must block"
        assert sess.run(q.dequeue()) == 1
        t.join(WAIT)
        assert not t.is_alive() and "error" not in box
        np.testing.assert_array_equal(sess.run(q.dequeue_many(2)), [2, 3])


def test_enqueue_many_fills_as_room_appears():
    q = tf.FIFOQueue(2, tf.int32, shapes=[[]])
    with tf.Session() as sess:
        enq = q.enqueue_many([np.arange(5, dtype=np.int32)])
        t, box = _in_thread(lambda: sess.run(enq))
        got = [sess.run(q.dequeue()) for _ in range(5)]
        t.join(WAIT)
        assert got == [0, 1, 2, 3, 4] and "error" not in box


@pytest.mark.parametrize("cancel", [True, False])
def test_close_with_and_without_cancelling_pending_enqueues(cancel):
    q = tf.FIFOQueue(1, tf.int32, shapes=[[]])
    with tf.Session() as sess:
        sess.run(q.enqueue(1))
        enq = q.enqueue(2)
        t, box = _in_thread(lambda: sess.run(enq))
        t.join(BLOCKED)
        assert t.is_alive()
        if cancel:
            sess.run(q.close(cancel_pending_enqueues=True))
            t.join(WAIT)
            assert isinstance(box.get("error"), tf.errors.CancelledError)
            assert sess.run(q.dequeue()) == 1
        else:  # as in TF, the close waits behind the pending enqueue, which completes once there is room
            closer, closed = _in_thread(lambda: sess.run(q.close()))
            closer.join(BLOCKED)
            assert closer.is_alive() and t.is_alive()
            with pytest.raises(tf.errors.CancelledError, match="is closed"):
                sess.run(q.enqueue(3))  # an enqueue behind the close fails
            assert sess.run(q.dequeue()) == 1
            t.join(WAIT)
            closer.join(WAIT)
            assert "error" not in box and "error" not in closed
            assert sess.run(q.dequeue()) == 2
        with pytest.raises(tf.errors.OutOfRangeError):
            sess.run(q.dequeue())


def test_closing_the_session_cancels_blocked_ops():
    q = tf.FIFOQueue(1, tf.int32, shapes=[[]])
    deq = q.dequeue()
    sess = tf.Session()
    t, box = _in_thread(lambda: sess.run(deq))
    t.join(BLOCKED)
    assert t.is_alive()
    sess.close()
    t.join(WAIT)
    assert isinstance(box.get("error"), tf.errors.CancelledError)


def test_ops_of_one_queue_keep_program_order_under_fusion(backend):
    """`a` and `out` would fuse into one kernel that needs the dequeue; the enqueue needs that
    kernel. Without the ordering edge the dequeue would run first and wait forever."""
    x = tf.placeholder(tf.float32, [3])
    q = tf.FIFOQueue(2, tf.float32, shapes=[[3]])
    a = x * 2.0
    enq = q.enqueue(a)
    out = q.dequeue() + a
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    with tf.Session() as sess:
        t, box = _in_thread(lambda: sess.run([out, enq], {x: xv}))
        t.join(WAIT * 2)
        assert not t.is_alive(), "the dequeue ran before the enqueue"
        np.testing.assert_allclose(box["value"][0], 4 * xv)


# -- random shuffle and padding ----------------------------------------------------------------
def _shuffled(seed, n=20):
    tf.reset_default_graph()
    q = tf.RandomShuffleQueue(30, 0, tf.int32, shapes=[[]], seed=seed)
    with tf.Session() as sess:
        sess.run(q.enqueue_many([np.arange(n, dtype=np.int32)]))
        return list(sess.run(q.dequeue_many(n)))


def test_random_shuffle_queue_is_deterministic_with_a_seed():
    a, b, c = _shuffled(7), _shuffled(7), _shuffled(8)
    assert a == b and sorted(a) == list(range(20))
    assert a != list(range(20)) and a != c


def test_random_shuffle_queue_keeps_min_after_dequeue_until_closed():
    q = tf.RandomShuffleQueue(10, 3, tf.int32, shapes=[[]], seed=1)
    with tf.Session() as sess:
        sess.run(q.enqueue_many([np.arange(5, dtype=np.int32)]))
        first = sess.run(q.dequeue_many(2))  # 5 - 2 >= 3: available
        t, box = _in_thread(lambda: sess.run(q.dequeue()))
        t.join(BLOCKED)
        assert t.is_alive(), "three left = min_after_dequeue: the dequeue must wait"
        sess.run(q.close())  # closing lifts the reserve
        t.join(WAIT)
        rest = sess.run(q.dequeue_up_to(10))
        assert sorted([*first, box["value"], *rest]) == list(range(5))


def test_padding_fifo_queue_pads_each_batch():
    q = tf.PaddingFIFOQueue(5, [tf.float32], shapes=[[None]])
    p = tf.placeholder(tf.float32, [None])
    enq = q.enqueue([p])
    batch = q.dequeue_many(2)
    assert batch.shape.as_list() == [2, None]
    with tf.Session() as sess:
        for n in (1, 3, 2, 2):
            sess.run(enq, {p: np.arange(1, n + 1, dtype=np.float32)})
        np.testing.assert_array_equal(sess.run(batch), [[1, 0, 0], [1, 2, 3]])
        np.testing.assert_array_equal(sess.run(batch), [[1, 2], [1, 2]])
    with pytest.raises(ValueError, match="requires the shapes"):
        tf.PaddingFIFOQueue(5, [tf.float32], shapes=None)


# -- producer and training consumer ---------------------------------------------------------------
def test_producer_thread_feeds_training_loop_without_losing_elements(backend):
    rng = np.random.default_rng(1)
    n, batch = 96, 8
    xs = rng.standard_normal((n, 3)).astype(np.float32)
    w_true = np.array([[1.0], [-2.0], [0.5]], np.float32)
    ys = xs @ w_true
    q = tf.FIFOQueue(16, [tf.float32, tf.float32, tf.int64], shapes=[[3], [1], []])
    px, py, pid = tf.placeholder(tf.float32, [None, 3]), tf.placeholder(tf.float32, [None, 1]), tf.placeholder(tf.int64, [None])
    enq, close = q.enqueue_many([px, py, pid]), q.close()
    bx, by, bid = q.dequeue_many(batch)
    w = tf.Variable(tf.zeros([3, 1]))
    loss = tf.reduce_mean(tf.square(tf.matmul(bx, w) - by))
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)

    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())

        def produce():
            for lo in range(0, n, 12):  # chunks that do not line up with the batches
                sess.run(enq, {px: xs[lo:lo + 12], py: ys[lo:lo + 12], pid: np.arange(lo, min(lo + 12, n))})
            sess.run(close)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        seen, losses = [], []
        while True:
            try:
                ids, value, _ = sess.run([bid, loss, step])
            except tf.errors.OutOfRangeError:
                break
            seen.extend(ids.tolist())
            losses.append(value)
        producer.join(WAIT)
    assert sorted(seen) == list(range(n)) and len(seen) == n  # none lost, none twice
    assert seen == list(range(n))  # one producer, FIFO: in order
    assert losses[-1] < 0.5 * losses[0]


# -- coordinator and queue runners ----------------------------------------------------------------
def test_coordinator_reports_the_first_error_and_treats_out_of_range_as_clean():
    coord = tf.train.Coordinator()

    def worker():
        with coord.stop_on_exception():
            raise ValueError("boom")

    t = threading.Thread(target=worker)
    coord.register_thread(t)
    t.start()
    with pytest.raises(ValueError, match="boom"):
        coord.join(stop_grace_period_secs=WAIT)
    assert coord.should_stop() and coord.joined
    coord.clear_stop()
    assert not coord.should_stop()
    coord.request_stop(tf.errors.OutOfRangeError(message="done"))
    coord.join([], stop_grace_period_secs=WAIT)  # a clean stop raises nothing


def test_coordinator_complains_about_threads_that_do_not_stop():
    coord = tf.train.Coordinator()
    release = threading.Event()
    t = threading.Thread(target=release.wait, args=(WAIT,), daemon=True)
    t.start()
    coord.request_stop()
    with pytest.raises(RuntimeError, match="threads still running"):
        coord.join([t], stop_grace_period_secs=0.05)
    release.set()
    t.join(WAIT)


def test_queue_runner_threads_stop_with_the_coordinator(backend):
    q = tf.FIFOQueue(4, tf.int32, shapes=[[]])
    qr = tf.train.QueueRunner(q, [q.enqueue(7), q.enqueue(8)])
    tf.train.add_queue_runner(qr)
    assert tf.get_collection(tf.GraphKeys.QUEUE_RUNNERS) == [qr]
    got = q.dequeue_many(6)  # more than the capacity: taken as the runners refill
    with tf.Session() as sess:
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess, coord)
        assert len(threads) == 3  # two enqueue threads and the one that cancels on stop
        values = sess.run(got)
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=WAIT)  # blocked enqueues are cancelled
        assert not any(t.is_alive() for t in threads)
        assert qr.exceptions_raised == []
    assert len(values) == 6 and set(values.tolist()) <= {7, 8}


def test_queue_runner_errors_reach_the_coordinator():
    x = tf.placeholder(tf.float32, [])  # never fed: every enqueue fails
    q = tf.FIFOQueue(4, tf.float32, shapes=[[]])
    qr = tf.train.QueueRunner(q, [q.enqueue(x)])
    with tf.Session() as sess:
        coord = tf.train.Coordinator()
        threads = qr.create_threads(sess, coord=coord, start=True)
        with pytest.raises(tf.errors.InvalidArgumentError, match="must feed a value"):
            coord.join(threads, stop_grace_period_secs=WAIT)


# -- input producers and batching -------------------------------------------------------------
def test_slice_input_producer_with_batch_counts_every_row(backend):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    ids = np.arange(10, dtype=np.int64)
    row, i = tf.train.slice_input_producer([x, ids], num_epochs=3, shuffle=True, seed=4)
    bx, bi = tf.train.batch([row, i], batch_size=4, allow_smaller_final_batch=True)
    assert bx.shape.as_list() == [None, 3] and bi.dtype == tf.int64
    with tf.Session() as sess:
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        seen = []
        try:
            while True:
                xv, iv = sess.run([bx, bi])
                np.testing.assert_array_equal(xv, x[iv])  # rows stay with their index
                seen.extend(iv.tolist())
        except tf.errors.OutOfRangeError:
            pass
        finally:
            coord.request_stop()
        coord.join(threads, stop_grace_period_secs=WAIT)
    assert sorted(seen) == sorted(list(range(10)) * 3)
    assert seen[:10] != list(range(10))  # shuffled


def test_shuffle_batch_and_batch_structures():
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    row = tf.train.slice_input_producer([x], num_epochs=2, shuffle=False)
    assert isinstance(row, list) and len(row) == 1
    shuffled = tf.train.shuffle_batch(row, batch_size=4, capacity=10, min_after_dequeue=2, seed=1)
    assert isinstance(shuffled, tf.Tensor) and shuffled.shape.as_list() == [4, 2]  # a list of one gives a tensor
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess, coord)
        batches = []
        try:
            while True:
                batches.append(sess.run(shuffled))
        except tf.errors.OutOfRangeError:
            pass
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=WAIT)
    got = np.concatenate(batches)
    assert len(batches) == 4
    np.testing.assert_array_equal(np.sort(got[:, 0]), np.sort(np.concatenate([x, x])[:, 0]))
    np.testing.assert_array_equal(got[:, 1] - got[:, 0], np.ones(16, np.float32))


def test_batch_of_a_dict_with_enqueue_many_and_random_shuffle_op():
    feats = {"a": np.arange(6, dtype=np.int32), "b": np.arange(6, dtype=np.float32) * 2}
    out = tf.train.batch(feats, batch_size=3, enqueue_many=True)
    assert sorted(out) == ["a", "b"]
    shuffled = tf.train.input_producer(np.arange(5, dtype=np.int32), shuffle=True, seed=2).dequeue_many(5)
    assert any(op.node.op == "random_shuffle" for op in tf.get_default_graph().get_operations())
    assert any(op.node.op == "count_up_to" for op in tf.train.limit_epochs(np.zeros(2), 1).op.control_inputs)
    with tf.Session() as sess:
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess, coord)
        got = sess.run(out)
        perm = sess.run(shuffled)
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=WAIT)
    np.testing.assert_array_equal(got["a"], [0, 1, 2])
    np.testing.assert_array_equal(got["b"], [0, 2, 4])
    assert sorted(perm.tolist()) == list(range(5))


def test_passes_neither_merge_nor_drop_queue_ops(backend):
    q = tf.FIFOQueue(4, tf.int32, shapes=[[]])
    fill = q.enqueue_many([[1, 2, 3, 4]])
    d1, d2 = q.dequeue(), q.dequeue()  # identical but for the name: CSE must keep both
    unused = q.dequeue()
    with tf.Session() as sess:
        sess.run(fill)
        assert sess.run([d1, d2]) == [1, 2]
        sess.run(unused.op)  # fetched as an op: its result is dead, the dequeue still runs
        assert sess.run(q.size()) == 1
