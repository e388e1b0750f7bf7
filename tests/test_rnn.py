"""RNN cells, static_rnn, dynamic_rnn and bidirectional_dynamic_rnn against NumPy versions of
TF 1.x's cells; variable names and shapes as TF makes them; gradients by finite differences."""
import numpy as np
import pytest

import tfjit as tf

rnn_cell = tf.nn.rnn_cell


# -- NumPy cells (TF 1.x's rnn_cell_impl, written out) -----------------------------------------------
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_basic_lstm(x, c, h, kernel, bias, forget_bias=1.0):
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ kernel + bias, 4, axis=1)
    new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
    return np.tanh(new_c) * sigmoid(o), new_c


def np_lstm(x, c, m, w, clip=None, proj_clip=None):
    i, j, f, o = np.split(np.concatenate([x, m], 1) @ w["kernel"] + w["bias"], 4, axis=1)
    peep = "w_f_diag" in w
    if peep:
        c = sigmoid(f + 1.0 + w["w_f_diag"] * c) * c + sigmoid(i + w["w_i_diag"] * c) * np.tanh(j)
    else:
        c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
    if clip is not None:
        c = np.clip(c, -clip, clip)
    m = sigmoid(o + w["w_o_diag"] * c) * np.tanh(c) if peep else sigmoid(o) * np.tanh(c)
    if "projection/kernel" in w:
        m = m @ w["projection/kernel"]
        if proj_clip is not None:
            m = np.clip(m, -proj_clip, proj_clip)
    return m, c


def np_gru(x, h, w):
    r, u = np.split(sigmoid(np.concatenate([x, h], 1) @ w["gates/kernel"] + w["gates/bias"]), 2, axis=1)
    cand = np.tanh(np.concatenate([x, r * h], 1) @ w["candidate/kernel"] + w["candidate/bias"])
    return u * h + (1 - u) * cand


def np_basic_rnn(x, h, kernel, bias, act=np.tanh):
    return act(np.concatenate([x, h], 1) @ kernel + bias)


def np_lstm_sequence(xs, lengths, kernel, bias, units):
    """Batch-major xs [B, T, D] through a BasicLSTMCell with TF's sequence_length semantics."""
    b, t, _ = xs.shape
    c, h = np.zeros((b, units)), np.zeros((b, units))
    outs = np.zeros((b, t, units))
    for step in range(t):
        new_h, new_c = np_basic_lstm(xs[:, step], c, h, kernel, bias)
        live = (step < np.asarray(lengths))[:, None]
        outs[:, step] = np.where(live, new_h, 0)
        c, h = np.where(live, new_c, c), np.where(live, new_h, h)
    return outs, c, h


def variables_by_name(sess, prefix=""):
    vs = [v for v in tf.global_variables() if v.name.startswith(prefix)]
    return {v.name[len(prefix):].split(":")[0]: val for v, val in zip(vs, sess.run(vs))}


def random_weights(sess, rng, scale=0.5):
    """Load random values into every variable (biases too, so that they are tested)."""
    for v in tf.global_variables():
        v.load(rng.standard_normal(v.shape.as_list()) * scale, sess)


# -- cells --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_basic_lstm_cell_one_step_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    x = tf.placeholder(dtype, [None, 3])
    cell = rnn_cell.BasicLSTMCell(4, forget_bias=0.5)
    state = cell.zero_state(tf.shape(x)[0], dtype)
    c0 = tf.placeholder(dtype, [None, 4])
    out, new = cell(x, rnn_cell.LSTMStateTuple(c0, state.h))
    assert out.dtype == dtype and out.shape.as_list() == [None, 4]
    assert isinstance(new, rnn_cell.LSTMStateTuple) and new.dtype == dtype
    assert [(v.name, v.shape.as_list()) for v in tf.global_variables()] == [
        ("basic_lstm_cell/kernel:0", [7, 16]), ("basic_lstm_cell/bias:0", [16])]
    assert cell.trainable_variables == tf.trainable_variables()
    xv, cv = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = variables_by_name(sess)
        got_h, got_c = sess.run([out, new.c], {x: xv, c0: cv})
    kernel, bias = w["basic_lstm_cell/kernel"], w["basic_lstm_cell/bias"]
    want_h, want_c = np_basic_lstm(xv, cv, np.zeros((5, 4)), kernel, bias, 0.5)
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(got_h, want_h, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_c, want_c, rtol=tol, atol=tol)


