"""Optimizers: the lecture's program, each TF 1.x update rule against NumPy (and TensorFlow),
slots, the global step, learning-rate schedules and the build-time errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

import tfjit as tf
from tfjit.runtime.state import RuntimeState


# -- the lecture's program ---------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _lecture_batches(steps: int, batch_len: int, n_in: int, n_out: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [(rng.random((batch_len, n_out)).astype(np.float32),
             rng.standard_normal((batch_len, n_in)).astype(np.float32)) for _ in range(steps)]


def _lecture_numpy(batches: list, n_in: int, n_out: int) -> tuple[list[float], np.ndarray, np.ndarray]:
    """The same 200 SGD steps by hand: y = sigmoid(xW + b), loss = mean((y - d)^2)."""
    W, b = np.zeros((n_in, n_out), np.float32), np.zeros(n_out, np.float32)
    losses = []
    for data_d, data_x in batches:
        y = _sigmoid(data_x @ W + b)
        losses.append(float(np.mean(np.square(y - data_d))))
        dz = 2 * (y - data_d) / y.size * y * (1 - y)
        W = W - np.float32(0.01) * (data_x.T @ dz)
        b = b - np.float32(0.01) * dz.sum(axis=0)
    return losses, W, b


def test_the_lecture_program_trains_and_matches_numpy():
    n_in, n_out, batch_len, step_len = 16, 4, 32, 200
    batches = _lecture_batches(step_len, batch_len, n_in, n_out)
    data = iter(batches)

    def get_data_class(batch_len):
        return next(data)

    # -- the lecture's code, unchanged --
    x = tf.placeholder(tf.float32, shape=[None] + [n_in])
    d = tf.placeholder(tf.float32, shape=[None] + [n_out])
    W = tf.Variable(tf.zeros([n_in, n_out]))
    b = tf.Variable(tf.zeros([n_out]))
    matop = tf.matmul(x, W) + b
    y = tf.nn.sigmoid(matop)
    loss = tf.square(y - d)
    loss_mean = tf.reduce_mean(loss)
    opmizer = tf.train.GradientDescentOptimizer(0.01)
    step = opmizer.minimize(loss_mean)
    sess = tf.Session()
    initer = tf.global_variables_initializer()
    sess.run(initer)
    seen = []
    for _ in range(step_len):
        data_d, data_x = get_data_class(batch_len)
        seen.append(sess.run(loss_mean, feed_dict={x: data_x, d: data_d}))
        sess.run(step, feed_dict={x: data_x, d: data_d})
    # -- end of the lecture's code --
    expected, W_np, b_np = _lecture_numpy(batches, n_in, n_out)
    np.testing.assert_allclose(seen, expected, rtol=1e-5)
    np.testing.assert_allclose(sess.run(W), W_np, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sess.run(b), b_np, rtol=1e-5, atol=1e-7)
    assert np.mean(seen[-20:]) < np.mean(seen[:20])


# -- every update rule on a small MLP ----------------------------------------------------------
class _Mlp:
    """x -> tanh(x W1 + b1) W2 + b2, loss = mean((out - t)^2); NumPy forward and backward."""

    names = ("W1", "b1", "W2", "b2")

    def __init__(self, dtype: type, seed: int = 3):
        rng = np.random.default_rng(seed)
        self.init = {"W1": rng.standard_normal((5, 6)), "b1": rng.standard_normal(6) * 0.1,
                     "W2": rng.standard_normal((6, 3)), "b2": rng.standard_normal(3) * 0.1}
        self.init = {k: v.astype(dtype) for k, v in self.init.items()}
        self.x = rng.standard_normal((8, 5)).astype(dtype)
        self.t = rng.standard_normal((8, 3)).astype(dtype)

    def grads(self, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = np.tanh(self.x @ p["W1"] + p["b1"])
        out = h @ p["W2"] + p["b2"]
        dout = 2 * (out - self.t) / out.size
        dh = dout @ p["W2"].T * (1 - h * h)
        return {"W1": self.x.T @ dh, "b1": dh.sum(0), "W2": h.T @ dout, "b2": dout.sum(0)}

    def build(self) -> tuple[dict[str, tf.Variable], tf.Tensor]:
        v = {k: tf.Variable(a, name=k) for k, a in self.init.items()}
        h = tf.tanh(tf.matmul(tf.constant(self.x), v["W1"]) + v["b1"])
        out = tf.matmul(h, v["W2"]) + v["b2"]
        return v, tf.reduce_mean(tf.square(out - tf.constant(self.t)))


def _numpy_rule(kind: str, hp: dict, dtype: type):
    """TF 1.x's documented update for one variable: returns (init_state, step(var, grad, state, t)).

    As in TF, Python hyperparameters become float32 tensors cast to the variable's dtype, and
    Adam's `beta1_power`/`beta2_power` are float32 variables whatever the variables' dtype.
    """
    c = {k: dtype(np.float32(v)) for k, v in hp.items()}
    one = dtype(1)

    if kind == "sgd":
        return lambda v: {}, lambda v, g, s, t: v - g * c["lr"]
    if kind == "momentum":
        def momentum(v, g, s, t):
            s["a"] = s["a"] * c["mu"] + g
            return v - (g * c["lr"] + s["a"] * c["mu"] * c["lr"] if hp.get("nesterov") else s["a"] * c["lr"])
        return lambda v: {"a": np.zeros_like(v)}, momentum
    if kind == "adam":
        def adam(v, g, s, t):
            b1_power, b2_power = (dtype(np.prod(np.full(t, hp[k], np.float32))) for k in ("b1", "b2"))
            lr_t = c["lr"] * np.sqrt(one - b2_power) / (one - b1_power)
            s["m"] = s["m"] + (g - s["m"]) * (one - c["b1"])
            s["v"] = s["v"] + (g * g - s["v"]) * (one - c["b2"])
            return v - s["m"] * lr_t / (np.sqrt(s["v"]) + c["eps"])
        return lambda v: {"m": np.zeros_like(v), "v": np.zeros_like(v)}, adam
    if kind == "rmsprop":
        def rmsprop(v, g, s, t):
            s["ms"] = s["ms"] + (g * g - s["ms"]) * (one - c["rho"])
            denom = s["ms"]
            if hp.get("centered"):
                s["mg"] = s["mg"] + (g - s["mg"]) * (one - c["rho"])
                denom = s["ms"] - s["mg"] * s["mg"]
            s["mom"] = s["mom"] * c["mu"] + g * c["lr"] / np.sqrt(denom + c["eps"])
            return v - s["mom"]
        return lambda v: {"ms": np.ones_like(v), "mg": np.zeros_like(v), "mom": np.zeros_like(v)}, rmsprop
    if kind == "adagrad":
        def adagrad(v, g, s, t):
            s["acc"] = s["acc"] + g * g
            return v - g * c["lr"] / np.sqrt(s["acc"])
        return lambda v: {"acc": np.full_like(v, 0.1)}, adagrad
    raise AssertionError(kind)


OPTIMIZERS = {
    "sgd": (lambda: tf.train.GradientDescentOptimizer(0.1), {"lr": 0.1}),
    "momentum": (lambda: tf.train.MomentumOptimizer(0.05, 0.9), {"lr": 0.05, "mu": 0.9}),
    "nesterov": (lambda: tf.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
                 {"lr": 0.05, "mu": 0.9, "nesterov": True}),
    "adam": (lambda: tf.train.AdamOptimizer(0.01), {"lr": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "rmsprop": (lambda: tf.train.RMSPropOptimizer(0.01), {"lr": 0.01, "rho": 0.9, "mu": 0.0, "eps": 1e-10}),
    "rmsprop_centered": (lambda: tf.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.5, epsilon=1e-6,
                                                           centered=True),
                         {"lr": 0.01, "rho": 0.8, "mu": 0.5, "eps": 1e-6, "centered": True}),
    "adagrad": (lambda: tf.train.AdagradOptimizer(0.1), {"lr": 0.1}),
}
_KIND = {"nesterov": "momentum", "rmsprop_centered": "rmsprop"}


def _numpy_training(mlp: _Mlp, name: str, steps: int, dtype: type) -> dict[str, np.ndarray]:
    init_state, update = _numpy_rule(_KIND.get(name, name), OPTIMIZERS[name][1], dtype)
    params = dict(mlp.init)
    states = {k: init_state(v) for k, v in params.items()}
    for t in range(1, steps + 1):
        grads = mlp.grads(params)  # every gradient from the pre-update values
        params = {k: update(params[k], grads[k], states[k], t) for k in params}
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_ten_steps_match_the_numpy_update_rule(name, dtype):
    mlp = _Mlp(dtype)
    variables, loss = mlp.build()
    train = OPTIMIZERS[name][0]().minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(10):
            sess.run(train)
        got = sess.run(variables)
    expected = _numpy_training(mlp, name, 10, dtype)
    for k in mlp.names:
        assert got[k].dtype == dtype
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-7, err_msg=f"{name}: {k}")


def _tensorflow_training(tf1, mlp: _Mlp, name: str, steps: int) -> dict[str, np.ndarray]:
    """The same MLP and optimizer in TensorFlow's own tf.compat.v1, from the same initial values."""
    make = {"sgd": lambda: tf1.train.GradientDescentOptimizer(0.1),
            "momentum": lambda: tf1.train.MomentumOptimizer(0.05, 0.9),
            "nesterov": lambda: tf1.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
            "adam": lambda: tf1.train.AdamOptimizer(0.01),
            "rmsprop": lambda: tf1.train.RMSPropOptimizer(0.01),
            "rmsprop_centered": lambda: tf1.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.5, epsilon=1e-6,
                                                                 centered=True),
            "adagrad": lambda: tf1.train.AdagradOptimizer(0.1)}[name]
    with tf1.Graph().as_default():
        v = {k: tf1.Variable(a, name=k) for k, a in mlp.init.items()}
        h = tf1.tanh(tf1.matmul(tf1.constant(mlp.x), v["W1"]) + v["b1"])
        loss = tf1.reduce_mean(tf1.square(tf1.matmul(h, v["W2"]) + v["b2"] - tf1.constant(mlp.t)))
        train = make().minimize(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(steps):
                sess.run(train)
            return sess.run(v)


@pytest.mark.slow  # importing TensorFlow takes 4-10 s
def test_ten_steps_match_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tensorflow = pytest.importorskip("tensorflow", reason="TensorFlow is not installed; NumPy is the oracle")
    tf1 = tensorflow.compat.v1
    cases = [(name, np.float32) for name in OPTIMIZERS] + [("adam", np.float64)]  # float32 beta powers
    for name, dtype in cases:
        tf.reset_default_graph()
        mlp = _Mlp(dtype)
        variables, loss = mlp.build()
        train = OPTIMIZERS[name][0]().minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(10):
                sess.run(train)
            got = sess.run(variables)
        expected = _tensorflow_training(tf1, mlp, name, 10)
        for k in mlp.names:
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-7, err_msg=f"{name} {dtype}: {k}")


