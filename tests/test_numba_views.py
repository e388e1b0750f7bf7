"""Layout ops as views on the numba CPU backend (backends/numba_cpu/layout.py): the same
values as the reference backend, pieces that share their input's memory, kernels that get
strided inputs, and nothing aliased that must not be: (a) fetched results are arrays the
caller owns, (b) variables are never updated under a live view, (c) the buffer pool never
hands out a buffer a view still reads, (d) feeds are never written. The aliasing tests run
on both backends: the reference copies every layout result, so it is the oracle."""
from __future__ import annotations

import linecache

import numpy as np
import pytest

import tfjit as tf
from tfjit import config
from tfjit.backends.numba_cpu import executable, layout, loop
from tfjit.backends.numba_cpu.executable import compile_graph as numba_compile
from tfjit.backends.reference import compile_graph as reference_compile
from tfjit.debug import program_for
from tfjit.runtime.state import RuntimeState
from tfjit.backends.numba_cpu.buffers import POOL
from tfjit.ops.registry import get_op
from tfjit.runtime.results import owned

from test_numba_backend import assert_same, both

RNG = np.random.default_rng(5)
BACKENDS = ["reference", "numba"]
POOLED = 1 << 18  # float32 elements in one pooled buffer (1 MiB, buffers.MIN_BYTES)


@pytest.fixture(params=BACKENDS)
def backend(request):
    previous = config.current.backend
    config.set_backend(request.param)
    yield request.param
    config.set_backend(previous)


def _layouts(x):
    """One of each layout op with a view form, applied to `x` of shape [4, 6]."""
    a, b = tf.split(x, [2, 4], axis=1)
    top, bottom = tf.split(x, 2, axis=0)
    return [tf.identity(x), tf.reshape(x, [6, 4]), tf.expand_dims(x, 1), tf.squeeze(tf.reshape(x, [4, 1, 6]), 1),
            a, b, top, bottom, *tf.unstack(x, axis=1)[:2], tf.slice(x, [1, 2], [2, 3]), x[1:, ::2], x[2, 3]]


# -- the views themselves ----------------------------------------------------------------------
def test_layout_kernels_give_the_references_values_as_views_of_their_input():
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    y = x * 2.0
    outs = _layouts(y)
    got, want, exe = both(outs, {x: RNG.standard_normal((4, 6))})
    assert_same(got, want)
    by_value = dict(zip(exe.graph.results, got))
    viewed = [n for n, _ in exe.kernels if n.op != "fused" and layout.build(n) is not None]
    assert {n.op for n in viewed} == {"split", "reshape", "unstack", "slice", "strided_slice"}
    y_value = by_value[viewed[0].inputs[0]]  # the rest fused into y's loop kernel as outputs
    assert all(n.inputs[0] == viewed[0].inputs[0] for n in viewed)
    assert all(np.shares_memory(by_value[v], y_value) for n in viewed for v in n.outputs if v in by_value)


def test_split_along_the_first_axis_gives_contiguous_views():
    x = tf.placeholder(tf.float32, [8, 5], name="x")
    pieces = tf.split(tf.exp(x), 4, axis=0)
    got, want, exe = both(pieces, {x: RNG.standard_normal((8, 5))})
    assert_same(got, want)
    assert any(isinstance(k, layout.PiecesKernel) for _, k in exe.kernels)
    assert all(p.flags.c_contiguous and p.base is not None for p in got)


def test_kernels_given_strided_views_match_the_reference():
    """Loops (flat and broadcasting), reductions, products through BLAS and a convolution
    each read a piece of a split along the last axis (strided) or a reversed slice."""
    x = tf.placeholder(tf.float32, [6, 8], name="x")
    w = tf.placeholder(tf.float32, [4, 3], name="w")
    img = tf.placeholder(tf.float32, [2, 5, 5, 6], name="img")
    f = tf.placeholder(tf.float32, [3, 3, 3, 2], name="f")
    a, b = tf.split(x * 1.5, 2, axis=1)
    left, right = tf.split(img + 0.0, 2, axis=3)
    outs = [tf.tanh(a) * tf.nn.sigmoid(b), a + tf.reduce_sum(b, 0), tf.reduce_max(a, 1),
            tf.reduce_sum(b, 0), tf.matmul(a, w), tf.matmul(w, b[:, ::-1][:4], transpose_a=True),
            tf.nn.relu(tf.matmul(b, w) + 1.0),
            tf.nn.conv2d(right, f, [1, 1, 1, 1], "SAME"), tf.nn.max_pool(left, [1, 2, 2, 1], [1, 1, 1, 1], "VALID")]
    feeds = {x: RNG.standard_normal((6, 8)), w: RNG.standard_normal((4, 3)),
             img: RNG.standard_normal((2, 5, 5, 6)), f: RNG.standard_normal((3, 3, 3, 2))}
    got, want, _ = both(outs, feeds)
    assert_same(got, want, rtol=2e-5, atol=2e-5)