def test_basic_lstm_default_initializers_and_concatenated_state():
    x = tf.placeholder(tf.float32, [2, 3])
    cell = rnn_cell.BasicLSTMCell(4, state_is_tuple=False)
    assert cell.state_size == 8 and cell.output_size == 4
    zero = cell.zero_state(2, tf.float32)
    assert zero.shape.as_list() == [2, 8]
    out, state = cell(x, zero)
    assert state.shape.as_list() == [2, 8]
    xv = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        kernel, bias = sess.run(cell.variables)
        got_out, got_state = sess.run([out, state], {x: xv})
    limit = np.sqrt(6 / (7 + 16))  # glorot uniform kernel, zero bias
    assert np.all(np.abs(kernel) <= limit) and kernel.std() > limit / 4
    np.testing.assert_array_equal(bias, 0)
    want_h, want_c = np_basic_lstm(xv, np.zeros((2, 4)), np.zeros((2, 4)), kernel, bias)
    np.testing.assert_allclose(got_out, want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_state, np.concatenate([want_c, want_h], 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("peepholes, num_proj, clip, tuple_state", [
    (False, None, None, True), (True, None, 0.3, True), (True, 3, None, True), (False, 3, 0.2, False)])
def test_lstm_cell_matches_numpy(peepholes, num_proj, clip, tuple_state):
    rng = np.random.default_rng(2)
    x = tf.placeholder(tf.float64, [None, 3])
    cell = rnn_cell.LSTMCell(4, use_peepholes=peepholes, cell_clip=clip, num_proj=num_proj,
                             proj_clip=0.25 if num_proj else None, state_is_tuple=tuple_state)
    m = num_proj or 4
    assert cell.output_size == m
    out, state = cell(x, cell.zero_state(tf.shape(x)[0], tf.float64))
    names = {v.name.split(":")[0]: v.shape.as_list() for v in tf.global_variables()}
    want = {"lstm_cell/kernel": [3 + m, 16], "lstm_cell/bias": [16]}
    if peepholes:
        want.update({f"lstm_cell/w_{g}_diag": [4] for g in "fio"})
    if num_proj:
        want["lstm_cell/projection/kernel"] = [4, num_proj]
    assert names == want
    xv = rng.standard_normal((2, 3))
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = {k.split("/", 1)[1]: v for k, v in variables_by_name(sess).items()}
        got_m, got_state = sess.run([out, state], {x: xv})
    want_m, want_c = np_lstm(xv, np.zeros((2, 4)), np.zeros((2, m)), w, clip, 0.25 if num_proj else None)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-12)
    got_c = got_state.c if tuple_state else got_state[:, :4]
    np.testing.assert_allclose(got_c, want_c, rtol=1e-12)


def test_gru_and_basic_rnn_cells_match_numpy():
    rng = np.random.default_rng(3)
    x = tf.placeholder(tf.float32, [None, 3])
    h = tf.placeholder(tf.float32, [None, 5])
    gru = rnn_cell.GRUCell(5)
    rnn = rnn_cell.BasicRNNCell(5, activation="relu")
    gru_out, gru_state = gru(x, h)
    rnn_out, _ = rnn(x, h)
    assert gru_out is gru_state
    shapes = {v.name.split(":")[0]: v.shape.as_list() for v in tf.global_variables()}
    assert shapes == {"gru_cell/gates/kernel": [8, 10], "gru_cell/gates/bias": [10],
                      "gru_cell/candidate/kernel": [8, 5], "gru_cell/candidate/bias": [5],
                      "basic_rnn_cell/kernel": [8, 5], "basic_rnn_cell/bias": [5]}
    xv, hv = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(gru.variables[1]), 1.0)  # gate bias starts at 1
        random_weights(sess, rng)
        w = variables_by_name(sess)
        got_gru, got_rnn = sess.run([gru_out, rnn_out], {x: xv, h: hv})
    np.testing.assert_allclose(got_gru, np_gru(xv, hv, {k[9:]: v for k, v in w.items() if k.startswith("gru")}),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_rnn, np_basic_rnn(xv, hv, w["basic_rnn_cell/kernel"], w["basic_rnn_cell/bias"],
                                                     lambda z: np.maximum(z, 0)), rtol=1e-5, atol=1e-6)


