"""The TF1 graph API end to end on the reference backend: the lecture's model, variables and
scopes, sessions and fetch structures, collections, and the errors users see."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import tfjit as tf

RNG = np.random.default_rng(42)


def lecture_model(batch_dim=None):
    x = tf.placeholder(tf.float32, shape=[batch_dim, 256])
    d = tf.placeholder(tf.float32, shape=[batch_dim, 64])
    W = tf.Variable(tf.random_normal([256, 64], stddev=0.1, seed=3))
    b = tf.Variable(tf.zeros([64]))
    y = tf.nn.sigmoid(tf.matmul(x, W) + b)
    loss_mean = tf.reduce_mean(tf.square(y - d))
    return x, d, W, b, loss_mean


def test_lecture_forward_model_matches_numpy_for_several_batch_sizes():
    x, d, W, b, loss = lecture_model()
    nodes_before = len(tf.get_default_graph().nodes)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w_val, b_val = sess.run([W, b])
        for batch in (1, 7, 64, 300):
            xv = RNG.standard_normal((batch, 256)).astype(np.float32)
            dv = RNG.random((batch, 64)).astype(np.float32)
            got = sess.run(loss, feed_dict={x: xv, d: dv})
            y = 1 / (1 + np.exp(-(xv.astype(np.float64) @ w_val + b_val)))
            np.testing.assert_allclose(got, np.mean((y - dv) ** 2), rtol=2e-6)
            assert isinstance(got, np.float32)
        # New batch sizes compile new programs (init, [W, b], 4 feed signatures) but never
        # rebuild (re-trace) the graph: only the initializer's group op was added to it.
        assert len(tf.get_default_graph().nodes) == nodes_before + 1
        assert len(sess._cache) == 6


def test_names_scopes_and_get_tensor_by_name():
    with tf.name_scope("level1"):
        with tf.name_scope("level2"):
            v = tf.Variable(1.0, name="var")
            c = tf.constant(2.0, name="c")
        c2 = tf.constant(3.0, name="c")
        c3 = tf.constant(3.0, name="c")
    assert v.name == "level1/level2/var:0"
    assert c.name == "level1/level2/c:0"
    assert (c2.name, c3.name) == ("level1/c:0", "level1/c_1:0")
    g = tf.get_default_graph()
    assert g.get_tensor_by_name("level1/c_1:0") is c3
    assert g.get_operation_by_name("level1/level2/var").outputs[0] is v.value()
    with pytest.raises(KeyError, match="does not exist"):
        g.get_tensor_by_name("nope:0")


def test_variable_scopes_get_variable_and_reuse():
    with tf.variable_scope("level1"):
        with tf.variable_scope("level2"):
            w = tf.get_variable("w", [2, 3], initializer=tf.ones_initializer())
    assert w.name == "level1/level2/w:0"
    with tf.variable_scope("level1", reuse=True):
        with tf.variable_scope("level2"):
            w_again = tf.get_variable("w", [2, 3])
    assert w_again is w
    with tf.variable_scope("level1/level2", reuse=tf.AUTO_REUSE):
        assert tf.get_variable("w") is w
        fresh = tf.get_variable("fresh", [4], initializer=tf.zeros_initializer())
    assert fresh.name == "level1/level2/fresh:0"
    with tf.variable_scope("outer") as scope:
        a = tf.get_variable("a", [1])
        scope.reuse_variables()
        assert tf.get_variable("a") is a
    with tf.variable_scope(scope, reuse=True):
        assert tf.get_variable("a") is a
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(w), np.ones((2, 3), np.float32))


def test_get_variable_errors_match_tf():
    with tf.variable_scope("s"):
        tf.get_variable("v", [2])
    with pytest.raises(ValueError, match=r"Variable s/v already exists, disallowed.*reuse=True"):
        with tf.variable_scope("s"):
            tf.get_variable("v", [2])
    with pytest.raises(ValueError, match=r"Variable s/missing does not exist.*AUTO_REUSE"):
        with tf.variable_scope("s", reuse=True):
            tf.get_variable("missing", [2])
    with pytest.raises(ValueError, match=r"share variable s/v.*\(3,\).*\(2,\)"):
        with tf.variable_scope("s", reuse=True):
            tf.get_variable("v", [3])
    with pytest.raises(ValueError, match="must be fully defined"):
        tf.get_variable("no_shape")


def test_get_variable_default_initializer_is_glorot_uniform():
    tf.set_random_seed(1)
    v = tf.get_variable("w", [200, 300])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        value = sess.run(v)
    limit = np.sqrt(6 / (200 + 300))
    assert value.dtype == np.float32
    assert np.abs(value).max() <= limit and np.abs(value).max() > 0.95 * limit
    assert abs(value.std() - limit / np.sqrt(3)) < 0.01 * limit


def test_default_names_of_variable_scopes_are_unique():
    names = []
    for _ in range(3):
        with tf.variable_scope(None, default_name="dense"):
            names.append(tf.get_variable("kernel", [1]).name)
    assert names == ["dense/kernel:0", "dense_1/kernel:0", "dense_2/kernel:0"]


def test_collections_and_trainable_variables():
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b", trainable=False)
    assert tf.global_variables() == [a, b]
    assert tf.trainable_variables() == [a]
    tf.add_to_collection("my", a)
    assert tf.get_collection("my") == [a]
    assert tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope="b") == [b]


def test_session_fetch_structures_and_feeds_by_name():
    x = tf.placeholder(tf.float32, [None], name="x")
    y = x * 2.0
    z = tf.reduce_sum(y)
    Pair = collections.namedtuple("Pair", "double total")
    with tf.Session() as sess:
        xv = np.array([1.0, 2.0], np.float32)
        out = sess.run({"a": [y, (z,)], "p": Pair(y, z)}, feed_dict={"x:0": xv})
        np.testing.assert_array_equal(out["a"][0], [2.0, 4.0])
        assert isinstance(out["a"][1], tuple) and out["a"][1][0] == 6.0
        assert isinstance(out["p"], Pair) and out["p"].total == 6.0
        assert sess.run(y.name, feed_dict={x: [3.0]})[0] == 6.0
        assert sess.run(tf.no_op()) is None
        # Feeding an intermediate tensor overrides it.
        assert sess.run(z, feed_dict={y: np.ones(5, np.float32)}) == 5.0


def test_assign_ops_and_default_session_eval():
    v = tf.Variable(np.arange(3, dtype=np.float32))
    inc = v.assign_add([1.0, 1.0, 1.0])
    dec = v.assign_sub(tf.constant([0.5, 0.5, 0.5]))
    setv = v.assign(tf.zeros([3]))
    sess = tf.InteractiveSession()
    try:
        v.initializer.run()
        np.testing.assert_array_equal(inc.eval(), [1, 2, 3])
        np.testing.assert_array_equal(dec.eval(), [0.5, 1.5, 2.5])
        np.testing.assert_array_equal(v.eval(), [0.5, 1.5, 2.5])
        setv.eval()
        np.testing.assert_array_equal(v.eval(), [0, 0, 0])
        v.load([7.0, 8.0, 9.0])
        np.testing.assert_array_equal(v.eval(), [7, 8, 9])
    finally:
        sess.close()


def test_is_variable_initialized_reports_the_sessions_state():
    v = tf.Variable(tf.zeros([2]), name="v")
    ready = tf.is_variable_initialized(v)
    with tf.Session() as sess:
        assert not sess.run(ready)
        sess.run(v.initializer)
        assert sess.run(ready)


def test_fetched_variable_values_are_copies():
    v = tf.Variable(np.ones(3, np.float32))
    with tf.Session() as sess:
        sess.run(v.initializer)
        out = sess.run(v)
        out[:] = 5
        np.testing.assert_array_equal(sess.run(v), np.ones(3))


def test_control_dependencies_group_and_placeholder_with_default():
    counter = tf.Variable(0, name="counter")
    step = counter.assign_add(1)
    with tf.control_dependencies([step]):
        after = tf.identity(tf.constant(10))
    both = tf.group(step, step)
    p = tf.placeholder_with_default(tf.constant([1.0, 2.0]), shape=[None])
    with tf.Session() as sess:
        sess.run(counter.initializer)
        sess.run(after)
        sess.run(both)
        assert sess.run(counter) == 2
        np.testing.assert_array_equal(sess.run(p), [1.0, 2.0])
        np.testing.assert_array_equal(sess.run(p, feed_dict={p: [5.0, 6.0, 7.0]}), [5, 6, 7])


def test_shape_size_rank_as_tensors_and_static_shapes():
    x = tf.placeholder(tf.float32, [None, 3, 4])
    assert x.shape.as_list() == [None, 3, 4]
    assert x.get_shape()[1].value == 3 and x.shape[0].value is None
    s, n, r = tf.shape(x), tf.size(x), tf.rank(x)
    assert s.dtype == tf.int32 and s.shape.as_list() == [3]
    with tf.Session() as sess:
        out = sess.run([s, n, r], feed_dict={x: np.zeros((2, 3, 4))})
    np.testing.assert_array_equal(out[0], [2, 3, 4])
    assert out[1] == 24 and out[2] == 3


def test_string_dtypes_and_graph_contexts():
    g = tf.Graph()
    with g.as_default():
        p = tf.placeholder("float", [2])
        assert p.dtype == tf.float32 and tf.get_default_graph() is g
    assert tf.get_default_graph() is not g
    with tf.Session(graph=g) as sess:
        np.testing.assert_array_equal(sess.run(p + 1.0, feed_dict={p: [1, 2]}), [2.0, 3.0])


def test_log_device_placement_prints_each_node_device(capsys):
    x = tf.placeholder(tf.float32, [2, 3], name="x")
    w = tf.Variable(tf.ones([3, 4]), name="w")
    y = tf.matmul(x, w, name="MatMul")
    with tf.Session(config=tf.ConfigProto(log_device_placement=True)) as sess:
        sess.run(w.initializer)
        sess.run(y, feed_dict={x: np.ones((2, 3))})
        sess.run(y, feed_dict={x: np.ones((2, 3))})
    err = capsys.readouterr().err
    cpu = "/job:localhost/replica:0/task:0/device:CPU:0"
    assert f"MatMul: (MatMul): {cpu}" in err and f"w: (VariableV2): {cpu}" in err
    assert err.count("MatMul: (MatMul)") == 1  # once per compiled graph


# -- errors ---------------------------------------------------------------------------------
def test_uninitialized_variable_raises_failed_precondition_naming_it():
    v = tf.Variable(tf.zeros([2]), name="weights")
    with tf.Session() as sess:
        with pytest.raises(tf.FailedPreconditionError, match="uninitialized value weights"):
            sess.run(v * 2.0)


def test_missing_feed_names_placeholder_and_where_it_was_created():
    x = tf.placeholder(tf.float32, [None, 3], name="inputs")  # created here
    line = test_missing_feed_names_placeholder_and_where_it_was_created.__code__.co_firstlineno + 1
    with tf.Session() as sess:
        with pytest.raises(tf.InvalidArgumentError) as e:
            sess.run(x + 1.0)
    msg = str(e.value)
    assert "inputs" in msg and "float32" in msg and "[?,3]" in msg
    assert f"test_tf1_api.py:{line}" in msg


def test_feed_of_wrong_shape_or_dtype_names_placeholder_expected_and_actual():
    x = tf.placeholder(tf.float32, [None, 3], name="inputs")
    i = tf.placeholder(tf.int32, [2], name="ids")
    with tf.Session() as sess:
        with pytest.raises(ValueError, match=r"shape \(2, 4\) for Tensor 'inputs:0'.*test_tf1_api.py.*\(\?, 3\)"):
            sess.run(x, feed_dict={x: np.zeros((2, 4))})
        with pytest.raises(TypeError, match=r"dtype float64 for Tensor 'ids:0'.*int32"):
            sess.run(i, feed_dict={i: np.zeros(2)})
        with pytest.raises(TypeError, match="cannot be a tf.Tensor"):
            sess.run(x, feed_dict={x: x})
        # Safe conversions are accepted, as in TF: float64 data and Python lists into float32.
        assert sess.run(x, feed_dict={x: [[1, 2, 3]]}).dtype == np.float32


def test_build_time_errors_name_op_shapes_and_user_line():
    a = tf.placeholder(tf.float32, [None, 256])
    b = tf.placeholder(tf.float32, [128, 64])
    with pytest.raises(ValueError, match=r"op `matmul` at .*test_tf1_api.py:\d+.*f32\[\?,256\].*f32\[128,64\]"):
        tf.matmul(a, b)
    with pytest.raises(ValueError, match=r"op `add` at .*test_tf1_api.py.*not broadcast-compatible"):
        tf.placeholder(tf.float32, [3]) + tf.placeholder(tf.float32, [4])
    with pytest.raises(ValueError, match=r"op `add`.*same dtype.*f32\[3\].*i32\[3\]"):
        tf.placeholder(tf.float32, [3]) + tf.placeholder(tf.int32, [3])
    with pytest.raises(ValueError, match=r"axis 2 is out of range.*rank 2"):
        tf.reduce_sum(a, axis=2)


def test_tensor_as_python_bool_points_to_cond():
    x = tf.placeholder(tf.float32, [])
    with pytest.raises(TypeError, match=r"Python bool.*test_tf1_api.py:\d+.*tfjit.cond"):
        if x > 0:
            pass


def test_closed_session_and_foreign_graph_fetches_fail_clearly():
    g = tf.Graph()
    with g.as_default():
        other = tf.constant(1.0)
    sess = tf.Session()
    with pytest.raises(ValueError, match="not an element of this session's graph"):
        sess.run(other)
    sess.close()
    with pytest.raises(RuntimeError, match="closed Session"):
        sess.run(tf.constant(1.0))


def test_a_failed_run_leaves_variables_intact():
    v = tf.Variable(np.ones(2, np.float32))
    x = tf.placeholder(tf.float32, [2])
    update = v.assign(x * 2.0)
    with tf.Session() as sess:
        sess.run(v.initializer)
        with pytest.raises(ValueError):
            sess.run(update, feed_dict={x: np.zeros(3)})
        np.testing.assert_array_equal(sess.run(v), [1, 1])


def test_random_ops_follow_tf_seed_semantics():
    tf.set_random_seed(7)
    a = tf.random_normal([4])
    b = tf.random_uniform([4], seed=3)
    with tf.Session() as s1:
        a1, a1_again, b1 = s1.run(a), s1.run(a), s1.run(b)
    with tf.Session() as s2:
        a2, b2 = s2.run(a), s2.run(b)
    np.testing.assert_array_equal(a1, a2)  # same graph seed: same sequence in every session
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(a1, a1_again)  # but each run draws fresh values


def test_read_value_reads_after_its_control_dependencies_while_value_is_the_snapshot():
    v = tf.Variable(1.0, name="v")
    update = v.assign_add(10.0)
    snapshot = v.value()
    with tf.control_dependencies([update]):
        after = v.read_value() * 1.0
    with tf.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(after) == 11.0
        assert sess.run([snapshot, update])[0] == 11.0  # the snapshot is read before this run's update


def test_default_variable_scope_names_skip_names_already_opened():
    with tf.variable_scope("Conv"):
        tf.get_variable("w", [1])
    with tf.variable_scope(None, default_name="Conv"):
        assert tf.get_variable("w", [1]).name == "Conv_1/w:0"


def test_top_level_assign_functions():
    v = tf.Variable([1.0, 2.0], name="v")
    ops = [tf.assign(v, [5.0, 6.0]), tf.assign_add(v, [1.0, 1.0]), tf.assign_sub(v, [0.5, 0.5])]
    with tf.Session() as sess:
        sess.run(v.initializer)
        results = [sess.run(op) for op in ops]
    np.testing.assert_array_equal(results[-1], [5.5, 6.5])
    with pytest.raises(TypeError, match="tf.assign needs a tf.Variable"):
        tf.assign(tf.constant(1.0), 2.0)


def test_operation_type_is_tfs_op_type_name():
    x = tf.placeholder(tf.float32, [2, 2])
    v = tf.Variable(tf.ones([2, 2]))
    assert (x.op.type, v.op.type, tf.matmul(x, v).op.type) == ("Placeholder", "VariableV2", "MatMul")
    assert tf.nn.leaky_relu(x).op.type == "LeakyRelu" and tf.nn.leaky_relu(x).op.node.op == "leaky_relu"