# -- loop kernels read views with strided rows in place ------------------------------------------
def _loop_sources(exe):
    return "".join(k.source() for _, k in exe.kernels if isinstance(k, loop.LoopKernel))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32])
@pytest.mark.parametrize("shape, axis", [((5, 12), 1), ((2, 3, 8), 2), ((2, 6, 4), 1)])
def test_loop_kernels_read_pieces_with_strided_rows_in_place(dtype, shape, axis):
    """Pieces of a split along a later axis, a contiguous input and a scalar in one loop: the
    kernel loops over rows of the pieces (no copy) and gives the reference's numbers."""
    x = tf.placeholder(dtype, shape, name="x")
    half = list(shape)
    half[axis] //= 2
    c = tf.placeholder(dtype, half, name="c")
    a, b = tf.split(x * 3, 2, axis=axis)
    if dtype == tf.int32:
        outs = [a * b - c * 2, b + c]
    else:
        outs = [tf.tanh(a) * tf.sigmoid(b) + c * 0.5, b * c]
    feeds = {x: (RNG.standard_normal(shape) * 3).astype(dtype.np_dtype),
             c: (RNG.standard_normal(half) * 3).astype(dtype.np_dtype)}
    got, want, exe = both(outs, feeds)
    assert_same(got, want)
    assert "_contiguous_row(" in _loop_sources(exe)


def test_a_big_loop_over_strided_pieces_runs_its_rows_in_parallel():
    x = tf.placeholder(tf.float32, [1024, 2048], name="x")
    a, b = tf.split(x * 2.0, 2, axis=1)
    got, want, exe = both([tf.tanh(a) * tf.sigmoid(b)], {x: RNG.standard_normal((1024, 2048))})
    assert_same(got, want)
    rows = [k.source() for _, k in exe.kernels if isinstance(k, loop.LoopKernel) and "_contiguous_row(" in k.source()]
    assert rows and all("for i0 in prange(" in source for source in rows)


def test_strided_rows_with_broadcast_or_strided_last_dims_still_match_the_reference():
    """Broadcast inputs next to strided pieces (a loop per dim, rows read in place), a piece
    next to a reversed slice, whose last dim is strided (copied), flat and broadcast; run
    twice, the second time through each kernel's plan."""
    x = tf.placeholder(tf.float32, [4, 10], name="x")
    bias = tf.placeholder(tf.float32, [5], name="bias")
    col = tf.placeholder(tf.float32, [4, 1], name="col")
    y = x * 2.0
    a, b = tf.split(y, 2, axis=1)
    reversed_ = y[:, ::-1][:, :5]
    outs = [tf.tanh(a) + bias, a * col - b, b * reversed_ + 1.0, reversed_ * bias + a]
    program = config.pass_manager().run(program_for(outs, {x: np.zeros((4, 10)), bias: np.zeros(5), col: np.zeros((4, 1))}))
    exe, ref = numba_compile(program), reference_compile(program)
    for _ in range(2):
        args = [RNG.standard_normal(s).astype(np.float32) for s in [(4, 10), (5,), (4, 1)]]
        assert_same(exe.run(args, RuntimeState()), ref.run(args, RuntimeState()))