def test_gru_initializers_are_used():
    x = tf.placeholder(tf.float32, [1, 2])
    cell = rnn_cell.GRUCell(3, kernel_initializer=tf.constant_initializer(0.5),
                            bias_initializer=tf.constant_initializer(-1.0))
    cell(x, cell.zero_state(1, tf.float32))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        values = sess.run(cell.variables)
    for v, want in zip(values, [0.5, -1.0, 0.5, -1.0]):
        np.testing.assert_array_equal(v, want)


def test_cells_share_variables_across_calls_and_are_named_uniquely():
    x = tf.placeholder(tf.float32, [2, 3])
    with tf.variable_scope("enc"):
        a, b = rnn_cell.BasicLSTMCell(4), rnn_cell.BasicLSTMCell(4)
        s = a.zero_state(2, tf.float32)
        a(x, s)
        a(x, s)
        b(x, s)
    with tf.variable_scope("enc", reuse=True):
        shared = rnn_cell.BasicLSTMCell(4, reuse=True)
        shared(x, s)
    assert [v.name for v in tf.global_variables()] == [
        "enc/basic_lstm_cell/kernel:0", "enc/basic_lstm_cell/bias:0",
        "enc/basic_lstm_cell_1/kernel:0", "enc/basic_lstm_cell_1/bias:0"]
    assert shared.variables == a.variables
    named = rnn_cell.GRUCell(2, name="my_gru")
    named(x, named.zero_state(2, tf.float32), scope=None)
    assert tf.global_variables()[-1].name == "my_gru/candidate/bias:0"


def test_user_cell_with_get_variable_in_call_reuses_its_scope():
    class Scaled(rnn_cell.RNNCell):
        state_size = 3
        output_size = 3

        def call(self, inputs, state):
            w = tf.get_variable("w", [3], initializer=tf.ones_initializer())
            return inputs * w + state, inputs * w + state

    x = tf.placeholder(tf.float32, [2, 3])
    outs, state = tf.nn.static_rnn(Scaled(), [x, x, x], dtype=tf.float32)
    assert [v.name for v in tf.global_variables()] == ["rnn/scaled/w:0"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_allclose(sess.run(state, {x: np.ones((2, 3))}), 3.0)


def test_multi_rnn_cell_names_state_and_values():
    rng = np.random.default_rng(4)
    x = tf.placeholder(tf.float64, [None, 3])
    cell = rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(4), rnn_cell.GRUCell(2)])
    assert cell.state_size == (rnn_cell.LSTMStateTuple(4, 4), 2) and cell.output_size == 2
    zero = cell.zero_state(tf.shape(x)[0], tf.float64)
    out, (lstm_state, gru_state) = cell(x, zero)
    assert [v.name.split(":")[0] for v in tf.global_variables()] == [
        "multi_rnn_cell/cell_0/basic_lstm_cell/kernel", "multi_rnn_cell/cell_0/basic_lstm_cell/bias",
        "multi_rnn_cell/cell_1/gru_cell/gates/kernel", "multi_rnn_cell/cell_1/gru_cell/gates/bias",
        "multi_rnn_cell/cell_1/gru_cell/candidate/kernel", "multi_rnn_cell/cell_1/gru_cell/candidate/bias"]
    assert len(cell.variables) == 6
    xv = rng.standard_normal((3, 3))
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = variables_by_name(sess, "multi_rnn_cell/")
        got = sess.run(out, {x: xv})
    h1, _ = np_basic_lstm(xv, np.zeros((3, 4)), np.zeros((3, 4)), w["cell_0/basic_lstm_cell/kernel"],
                          w["cell_0/basic_lstm_cell/bias"])
    gru_w = {k[len("cell_1/gru_cell/"):]: v for k, v in w.items() if k.startswith("cell_1")}
    np.testing.assert_allclose(got, np_gru(h1, np.zeros((3, 2)), gru_w), rtol=1e-12)


