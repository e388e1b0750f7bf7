"""The numba CPU runtime on the memory plan's arena (backends/numba_cpu/executable.py): planned
intermediates written into one aligned allocation per plan and run, buffers reused only once
every view of them is dead, results the user keeps never in the arena, arenas never shared by
two threads, and `while` bodies on arenas of their own. Values are checked against the
reference backend (the oracle) over several runs with different inputs, since a wrong reuse
only shows when a later kernel overwrites a buffer still read."""
from __future__ import annotations

import linecache
import re
import threading

import numpy as np

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import buffers
from tfjit.backends.numba_cpu.executable import NumbaExecutable
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.debug import program_for
from tfjit.runtime.state import RuntimeState

from test_numba_backend import assert_same, numba_backend  # noqa: F401 (a fixture)

RNG = np.random.default_rng(21)


def _compiled(fetches, feed_dict):
    program = config.pass_manager().run(program_for(fetches, feed_dict))
    return NumbaExecutable(program), reference_compile(program)


def _args(feed_dict):
    return [np.asarray(feed_dict[k], k.dtype.np_dtype) for k in sorted(feed_dict, key=lambda t: t.op.node.uid)]


def _arena_arrays(exe):
    return [a for arena in exe._arenas for planned in arena.into for _, a in planned]


def _lstm(steps, batch, width, stacked=False, gate_read_twice=False):
    """An unrolled LSTM cell: each step's product is split into four gate views that the
    cell's loop kernel reads while later kernels are computed. `stacked`: the hidden states
    concatenated and multiplied again (each cell's kernel then writes its h into the concat's
    block, and its c into the arena). `gate_read_twice`: each output gate is also reduced into the
    result by a kernel of its own, so the split stays a node (views of the product, read by
    two kernels) rather than joining the product's kernel (sink_splits)."""
    x = tf.placeholder(tf.float32, [steps, batch, width], name="x")
    w = tf.constant(RNG.standard_normal((2 * width, 4 * width)).astype(np.float32) * 0.3)
    h = c = tf.zeros([batch, width])
    hs, gate_maxes = [], []
    for t in range(steps):
        gates = tf.matmul(tf.concat([x[t], h], axis=1), w) + 0.1
        i, f, g, o = tf.split(gates, 4, axis=1)
        gate_maxes.append(tf.reduce_max(o, axis=1, keepdims=True))
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        hs.append(h)
    if stacked:
        return x, tf.reduce_sum(tf.matmul(tf.concat(hs, axis=0), w[:width]), axis=0)
    return x, (h + 1e-3 * tf.add_n(gate_maxes) if gate_read_twice else h)


def test_views_keep_their_buffer_alive_across_later_kernels():
    x, h = _lstm(steps=3, batch=4, width=8, gate_read_twice=True)
    exe, ref = _compiled([h], {x: np.zeros((3, 4, 8), np.float32)})
    planned = exe.memory.buffer_of
    splits = [n for n in exe.graph.nodes if n.op == "split"]
    assert splits and all(n.inputs[0] in planned for n in splits)  # products in the arena
    # the loop kernel reading a split's pieces writes elsewhere than the split product
    for n in splits:
        reader = next(m for m in exe.graph.nodes if any(v in m.inputs for v in n.outputs))
        assert all(planned.get(v) != planned[n.inputs[0]] for v in reader.outputs)
    # the plan reuses buffers: fewer than the planned values
    assert len(exe.memory.buffer_bytes) < len(planned)
    for _ in range(3):
        args = [RNG.standard_normal((3, 4, 8)).astype(np.float32)]
        assert_same(exe.run(args, RuntimeState()), ref.run(args, RuntimeState()))


def test_kernels_write_a_concat_block_and_arena_buffers_in_one_call():
    x, out = _lstm(steps=3, batch=1, width=8, stacked=True)
    exe, ref = _compiled([out], {x: np.zeros((3, 1, 8), np.float32)})
    source = "".join(linecache.getlines(exe._filename))
    assert re.search(r"into=\(\(\d+, c\d+\[[0-9:, ]+\]\), \*a\d+\)", source)  # block + arena
    for _ in range(3):
        args = [RNG.standard_normal((3, 1, 8)).astype(np.float32)]
        assert_same(exe.run(args, RuntimeState()), ref.run(args, RuntimeState()), rtol=1e-5, atol=1e-6)