# -- slots, the global step, var_list, schedules -----------------------------------------------
def test_slots_are_created_under_tf_names():
    W = tf.Variable(np.ones((2, 3), np.float32), name="W")
    b = tf.get_variable("dense/bias", initializer=np.zeros(3, np.float32))
    loss = tf.reduce_sum(tf.square(tf.matmul(tf.ones([4, 2]), W) + b))
    adam = tf.train.AdamOptimizer()
    adam.minimize(loss)
    names = sorted(v.op.name for v in tf.global_variables())
    assert names == ["W", "W/Adam", "W/Adam_1", "beta1_power", "beta2_power", "dense/bias", "dense/bias/Adam",
                     "dense/bias/Adam_1"]
    assert [v.op.name for v in tf.trainable_variables()] == ["W", "dense/bias"]
    assert adam.get_slot_names() == ["m", "v"]
    assert adam.get_slot(W, "m").op.name == "W/Adam" and adam.get_slot(W, "v").op.name == "W/Adam_1"
    assert adam.get_slot(W, "nope") is None
    assert [v.op.name for v in adam.variables()][:2] == ["W/Adam", "W/Adam_1"]
    rms = tf.train.RMSPropOptimizer(0.1, centered=True)
    rms.minimize(loss, var_list=[W])
    assert rms.get_slot_names() == ["mg", "momentum", "rms"]
    assert [rms.get_slot(W, k).op.name for k in ("rms", "mg", "momentum")] == ["W/RMSProp", "W/RMSProp_1",
                                                                              "W/RMSProp_2"]
    with tf.variable_scope("", reuse=True):
        assert tf.get_variable("W/RMSProp") is rms.get_slot(W, "rms")