def test_multi_rnn_cell_with_concatenated_state():
    x = tf.placeholder(tf.float32, [2, 3])
    cell = rnn_cell.MultiRNNCell([rnn_cell.GRUCell(2), rnn_cell.BasicRNNCell(3)], state_is_tuple=False)
    assert cell.state_size == 5
    out, state = cell(x, cell.zero_state(2, tf.float32))
    assert out.shape.as_list() == [2, 3] and state.shape.as_list() == [2, 5]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got_out, got_state = sess.run([out, state], {x: np.ones((2, 3))})
    np.testing.assert_allclose(got_state[:, 2:], got_out)


def test_cell_errors():
    x = tf.placeholder(tf.float32, [2, 3])
    with pytest.raises(ValueError, match="floating point inputs, but saw dtype: int32"):
        rnn_cell.BasicRNNCell(2)(tf.placeholder(tf.int32, [2, 3]), tf.zeros([2, 2], tf.int32))
    with pytest.raises(ValueError, match=r"inputs.shape\[-1\] to be known, saw shape: \(2, \?\)"):
        rnn_cell.GRUCell(2)(tf.placeholder(tf.float32, [2, None]), tf.zeros([2, 2]))
    with pytest.raises(ValueError, match="at least one cell"):
        rnn_cell.MultiRNNCell([])
    with pytest.raises(ValueError, match="state_is_tuple is not set"):
        rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(2)], state_is_tuple=False)
    with pytest.raises(ValueError, match="input_keep_prob must be between 0 and 1"):
        rnn_cell.DropoutWrapper(rnn_cell.GRUCell(2), input_keep_prob=1.5)
    with pytest.raises(ValueError, match="dtype` must be specified"):
        tf.nn.static_rnn(rnn_cell.GRUCell(2), [x])
    with pytest.raises(TypeError, match="must be a sequence"):
        tf.nn.static_rnn(rnn_cell.GRUCell(2), x, dtype=tf.float32)
    with pytest.raises(TypeError, match="is not an RNNCell"):
        tf.nn.dynamic_rnn(lambda a, b: a, tf.zeros([2, 3, 1]), dtype=tf.float32)
    with pytest.raises(ValueError, match=r"depth of inputs.*\(\?, \?, \?\)"):
        tf.nn.dynamic_rnn(rnn_cell.GRUCell(2), tf.placeholder(tf.float32, [None, None, None]), dtype=tf.float32)
    with pytest.raises(ValueError, match="sequence_length must be a vector"):
        tf.nn.dynamic_rnn(rnn_cell.GRUCell(2), tf.zeros([2, 3, 1]), sequence_length=[[1, 2]], dtype=tf.float32)


# -- dropout ------------------------------------------------------------------------------------------
def test_dropout_wrapper_at_keep_prob_one_adds_nothing():
    x = tf.placeholder(tf.float32, [2, 3])
    inner = rnn_cell.GRUCell(2)
    out, _ = rnn_cell.DropoutWrapper(inner)(x, inner.zero_state(2, tf.float32))
    assert not [op for op in tf.get_default_graph().get_operations() if "dropout" in op.name]
    assert out.op.name.startswith("gru_cell/")