def test_a_row_kernels_plan_refits_views_whose_rows_are_not_contiguous():
    """Pieces of a feed: the same loop kernel gets, at one shape, pieces of a C-contiguous
    feed (strided rows), of a feed with longer rows, and of a feed with a strided last dim
    (which must not reach the row kernel); each run gives the reference's numbers."""
    x = tf.placeholder(tf.float32, [3, 8], name="x")
    a, b = tf.split(x, 2, axis=1)
    y = tf.sigmoid(a) * b + 1.0
    program = config.pass_manager().run(program_for([y], {x: np.zeros((3, 8))}))
    exe, ref = numba_compile(program), reference_compile(program)
    wide = RNG.standard_normal((3, 20)).astype(np.float32)
    spaced = RNG.standard_normal((3, 16)).astype(np.float32)
    for value in [RNG.standard_normal((3, 8)).astype(np.float32), wide[:, 3:11], spaced[:, ::2], wide[:, :8]]:
        assert_same(exe.run([value], RuntimeState()), ref.run([value], RuntimeState()))
    assert "_contiguous_row(" in _loop_sources(exe)


# -- (a) fetched results are the caller's own ----------------------------------------------------
def _assert_owned(results, *others):
    """Each result is writable and shares memory with no other result nor any of `others`."""
    arrays = [r for r in results if isinstance(r, np.ndarray)]
    for i, r in enumerate(arrays):
        assert r.flags.writeable
        for other in arrays[i + 1:] + list(others):
            assert not np.shares_memory(r, other)


def test_fetched_views_of_a_feed_are_copies_the_caller_owns(backend):
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    fed = RNG.standard_normal((4, 6)).astype(np.float32)
    with tf.Session() as sess:
        results = sess.run([x, *_layouts(x)], {x: fed})
    _assert_owned(results, fed)
    np.testing.assert_array_equal(results[2], fed.reshape(6, 4))


def test_fetched_views_of_one_result_do_not_share_memory(backend):
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    y = tf.exp(x)
    a, b = tf.split(y, 2, axis=0)
    fed = RNG.standard_normal((4, 6))
    with tf.Session() as sess:
        got = sess.run([y, tf.reshape(y, [24]), a, b, tf.identity(y)], {x: fed})
    _assert_owned(got)
    want = np.exp(fed.astype(np.float32))
    got[0][:] = 0.0  # writing one result changes none of the others
    for g, w in zip(got[1:], [want.reshape(24), want[:2], want[2:], want]):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_a_function_returns_arrays_its_caller_owns(backend):
    @tf.function
    def f(x):
        y = x * 3.0
        return x, tf.reshape(x, [-1]), tf.identity(x), y, tf.reshape(y, [-1]), tf.split(y, 2)[1]

    arg = RNG.standard_normal((4, 3)).astype(np.float32)
    got = f(arg)
    _assert_owned(got, arg)
    np.testing.assert_allclose(got[5], arg[2:] * 3.0, rtol=1e-6)


def test_owned_copies_only_what_the_caller_cannot_own():
    base = np.arange(8.0)
    frozen = np.arange(3.0)
    frozen.setflags(write=False)
    fresh, view = np.ones(2), base[2:]
    out = owned([fresh, view, base[:2], frozen, base.reshape(2, 4)], [])
    assert out[0] is fresh and out[1] is view  # the first of each memory owner stays as it is
    assert not np.shares_memory(out[2], base) and out[2].flags.writeable
    assert not np.shares_memory(out[3], frozen) and out[3].flags.writeable
    assert not np.shares_memory(out[4], base)
    assert not np.shares_memory(owned([base[1:]], [base])[0], base)


# -- (b) no in-place update under a live view --------------------------------------------------
def test_a_view_of_a_variable_read_before_its_update_keeps_the_old_values(backend):
    v = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    flat = tf.reshape(v.read_value(), [6])
    with tf.control_dependencies([flat]):
        update = v.assign_add(tf.ones([2, 3]))
    with tf.control_dependencies([update]):
        later = flat * 2.0  # reads the view after the update ran
    base = np.arange(6, dtype=np.float32)
    with tf.Session() as sess:
        sess.run(v.initializer)
        got_flat, got_later, _ = sess.run([flat, later, update])
        kept = sess.run(tf.reshape(v, [3, 2]))
        for _ in range(2):
            sess.run(update)
        final = sess.run(v)
    np.testing.assert_array_equal(got_flat, base)
    np.testing.assert_array_equal(got_later, base * 2)
    np.testing.assert_array_equal(kept, (base + 1).reshape(3, 2))  # fetched across runs: unchanged
    np.testing.assert_array_equal(final, (base + 3).reshape(2, 3))


