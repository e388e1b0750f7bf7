"""Debug modes: check_numerics names the first kernel producing NaN/inf (op, user line, forward
or backward) on both backends; the differential mode names the first numba kernel that
disagrees with the reference backend; with the modes off the plain executable runs."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.debug_modes import CheckedExecutable, KernelMismatchError
from tfjit.backends.numba_cpu import loop
from tfjit.backends.numba_cpu.executable import NumbaExecutable
from tfjit.backends.numba_cpu.reduction import RowKernel
from tfjit.backends.reference import ReferenceExecutable
from tfjit.debug import program_for
from tfjit.runtime.state import RuntimeState

BACKENDS = ["reference", "numba"]


@pytest.fixture(autouse=True)
def _modes_restored(monkeypatch):
    """Each test sets the modes and backend it needs; the process-wide settings come back after."""
    for setting in ("backend", "check_numerics", "differential"):
        monkeypatch.setattr(config.current, setting, getattr(config.current, setting))


def here() -> int:
    """The caller's line (tests assert that errors name the user's line)."""
    import inspect

    return inspect.currentframe().f_back.f_lineno


def compiled(fetches, feed_dict):
    """The optimised program of `fetches` through config.compile_graph, and its arguments."""
    program = config.pass_manager().run(program_for(fetches, feed_dict))
    args = [np.asarray(feed_dict[k], k.dtype.np_dtype) for k in sorted(feed_dict, key=lambda t: t.op.node.uid)]
    return config.compile_graph(program), args


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value, kind", [(0.0, "Inf"), (-1.0, "NaN")])
def test_a_forward_nan_or_inf_is_reported_at_the_users_line(backend, value, kind):
    config.set_backend(backend)
    config.check_numerics(True)
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    y = tf.log(x) * 2.0 + 1.0; line = here()  # noqa: E702 (the line the error must name)
    xv = np.array([[1.0, 2.0, value], [3.0, 4.0, 5.0]], np.float32)
    with tf.Session() as sess:
        with pytest.raises(tf.InvalidArgumentError,
                           match=rf"op `log` at .*test_debug_modes.py:{line} \(Log.*\), forward pass: "
                                 rf"output 0 \(f32\[2,3\]\): Tensor had {kind} values"):
            sess.run(y, {x: xv})


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nan_in_the_gradient_is_reported_as_backward_at_the_forward_ops_line(backend):
    config.set_backend(backend)
    config.check_numerics(True)
    x = tf.placeholder(tf.float32, [4], name="x")
    w = tf.Variable(np.array([1.0, 0.0, 2.0, 3.0], np.float32))
    y = tf.sqrt(w * x); line = here()  # noqa: E702 (sqrt's gradient at 0 is inf)
    loss = tf.reduce_sum(y * 0.5)
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert np.isfinite(sess.run(loss, {x: np.ones(4, np.float32)}))  # the forward pass is fine
        with pytest.raises(tf.InvalidArgumentError,
                           match=rf"op `\w+` at .*test_debug_modes.py:{line} \(gradients/Sqrt_grad/.*\), "
                                 r"backward pass: .*Tensor had (Inf|NaN|Inf and NaN) values"):
            sess.run(step, {x: np.ones(4, np.float32)})


def test_a_nan_fed_by_the_user_is_reported_as_the_fed_value():
    config.check_numerics(True)
    x = tf.placeholder(tf.float64, [2], name="inputs")
    with tf.Session() as sess, pytest.raises(tf.InvalidArgumentError,
                                             match=r"value fed for inputs:0 .*Tensor had NaN values \(1 NaN"):
        sess.run(x * 2.0, {x: np.array([np.nan, 1.0])})


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_numerics_gives_the_plain_results_when_all_is_finite(backend):
    config.set_backend(backend)
    rng = np.random.default_rng(1)
    x = tf.placeholder(tf.float32, [None, 5], name="x")
    w = tf.Variable(rng.standard_normal((5, 3)).astype(np.float32))
    loss = tf.reduce_mean(tf.nn.softmax(tf.matmul(x, w)) ** 2)
    step = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    xv = rng.standard_normal((8, 5)).astype(np.float32)
    losses = {}
    for checked in (False, True):
        config.check_numerics(checked)
        config.set_differential(checked)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            losses[checked] = [sess.run([loss, step], {x: xv})[0] for _ in range(3)]
    np.testing.assert_array_equal(losses[True], losses[False])  # each update applied once, same order


def test_the_differential_mode_names_a_kernel_that_returns_wrong_numbers():
    config.set_backend("numba")
    config.set_differential(True)
    x = tf.placeholder(tf.float32, [6], name="x")
    y = tf.tanh(x) * 3.0 + 1.0; line = here()  # noqa: E702
    z = tf.reduce_sum(y * y)
    exe, args = compiled([y, z], {x: np.linspace(-2, 2, 6)})
    assert isinstance(exe, CheckedExecutable)
    expected = tf.Session().run([y, z], {x: args[0]})
    got = exe.run(args, RuntimeState())  # every kernel agrees with the reference backend
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    index = next(i for i, (n, k) in enumerate(exe.inner.kernels) if isinstance(k, (loop.LoopKernel, RowKernel)))
    node, good = exe.inner.kernels[index]
    exe.inner.kernels[index] = (node, lambda *a, **kw: tuple(o * np.float32(1.001) for o in good(*a, **kw)))
    with pytest.raises(KernelMismatchError,
                       match=rf"kernel {node.name} \(op `fused` at .*test_debug_modes.py:{line + 1}, forward pass\) "
                             r"differs from the reference backend: output \d .* max abs error .*"
                             r"max rel error (0.001|0.000999)"):
        exe.run(args, RuntimeState())


def test_the_differential_mode_checks_the_variables_an_update_kernel_assigns():
    config.set_backend("numba")
    config.set_differential(True)
    rng = np.random.default_rng(2)
    x = tf.placeholder(tf.float64, [4, 3], name="x")
    w = tf.Variable(rng.standard_normal((3, 2)))
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w)))
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    init, _ = compiled(tf.global_variables_initializer(), {})
    exe, args = compiled(step, {x: rng.standard_normal((4, 3))})
    state = RuntimeState()
    init.run([], state)
    updates = [i for i, (n, _) in enumerate(exe.inner.kernels) if "assign_sub" in ops_of(n)]
    exe.run(args, state)  # agrees
    node, good = exe.inner.kernels[updates[0]]

    def assigns_too_much(*inputs, state):
        out = good(*inputs, state=state)
        for var in list(state.variables):
            state.variables[var] = state.variables[var] + 1.0
        return out

    assigns_too_much.needs_state = assigns_too_much.returns_tuple = True
    exe.inner.kernels[updates[0]] = (node, assigns_too_much)
    with pytest.raises(KernelMismatchError, match=rf"kernel {node.name} .*optimizer update pass\) .*: variable "
                                                  r"Variable after the update .* max abs error 1, max rel error"):
        exe.run(args, state)


def ops_of(node):
    """The ops of `node` (or of its fused body)."""
    return [m.op for m in node.attr("body").nodes] if node.op == "fused" else [node.op]


@pytest.mark.parametrize("backend, plain", [("reference", ReferenceExecutable), ("numba", NumbaExecutable)])
def test_with_the_modes_off_the_plain_executable_runs(backend, plain):
    config.set_backend(backend)
    x = tf.placeholder(tf.float32, [3], name="x")
    exe, _ = compiled(tf.exp(x) + 1.0, {x: np.zeros(3)})
    assert type(exe) is plain
    if backend == "reference":  # the reference backend is its own oracle: nothing to compare
        config.set_differential(True)
        assert type(compiled(tf.exp(x) + 1.0, {x: np.zeros(3)})[0]) is plain


def test_the_modes_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TFJIT_CHECK_NUMERICS", "1")
    monkeypatch.setenv("TFJIT_DIFFERENTIAL", "0")
    settings = config.CompilerConfig()
    assert settings.check_numerics and not settings.differential


def test_errors_in_a_checked_plan_still_name_the_op_and_line():
    config.set_backend("numba")
    config.check_numerics(True)
    x = tf.placeholder(tf.int32, [3], name="x")
    y = tf.gather(tf.constant([1, 2, 3]), x); line = here()  # noqa: E702
    exe, _ = compiled(y, {x: np.array([0, 1, 2])})
    with pytest.raises(tf.InvalidArgumentError, match=rf"op `gather` at .*test_debug_modes.py:{line}"):
        exe.run([np.array([0, 1, 7], np.int32)], RuntimeState())


def test_turning_a_mode_on_after_a_first_run_takes_effect_at_the_next_run():
    x = tf.placeholder(tf.float32, [2], name="x")
    y = tf.log(x)
    with tf.Session() as sess:
        sess.run(y, feed_dict={x: [1.0, 0.0]})  # -inf, unchecked
        config.check_numerics(True)
        try:
            with pytest.raises(tf.InvalidArgumentError, match="Tensor had Inf values"):
                sess.run(y, feed_dict={x: [1.0, 0.0]})
        finally:
            config.check_numerics(False)