def test_dropout_wrapper_drops_outputs_and_hidden_state_but_not_memory():
    x = tf.placeholder(tf.float32, [64, 3])
    inner = rnn_cell.BasicLSTMCell(8)
    cell = rnn_cell.DropoutWrapper(inner, output_keep_prob=0.5, state_keep_prob=0.5, seed=3)
    assert cell.state_size == inner.state_size and cell.output_size == 8
    zero = cell.zero_state(64, tf.float32)
    out, state = cell(x, zero)
    plain_out, plain_state = inner(x, zero)
    xv = np.random.default_rng(5).standard_normal((64, 3))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, got_state, want, want_state = sess.run([out, state, plain_out, plain_state], {x: xv})
    for dropped, full in [(got, want), (got_state.h, want_state.h)]:
        kept = dropped != 0
        np.testing.assert_allclose(dropped[kept], full[kept] / 0.5, rtol=1e-6)
        assert 0.35 < kept.mean() < 0.65
    np.testing.assert_array_equal(got_state.c, want_state.c)
    assert not np.array_equal(got != 0, got_state.h != 0)  # output and state masks differ


def test_dropout_wrapper_spares_the_memory_of_every_lstm_in_a_stack():
    x = tf.placeholder(tf.float32, [32, 3])
    stack = rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(4), rnn_cell.GRUCell(4)])
    zero = stack.zero_state(32, tf.float32)
    _, (lstm, gru) = rnn_cell.DropoutWrapper(stack, state_keep_prob=0.5)(x, zero)
    _, (plain_lstm, plain_gru) = stack(x, zero)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run([lstm, gru, plain_lstm, plain_gru], {x: np.ones((32, 3))})
    np.testing.assert_array_equal(got[0].c, got[2].c)
    for dropped, full in [(got[0].h, got[2].h), (got[1], got[3])]:
        assert 0.3 < (dropped == 0).mean() < 0.7
        np.testing.assert_allclose(dropped[dropped != 0], 2 * full[dropped != 0], rtol=1e-6)