# -- (c) the pool never recycles a buffer a view reads -------------------------------------------
def test_a_pooled_buffer_is_not_recycled_while_a_layout_view_of_it_lives():
    first = POOL.empty((2, POOLED // 2), np.float32)
    first[:] = 1.0
    view = get_op("reshape").view(first, shape=(POOLED,))
    piece = get_op("split").view(first, axis=1, num=2, sizes=None)[1]
    del first
    second = POOL.empty((2, POOLED // 2), np.float32)
    second[:] = 2.0
    assert not np.shares_memory(view, second) and not np.shares_memory(piece, second)
    assert np.all(view == 1.0) and np.all(piece == 1.0)


def test_views_of_pooled_intermediates_survive_later_kernels_and_runs(backend):
    x = tf.placeholder(tf.float32, [2, POOLED // 2], name="x")
    y = tf.exp(x)
    top, bottom = tf.split(y, 2, axis=0)       # views of y's pooled buffer
    flat = tf.reshape(y, [POOLED])             # y itself dies here; its buffer must stay out of reach
    z = tf.reshape(tf.sin(x) * 2.0, [POOLED])  # same size, allocated while the views live
    total = flat + z + tf.reshape(tf.concat([bottom, top], 0), [POOLED])
    feed = RNG.standard_normal((2, POOLED // 2)).astype(np.float32)
    with tf.Session() as sess:
        kept_top, got = sess.run([top, total], {x: feed})
        sess.run([top, total], {x: feed + 1.0})  # a second run: kept_top must not change
    e = np.exp(feed)
    np.testing.assert_allclose(kept_top, e[:1], rtol=1e-6)
    np.testing.assert_allclose(got, e.reshape(-1) + 2 * np.sin(feed).reshape(-1) + e[::-1].reshape(-1),
                               rtol=1e-5, atol=1e-5)


# -- (d) feeds are never written ---------------------------------------------------------------
def test_feeds_stay_unchanged_through_views_updates_and_written_results(backend):
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    v = tf.Variable(np.zeros((2, 12), np.float32))
    load = v.assign(tf.reshape(x, [2, 12]))
    bump = v.assign_add(tf.concat([tf.reshape(p, [1, 12]) for p in tf.split(x, 2, axis=0)], 0) * 0.0 + 2.0)
    fed = RNG.standard_normal((4, 6)).astype(np.float32)
    original = fed.copy()
    with tf.Session() as sess:
        sess.run(v.initializer)
        results = sess.run([load, tf.identity(x), tf.reshape(x, [24])], {x: fed})
        for r in results:
            r[...] = -7.0  # the caller writes what it got back
        for _ in range(2):
            sess.run(bump, {x: fed})
        stored = sess.run(v)
    np.testing.assert_array_equal(fed, original)
    np.testing.assert_array_equal(stored, original.reshape(2, 12) + np.float32(2) + np.float32(2))


# -- concats written in place -------------------------------------------------------------------
def test_loop_kernels_write_straight_into_a_concats_blocks():
    """Stacked states (axis 0, or a later axis behind size-1 dims) are written into the
    concat's result by the kernels producing them; other concats copy, as the reference."""
    x = tf.placeholder(tf.float32, [4, 6], name="x")
    w = tf.placeholder(tf.float32, [6, 6], name="w")
    hs = [tf.tanh(x * float(i)) for i in range(3)]
    product = tf.matmul(x, w)  # not a loop kernel's result: copied
    outs = [tf.concat(hs, 0), hs[1] + 1.0, tf.concat([tf.expand_dims(h, 0) for h in hs], 1),
            tf.concat([hs[0], hs[0]], 0), tf.concat(hs, 1), tf.concat([hs[2], product], 0)]
    got, want, exe = both(outs, {x: RNG.standard_normal((4, 6)), w: RNG.standard_normal((6, 6))})
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    placed = executable._placed_concats(exe.graph, [k for _, k in exe.kernels])
    concats = [r.node for r in exe.graph.results if r.node.op == "concat"]
    assert len(concats) == 5 and set(placed) == {concats[0], concats[1]}
    assert all(len(blocks) == 3 for blocks in placed.values())
    assert "into=" in "".join(linecache.getlines(exe._filename))