def test_arena_buffers_and_pooled_buffers_start_on_64_byte_boundaries():
    x, h = _lstm(steps=2, batch=4, width=8)
    exe, _ = _compiled([h], {x: np.zeros((2, 4, 8), np.float32)})
    exe.run([np.ones((2, 4, 8), np.float32)], RuntimeState())
    arrays = _arena_arrays(exe)
    assert arrays and all(a.ctypes.data % 64 == 0 for a in arrays)
    offsets, nbytes = exe.memory.offsets()
    assert len(set(offsets)) == len(offsets) and nbytes % 64 == 0
    for shape in [(1 << 18,), (300, 1001)]:  # pooled (>= 1 MiB)
        kept = [buffers.POOL.empty(shape, np.float32) for _ in range(3)]
        assert all(a.ctypes.data % 64 == 0 and a.shape == shape for a in kept)
        assert len({a.ctypes.data for a in kept}) == 3  # held ones are never handed out twice


def test_results_and_their_views_never_live_in_the_arena_and_survive_later_runs():
    x = tf.placeholder(tf.float32, [6, 8], name="x")
    w = tf.constant(RNG.standard_normal((8, 8)).astype(np.float32))
    y = tf.matmul(tf.exp(x), w)
    z = tf.tanh(y / tf.reduce_sum(y, axis=1, keepdims=True))
    r = tf.reshape(tf.sigmoid(z) + 1.0, [8, 6])  # a view of a kernel's result is fetched
    t = tf.reduce_max(tf.matmul(z, w), axis=0)  # the max's reference may return its input's memory
    exe, ref = _compiled([r, t, z], {x: np.zeros((6, 8), np.float32)})
    planned = {n.op for n in exe.graph.nodes for v in n.outputs if v in exe.memory.buffer_of}
    assert planned == {"exp", "matmul"}  # exp(x) and y; not z's matmul, whose result t may view
    kept = []
    for _ in range(3):
        args = [RNG.standard_normal((6, 8)).astype(np.float32)]
        got = exe.run(args, RuntimeState())
        assert_same(got, ref.run(args, RuntimeState()))
        assert not any(np.shares_memory(g, a) for g in got for a in _arena_arrays(exe))
        kept.append(([g.copy() for g in got], got))
    for copies, got in kept:  # later runs overwrote none of them
        for c, g in zip(copies, got):
            np.testing.assert_array_equal(c, g)


def test_values_a_queue_keeps_stay_intact_across_later_runs(numba_backend):
    x = tf.placeholder(tf.float32, [4, 5], name="x")
    y = tf.exp(x) + 1.0
    q = tf.FIFOQueue(4, [tf.float32], shapes=[[4, 5]])
    enqueue = q.enqueue([tf.sigmoid(y) * 2.0])
    with tf.Session() as sess:
        feeds = [RNG.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
        for f in feeds:
            sess.run(enqueue, {x: f})
        for f in feeds:
            want = 2.0 / (1.0 + np.exp(-(np.exp(f) + 1.0)))
            np.testing.assert_allclose(sess.run(q.dequeue()), want, rtol=2e-6)


def test_two_threads_running_one_session_each_get_their_own_results(numba_backend):
    x = tf.placeholder(tf.float32, [16, 32], name="x")
    w = tf.constant(RNG.standard_normal((32, 32)).astype(np.float32))
    h = tf.tanh(tf.matmul(x, w) + 1.0)
    out = tf.reduce_sum(tf.nn.softmax(tf.matmul(h, w)) * h, axis=1)
    feeds = [RNG.standard_normal((16, 32)).astype(np.float32) for _ in range(2)]
    errors = []
    with tf.Session() as sess:
        wants = [sess.run(out, {x: f}) for f in feeds]
        (exe, _), = sess._cache.values()
        assert exe.memory.buffer_of
        config.set_backend("reference")
        try:
            with tf.Session() as oracle:
                assert_same(wants, [oracle.run(out, {x: f}) for f in feeds])
        finally:
            config.set_backend("numba")

        def work(feed, want):
            try:
                for _ in range(200):
                    np.testing.assert_array_equal(sess.run(out, {x: feed}), want)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=pair) for pair in zip(feeds, wants)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors


def test_while_bodies_run_on_arenas_of_their_own(numba_backend):
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    w = tf.constant(RNG.standard_normal((6, 6)).astype(np.float32) * 0.5)

    def body(i, h):
        a, b = tf.split(tf.matmul(h, w) + 0.5, 2, axis=1)
        return i + 1, tf.concat([tf.tanh(a) * tf.sigmoid(b), tf.sigmoid(a) - tf.tanh(b)], axis=1)

    _, h = tf.while_loop(lambda i, h: i < 5, body, [tf.constant(0), x])
    exe, ref = _compiled([h], {x: np.zeros((4, 6), np.float32)})
    (loop,) = [k for n, k in exe.kernels if n.op == "while"]
    assert loop.body.memory.buffer_of  # the body's product is in the body's arena
    for _ in range(2):
        args = [RNG.standard_normal((4, 6)).astype(np.float32)]
        assert_same(exe.run(args, RuntimeState()), ref.run(args, RuntimeState()), rtol=1e-5, atol=1e-6)