def test_dropout_wrapper_input_dropout_with_a_tensor_keep_prob():
    keep = tf.placeholder(tf.float32, [])
    x = tf.placeholder(tf.float32, [None, 200])
    cell = rnn_cell.DropoutWrapper(rnn_cell.BasicRNNCell(1, activation=tf.identity), input_keep_prob=keep)
    out, _ = cell(x, tf.zeros([1, 1]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        cell.variables[0].load(np.eye(201, 1), sess)
        got_full = sess.run(out, {x: np.ones((1, 200)), keep: 1.0})
        got_dropped = sess.run(out, {x: np.ones((1, 200)), keep: 0.25})
    np.testing.assert_allclose(got_full, 1.0)
    assert got_dropped[0, 0] in (0.0, 4.0)


# -- static_rnn ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, [3, 1, 0]])
def test_static_rnn_matches_numpy(lengths):
    rng = np.random.default_rng(6)
    xs = [tf.placeholder(tf.float64, [None, 2]) for _ in range(3)]
    outputs, state = tf.nn.static_rnn(rnn_cell.BasicLSTMCell(4), xs, dtype=tf.float64,
                                      sequence_length=lengths)
    assert [v.name for v in tf.global_variables()] == ["rnn/basic_lstm_cell/kernel:0", "rnn/basic_lstm_cell/bias:0"]
    assert len(outputs) == 3 and outputs[0].shape.as_list()[1] == 4
    xv = rng.standard_normal((3, 3, 2))
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = variables_by_name(sess, "rnn/basic_lstm_cell/")
        got_out, got_state = sess.run([outputs, state], dict(zip(xs, xv.transpose(1, 0, 2))))
    want_out, want_c, want_h = np_lstm_sequence(xv, lengths or [3, 3, 3], w["kernel"], w["bias"], 4)
    np.testing.assert_allclose(np.stack(got_out, 1), want_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_state.c, want_c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_state.h, want_h, rtol=1e-12, atol=1e-14)


def test_static_rnn_initial_state_and_scope():
    x = tf.placeholder(tf.float32, [2, 3])
    h0 = tf.placeholder(tf.float32, [2, 2])
    outputs, state = tf.nn.static_rnn(rnn_cell.BasicRNNCell(2), [x, x], initial_state=h0, scope="enc")
    assert [v.name for v in tf.global_variables()] == ["enc/basic_rnn_cell/kernel:0", "enc/basic_rnn_cell/bias:0"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        kernel, bias = sess.run(tf.global_variables())
        xv, hv = np.ones((2, 3)), np.full((2, 2), 0.5)
        got = sess.run(state, {x: xv, h0: hv})
    want = np_basic_rnn(xv, np_basic_rnn(xv, hv, kernel, bias), kernel, bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def directional_derivative_errors(loss, targets, feed, rng, eps=1e-5):
    """For each target (a variable or a fed placeholder): |<dloss/dtarget, v> - the central
    difference along a random v| / scale, in float64."""
    grads = tf.gradients(loss, targets)
    errors = {}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        random_weights(sess, np.random.default_rng(0), scale=0.4)
        for target, g in zip(targets, sess.run(grads, feed)):
            is_var = isinstance(target, tf.Variable)
            w = sess.run(target) if is_var else feed[target]
            v = rng.standard_normal(w.shape)

            def loss_at(value):
                if is_var:
                    target.load(value, sess)
                    return sess.run(loss, feed)
                return sess.run(loss, {**feed, target: value})

            numeric = (loss_at(w + eps * v) - loss_at(w - eps * v)) / (2 * eps)
            if is_var:
                target.load(w, sess)
            symbolic = float(np.sum(g * v))
            errors[target.name] = abs(numeric - symbolic) / max(1.0, abs(symbolic))
    return errors


def test_static_rnn_gradients_in_float64():
    rng = np.random.default_rng(7)
    xs = [tf.placeholder(tf.float64, [2, 3]) for _ in range(3)]
    cell = rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(2), rnn_cell.GRUCell(2)])
    outs, state = tf.nn.static_rnn(cell, xs, dtype=tf.float64, sequence_length=[3, 1])
    loss = tf.reduce_sum(tf.sin(tf.stack(outs))) + tf.reduce_sum(state[0].c * state[1])
    feed = {x: rng.standard_normal((2, 3)) for x in xs}
    errors = directional_derivative_errors(loss, cell.variables + xs, feed, rng)
    assert max(errors.values()) < 1e-7, errors


def test_lstm_step_kernel_gradient_in_float64():
    rng = np.random.default_rng(8)
    x = tf.placeholder(tf.float64, [3, 2])
    cell = rnn_cell.LSTMCell(3, use_peepholes=True, num_proj=2, initializer=tf.random_normal_initializer(seed=1))
    out, state = cell(x, cell.zero_state(3, tf.float64))
    out, state = cell(x, state)
    loss = tf.reduce_sum(out * out) + tf.reduce_sum(tf.sin(state.c))
    feed = {x: rng.standard_normal((3, 2))}
    errors = directional_derivative_errors(loss, cell.variables + [x], feed, rng)
    assert max(errors.values()) < 1e-7, errors


# -- dynamic_rnn --------------------------------------------------------------------------------------
@pytest.mark.parametrize("time_major", [False, True])
def test_dynamic_rnn_matches_numpy_with_variable_lengths(time_major):
    rng = np.random.default_rng(9)
    shape = [6, None, 3] if time_major else [None, 6, 3]
    x = tf.placeholder(tf.float64, shape)
    lengths = tf.placeholder(tf.int32, [None])
    outputs, state = tf.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(4), x, sequence_length=lengths,
                                       dtype=tf.float64, time_major=time_major)
    assert [v.name for v in tf.global_variables()] == ["rnn/basic_lstm_cell/kernel:0", "rnn/basic_lstm_cell/bias:0"]
    assert outputs.shape.as_list() == ([6, None, 4] if time_major else [None, 6, 4])
    xv, lv = rng.standard_normal((3, 6, 3)), np.array([6, 2, 0])
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = variables_by_name(sess, "rnn/basic_lstm_cell/")
        feed_x = xv.transpose(1, 0, 2) if time_major else xv
        got, got_state = sess.run([outputs, state], {x: feed_x, lengths: lv})
        short = sess.run(outputs, {x: feed_x, lengths: [3, 1, 2]})  # loop stops at 3; the rest are zeros
    want, want_c, want_h = np_lstm_sequence(xv, lv, w["kernel"], w["bias"], 4)
    np.testing.assert_allclose(got.transpose(1, 0, 2) if time_major else got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_state.c, want_c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_state.h, want_h, rtol=1e-12, atol=1e-14)
    want_short, _, _ = np_lstm_sequence(xv, [3, 1, 2], w["kernel"], w["bias"], 4)
    np.testing.assert_allclose(short.transpose(1, 0, 2) if time_major else short, want_short, rtol=1e-12, atol=1e-14)


def test_dynamic_rnn_without_lengths_and_with_an_initial_state():
    rng = np.random.default_rng(10)
    x = tf.placeholder(tf.float32, [2, 5, 3])
    h0 = tf.placeholder(tf.float32, [2, 4])
    cell = rnn_cell.GRUCell(4)
    outputs, state = tf.nn.dynamic_rnn(cell, x, initial_state=h0, scope="dec")
    assert outputs.shape.as_list() == [2, 5, 4] and state.shape.as_list() == [2, 4]
    assert tf.global_variables()[0].name == "dec/gru_cell/gates/kernel:0"
    xv, hv = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w = variables_by_name(sess, "dec/gru_cell/")
        got, got_state = sess.run([outputs, state], {x: xv, h0: hv})
    h, want = hv, []
    for t in range(5):
        h = np_gru(xv[:, t], h, w)
        want.append(h)
    np.testing.assert_allclose(got, np.stack(want, 1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_state, h, rtol=1e-4, atol=1e-6)


def test_dynamic_rnn_is_one_while_loop_whatever_the_length():
    def ops_for(steps):
        with tf.Graph().as_default() as g:
            cell = rnn_cell.MultiRNNCell([rnn_cell.BasicLSTMCell(3) for _ in range(2)])
            tf.nn.dynamic_rnn(cell, tf.placeholder(tf.float32, [None, steps, 2]), dtype=tf.float32)
            return [op.node.op for op in g.get_operations()]

    short, long = ops_for(10), ops_for(1000)
    assert short.count("while") == 1 and len(short) == len(long)


def test_dynamic_rnn_dropout_draws_a_new_mask_each_step():
    x = tf.ones([16, 4, 3])
    cell = rnn_cell.DropoutWrapper(rnn_cell.BasicRNNCell(8), output_keep_prob=0.5, seed=1)
    outputs, _ = tf.nn.dynamic_rnn(cell, x, dtype=tf.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run(outputs)
    masks = got != 0
    assert 0.35 < masks.mean() < 0.65
    assert len({m.tobytes() for m in masks.transpose(1, 0, 2)}) == 4


def test_dynamic_rnn_gradients_in_float64():
    rng = np.random.default_rng(12)
    x = tf.placeholder(tf.float64, [None, 5, 2])
    h0 = tf.placeholder(tf.float64, [None, 3])
    cell = rnn_cell.MultiRNNCell([rnn_cell.GRUCell(3), rnn_cell.BasicLSTMCell(2)])
    zero = cell.zero_state(tf.shape(x)[0], tf.float64)
    outputs, state = tf.nn.dynamic_rnn(cell, x, sequence_length=[5, 3], initial_state=(h0, zero[1]))
    loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(state[1].c * state[1].h)
    feed = {x: rng.standard_normal((2, 5, 2)), h0: rng.standard_normal((2, 3))}
    errors = directional_derivative_errors(loss, cell.variables + [x, h0], feed, rng)
    assert max(errors.values()) < 1e-7, errors


def test_bidirectional_dynamic_rnn_matches_numpy():
    rng = np.random.default_rng(13)
    x = tf.placeholder(tf.float64, [None, 4, 2])
    (out_fw, out_bw), (st_fw, st_bw) = tf.nn.bidirectional_dynamic_rnn(
        rnn_cell.BasicLSTMCell(3), rnn_cell.BasicLSTMCell(3), x, sequence_length=[4, 2], dtype=tf.float64)
    assert [v.name.split(":")[0] for v in tf.global_variables()] == [
        "bidirectional_rnn/fw/basic_lstm_cell/kernel", "bidirectional_rnn/fw/basic_lstm_cell/bias",
        "bidirectional_rnn/bw/basic_lstm_cell/kernel", "bidirectional_rnn/bw/basic_lstm_cell/bias"]
    assert out_bw.shape.as_list() == [None, 4, 3]
    xv = rng.standard_normal((2, 4, 2))
    with tf.Session() as sess:
        random_weights(sess, rng)
        w = variables_by_name(sess, "bidirectional_rnn/")
        got_fw, got_bw, got_bw_h = sess.run([out_fw, out_bw, st_bw.h], {x: xv})
    want_fw, _, _ = np_lstm_sequence(xv, [4, 2], w["fw/basic_lstm_cell/kernel"], w["fw/basic_lstm_cell/bias"], 3)
    rev = np.stack([xv[0, ::-1], np.concatenate([xv[1, 1::-1], xv[1, 2:]])])
    bw, _, bw_h = np_lstm_sequence(rev, [4, 2], w["bw/basic_lstm_cell/kernel"], w["bw/basic_lstm_cell/bias"], 3)
    want_bw = np.stack([bw[0, ::-1], np.concatenate([bw[1, 1::-1], bw[1, 2:]])])
    np.testing.assert_allclose(got_fw, want_fw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_bw, want_bw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_bw_h, bw_h, rtol=1e-12, atol=1e-14)


def test_contrib_rnn_aliases():
    assert tf.contrib.rnn.BasicLSTMCell is rnn_cell.BasicLSTMCell
    assert tf.contrib.rnn.MultiRNNCell is rnn_cell.MultiRNNCell
    assert tf.contrib.rnn.DropoutWrapper is rnn_cell.DropoutWrapper
    assert tf.contrib.rnn.LSTMStateTuple is rnn_cell.LSTMStateTuple
    assert tf.contrib.rnn.static_rnn is tf.nn.static_rnn


def test_lstm_classifier_trains():
    """The lecture's LSTM classifier, unchanged but tiny: is the sum of a sequence positive?"""
    rng = np.random.default_rng(14)
    xs = rng.standard_normal((64, 6, 1)).astype(np.float32)
    labels = (xs.sum(axis=(1, 2)) > 0).astype(np.int64)
    x = tf.placeholder(tf.float32, [None, 6, 1])
    y = tf.placeholder(tf.int64, [None])
    cells = [tf.contrib.rnn.DropoutWrapper(tf.contrib.rnn.BasicLSTMCell(8), output_keep_prob=1.0) for _ in range(2)]
    outputs, state = tf.nn.dynamic_rnn(tf.contrib.rnn.MultiRNNCell(cells), x, dtype=tf.float32)
    logits = tf.layers.dense(state[-1].h, 2)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    step = tf.train.AdamOptimizer(0.05).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run(loss, {x: xs, y: labels})
        for _ in range(30):
            sess.run(step, {x: xs, y: labels})
        last = sess.run(loss, {x: xs, y: labels})
    assert last < 0.5 * first