def test_slot_initial_values_follow_tf():
    W = tf.Variable(np.ones(3), name="W")
    loss = tf.reduce_sum(W * W)
    rms, ada = tf.train.RMSPropOptimizer(0.1), tf.train.AdagradOptimizer(0.1, initial_accumulator_value=0.25)
    rms.minimize(loss), ada.minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(rms.get_slot(W, "rms")), np.ones(3))
        np.testing.assert_array_equal(sess.run(rms.get_slot(W, "momentum")), np.zeros(3))
        np.testing.assert_array_equal(sess.run(ada.get_slot(W, "accumulator")), np.full(3, 0.25))
        assert sess.run(ada.get_slot(W, "accumulator")).dtype == np.float64


def test_global_step_counts_steps_after_the_updates():
    W = tf.Variable(np.array([1.0, -2.0], np.float32), name="W")
    step = tf.train.get_or_create_global_step()
    assert tf.train.get_or_create_global_step() is step and tf.train.get_global_step() is step
    assert step.op.name == "global_step" and step.dtype == tf.int64 and not step.trainable
    assert step in tf.get_collection(tf.GraphKeys.GLOBAL_STEP)
    train = tf.train.GradientDescentOptimizer(0.5).minimize(tf.reduce_sum(tf.square(W)), global_step=step)
    assert train.name == "GradientDescent" and train.node.op == "assign_add"
    assert [op.name for op in train.control_inputs] == ["GradientDescent/update"]
    assert train in tf.get_collection(tf.GraphKeys.TRAIN_OP)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        assert tf.train.global_step(sess, step) == 3
        np.testing.assert_allclose(sess.run(W), np.array([1.0, -2.0]) * 0.0 ** 3)
    with pytest.raises(ValueError, match='"global_step" already exists'):
        tf.train.create_global_step()


def test_learning_rate_may_be_a_placeholder():
    W = tf.Variable(np.array([3.0, -1.0]), name="W")
    lr = tf.placeholder(tf.float32, [], name="lr")
    train = tf.train.MomentumOptimizer(lr, momentum=0.5).minimize(tf.reduce_sum(tf.square(W)))
    w, accum = np.array([3.0, -1.0]), np.zeros(2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for rate in (0.1, 0.05, 0.2):
            sess.run(train, feed_dict={lr: rate})
            accum = accum * np.float64(np.float32(0.5)) + 2 * w
            w = w - accum * np.float64(np.float32(rate))
            np.testing.assert_allclose(sess.run(W), w, rtol=1e-12)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_drives_the_step_size(staircase):
    step = tf.train.get_or_create_global_step()
    lr = tf.train.exponential_decay(0.1, step, decay_steps=3, decay_rate=0.5, staircase=staircase)
    assert lr.op.name == "ExponentialDecay" and lr.dtype == tf.float32
    W = tf.Variable(np.float32(10.0), name="W")
    train = tf.train.GradientDescentOptimizer(lr).minimize(W * 1.0, global_step=step)
    w = np.float32(10.0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for t in range(7):
            p = t // 3 if staircase else t / 3
            expected_lr = np.float32(0.1) * np.float32(0.5) ** np.float32(p)
            np.testing.assert_allclose(sess.run(lr), expected_lr, rtol=1e-6)
            sess.run(train)  # reads the step before incrementing it
            w = w - expected_lr
            np.testing.assert_allclose(sess.run(W), w, rtol=1e-6)
    with pytest.raises(ValueError, match="global_step is required"):
        tf.train.exponential_decay(0.1, None, 3, 0.5)


def test_piecewise_constant():
    x = tf.placeholder(tf.int64, [])
    lr = tf.train.piecewise_constant(x, [10, 20], [1.0, 0.5, 0.1])
    with tf.Session() as sess:
        got = [sess.run(lr, {x: v}) for v in (-5, 10, 11, 20, 21, 1000)]
    np.testing.assert_array_equal(got, np.float32([1.0, 1.0, 0.5, 0.5, 0.1, 0.1]))
    with pytest.raises(ValueError, match="1 less than the length of values"):
        tf.train.piecewise_constant(x, [10], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="same dtype as x"):
        tf.train.piecewise_constant(x, [1.5], [1.0, 0.5])


def test_var_list_limits_the_update_and_gradients_see_pre_update_values():
    a = tf.Variable(np.float64(2.0), name="a")
    b = tf.Variable(np.float64(3.0), name="b")
    frozen = tf.Variable(np.float64(5.0), name="frozen")
    loss = tf.square(a * b - 1.0) + frozen * a
    both = tf.train.GradientDescentOptimizer(0.01).minimize(loss, var_list=[a, b])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(both)
        ga, gb = 2 * (2 * 3 - 1) * 3 + 5, 2 * (2 * 3 - 1) * 2  # both from a=2, b=3
        lr = np.float64(np.float32(0.01))  # a Python learning rate is a float32 tensor, as in TF
        np.testing.assert_allclose(sess.run([a, b, frozen]), [2 - lr * ga, 3 - lr * gb, 5.0], rtol=1e-12)


def test_compute_and_apply_gradients_with_clipping():
    W = tf.Variable(np.array([3.0, 4.0]), name="W")
    b = tf.Variable(np.array([0.0]), name="b")
    unused = tf.Variable(np.array([1.0]), name="unused")
    opt = tf.train.GradientDescentOptimizer(0.1)
    pairs = opt.compute_gradients(tf.reduce_sum(W * W) + tf.reduce_sum(b), var_list=[W, b, unused])
    assert [v for _, v in pairs] == [W, b, unused] and pairs[2][0] is None
    grads, norm = tf.clip_by_global_norm([g for g, _ in pairs], 1.0)
    train = opt.apply_gradients(zip(grads, [W, b, unused]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        g = np.array([6.0, 8.0, 1.0])
        np.testing.assert_allclose(sess.run(norm), np.linalg.norm(g), rtol=1e-12)
        sess.run(train)
        step = np.float64(np.float32(0.1)) * g / np.linalg.norm(g)
        np.testing.assert_allclose(sess.run(W), [3 - step[0], 4 - step[1]], rtol=1e-12)
        np.testing.assert_allclose(sess.run(b), [-step[2]], rtol=1e-12)
        np.testing.assert_allclose(sess.run(unused), [1.0])


def test_build_errors():
    x = tf.Variable(np.float32(1.0), name="x")
    c = tf.constant(2.0)
    opt = tf.train.GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.minimize(c * 2.0)
    with pytest.raises(ValueError, match="Invalid type tf.int32"):
        opt.minimize(tf.constant(1), var_list=[x])
    with pytest.raises(TypeError, match="not a tf.Variable"):
        opt.minimize(x * c, var_list=[c])
    with pytest.raises(ValueError, match="No variables provided"):
        opt.apply_gradients([])
    with pytest.raises(ValueError, match="positive"):
        tf.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="No variables to optimize"):
            opt.minimize(tf.constant(1.0))


def test_updates_and_slots_live_on_their_variables_device():
    with tf.device("/cpu:0"):
        W = tf.Variable(np.ones(2, np.float32), name="W")
    b = tf.Variable(np.ones(2, np.float32), name="b")
    with tf.device("/device:CPU:1"):
        opt = tf.train.MomentumOptimizer(0.1, 0.9)
        opt.minimize(tf.reduce_sum(W * b))
    assert opt.get_slot(W, "momentum").device == W.device != ""
    assert opt.get_slot(b, "momentum").device == ""
    graph = tf.get_default_graph()
    assert graph.get_operation_by_name("Momentum/update_W/AssignSub").device == W.device
    assert graph.get_operation_by_name("Momentum/update_b/AssignSub").device == ""


def test_a_training_step_inside_tfjit_function():
    W = tf.Variable(np.array([1.0, 2.0], np.float32), name="W")
    opt = tf.train.GradientDescentOptimizer(0.1)

    @tf.function
    def train_step(x):
        loss = tf.reduce_sum(tf.square(W * x))
        opt.minimize(loss, var_list=[W])
        return loss

    w = np.array([1.0, 2.0], np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            np.testing.assert_allclose(train_step(np.ones(2, np.float32)), np.sum(w * w), rtol=1e-6)
            w = w - np.float32(0.1) * 2 * w
        np.testing.assert_allclose(sess.run(W), w, rtol=1e-6)


class _InPlaceState(RuntimeState):
    """Variables updated in place, so a read's value changes under its readers: what an in-place
    backend does. A step that wrote a variable before every gradient had read it would differ."""

    def write(self, name, value):
        old = self.variables.get(name)
        if old is None or old.shape != value.shape:
            return super().write(name, value)
        old.setflags(write=True)
        np.copyto(old, value)
        old.setflags(write=False)
        return old


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_updates_in_place_still_see_pre_update_values(name):
    mlp = _Mlp(np.float64)
    variables, loss = mlp.build()
    train = OPTIMIZERS[name][0]().minimize(loss)
    with tf.Session() as sess:
        sess.state = _InPlaceState()
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        got = sess.run(variables)
    expected = _numpy_training(mlp, name, 3, np.float64)
    for k in mlp.names:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-10, err_msg=k)


def test_coupled_variables_updated_in_place():
    """d(a.b)/da reads b and d(a.b)/db reads a: each write must wait for the other's gradient."""
    a = tf.Variable(np.array([1.0, 2.0]), name="a")
    b = tf.Variable(np.array([3.0, -1.0]), name="b")
    train = tf.train.GradientDescentOptimizer(0.5).minimize(tf.reduce_sum(a * b))
    write_a = tf.get_default_graph().get_operation_by_name("GradientDescent/update_a/AssignSub")
    assert sorted(op.name for op in write_a.control_inputs) == ["Mul", "gradients/Mul_grad/Mul_1"]  # a's readers
    av, bv = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    lr = np.float64(np.float32(0.5))
    with tf.Session() as sess:
        sess.state = _InPlaceState()
        sess.run(tf.global_variables_initializer())
        for _ in range(2):
            sess.run(train)
            av, bv = av - lr * bv, bv - lr * av
        np.testing.assert_allclose(sess.run([a, b]), [av, bv], rtol=1e-12)
