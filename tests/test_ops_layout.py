"""Layout ops (reshape, transpose, expand_dims, squeeze, concat, split, stack, unstack, slice,
strided_slice and Python indexing, gather, one_hot, pad, tile, broadcast_to) against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import tfjit as tf
from tfjit.backends.reference import run_graph
from tfjit.errors import GraphError, InvalidArgumentError
from tfjit.ir import TensorType, as_dtype, parse_graph, print_graph
from tfjit.ir.verifier import verify
from tfjit.ops import Fusion, get_op
from tfjit.ops.layout import LAYOUT_OPS
from tfjit.runtime.program import extract

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]
RNG = np.random.default_rng(0)


# -- helpers -------------------------------------------------------------------------------
def data(shape, dtype=np.float32) -> np.ndarray:
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    return (RNG.random(shape) * 20 - 10).astype(dtype)


def run(fetches, feed=None):
    with tf.Session() as sess:
        return sess.run(fetches, feed_dict=feed)


def same(actual, expected) -> None:
    """Layout ops move values: the result must equal NumPy's exactly, dtype included."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def unknown(array: np.ndarray, known_axes=()) -> tf.Tensor:
    """A placeholder for `array` with every dim unknown except `known_axes`."""
    dims = [d if i in known_axes else None for i, d in enumerate(array.shape)]
    return tf.placeholder(as_dtype(array.dtype), dims)


def round_trip(fetches, feeds=()) -> None:
    """The Session-style program prints, parses back and prints the same; it still verifies
    and computes what the session computes."""
    feed_types = [(t.value, TensorType(t.dtype, a.shape)) for t, a in feeds]
    program = extract(tf.get_default_graph().nodes, [t.value for t in fetches], [], feed_types)
    text = print_graph(program)
    parsed = parse_graph(text)
    assert print_graph(parsed) == text
    verify(parsed)
    args = [a for _, a in feeds]
    expected = run(list(fetches), {t: a for t, a in feeds})
    for got, want in zip(run_graph(parsed, args), expected):
        same(got, want)


def build_error(fn, *patterns: str):
    with pytest.raises(GraphError) as info:
        fn()
    for p in patterns:
        assert p in str(info.value), (p, str(info.value))
    return info.value


# -- registry ------------------------------------------------------------------------------
def test_every_layout_op_is_registered_as_layout_with_its_differentiability():
    for name in LAYOUT_OPS:
        op = get_op(name)
        assert op.fusion is Fusion.LAYOUT
        assert op.differentiable is (name not in ("one_hot", "stop_gradient"))
        assert not op.stateful


# -- reshape -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,target", [((6,), [2, 3]), ((2, 3, 4), [-1, 4]), ((2, 3, 4), [4, -1, 2]),
                                          ((1,), []), ((), [1, 1]), ((0, 3), [3, 0])])
def test_reshape_static(dtype, shape, target):
    x = data(shape, dtype)
    y = tf.reshape(x, target)
    assert y.shape.as_list() == list(np.reshape(x, target).shape)
    same(run(y), np.reshape(x, target))


def test_reshape_unknown_dims_infers_what_tf_does():
    x = tf.placeholder(tf.float32, [None, 3, 4])
    assert tf.reshape(x, [-1, 12]).shape.as_list() == [None, 12]
    assert tf.reshape(x, [-1, 6]).shape.as_list() == [None, 6]
    assert tf.reshape(x, [-1, 2, 2, 3]).shape.as_list() == [None, 2, 2, 3]
    a = data((5, 3, 4))
    same(run(tf.reshape(x, [-1, 6]), {x: a}), a.reshape(-1, 6))
    assert tf.reshape(tf.placeholder(tf.int32, None), [2, -1]).shape.as_list() == [2, None]


def test_reshape_dynamic_from_shape_of_self_and_python_ints():
    x = tf.placeholder(tf.float32, [None, 3, 4])
    y = tf.reshape(x, [tf.shape(x)[0], -1])
    assert y.shape.as_list() == [None, None]
    assert y.op.node.attr("shape") == (None, -1)
    assert len(y.op.inputs) == 2
    for n in (1, 4):
        a = data((n, 3, 4))
        same(run(y, {x: a}), a.reshape(n, -1))


def test_reshape_to_shape_of_other_tensor_keeps_its_static_dims():
    x = tf.placeholder(tf.float64, [None, 12])
    y = tf.placeholder(tf.float64, [None, 3, 4])
    z = tf.reshape(x, tf.shape(y))
    assert z.shape.as_list() == [None, 3, 4]
    a, b = data((2, 12), np.float64), data((2, 3, 4), np.float64)
    same(run(z, {x: a, y: b}), a.reshape(2, 3, 4))
    known = tf.reshape(x, tf.shape(tf.zeros([4, 3])))
    assert known.shape.as_list() == [4, 3] and len(known.op.inputs) == 1


def test_reshape_with_tensor_entry_packs_a_dims_vector():
    x = tf.placeholder(tf.int32, [None])
    n = tf.placeholder(tf.int32, [])
    y = tf.reshape(x, [n, -1, 2])
    assert y.shape.as_list() == [None, None, 2]
    a = np.arange(24, dtype=np.int32)
    same(run(y, {x: a, n: 3}), a.reshape(3, -1, 2))
    wide = tf.reshape(x, tf.stack([tf.shape(x, out_type=tf.int64)[0], 1]))
    same(run(wide, {x: a}), a.reshape(-1, 1))


def test_reshape_build_errors_name_op_and_shapes():
    x = tf.zeros([2, 3])
    build_error(lambda: tf.reshape(x, [4, 2]), "op `reshape`", "f32[2,3]", "6 elements", "[4, 2]")
    build_error(lambda: tf.reshape(x, [4, -1]), "op `reshape`", "f32[2,3]")
    build_error(lambda: tf.reshape(x, [-1, -1]), "op `reshape`", "more than one -1")
    p = tf.placeholder(tf.float32, [None, 3])
    build_error(lambda: tf.reshape(p, [5, 2]), "op `reshape`", "f32[?,3]")


def test_reshape_run_time_mismatch_is_invalid_argument():
    x = tf.placeholder(tf.float32, [None])
    n = tf.placeholder(tf.int32, [])
    y = tf.reshape(x, [n, 2])
    with pytest.raises(InvalidArgumentError, match="reshape"):
        run(y, {x: np.zeros(6, np.float32), n: 4})


# -- transpose, expand_dims, squeeze -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,perm", [((3, 4), None), ((2, 3, 4), None), ((2, 3, 4), [1, 0, 2]),
                                        ((2, 3, 4, 5), [3, 1, 0, 2]), ((5,), [0]), ((), None)])
def test_transpose(dtype, shape, perm):
    x = data(shape, dtype)
    y = tf.transpose(x, perm)
    expected = np.transpose(x, perm)
    assert y.shape.as_list() == list(expected.shape)
    assert y.op.name == "transpose"
    same(run(y), expected)


def test_transpose_unknown_dims_and_rank():
    x = tf.placeholder(tf.int64, [None, 3, None])
    y = tf.transpose(x, [2, 0, 1])
    assert y.shape.as_list() == [None, None, 3]
    assert tf.transpose(x).shape.as_list() == [None, 3, None]
    r = tf.placeholder(tf.float32, None)
    assert tf.transpose(r).shape.ndims is None
    assert tf.transpose(r, [1, 0]).shape.as_list() == [None, None]
    a, b = data((2, 3, 5), np.int64), data((4, 2, 3))
    got = run([y, tf.transpose(r)], {x: a, r: b})
    same(got[0], a.transpose(2, 0, 1))
    same(got[1], b.T)


def test_transpose_bad_perm():
    x = tf.zeros([2, 3])
    build_error(lambda: tf.transpose(x, [0, 0]), "op `transpose`", "f32[2,3]", "not a permutation")
    build_error(lambda: tf.transpose(x, [0, 1, 2]), "op `transpose`", "f32[2,3]")
    build_error(lambda: tf.transpose(x, [-1, 0]), "op `transpose`", "f32[2,3]")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_expand_dims_every_axis(dtype, shape):
    x = data(shape, dtype)
    rank = len(shape)
    outs = [tf.expand_dims(x, a) for a in range(-rank - 1, rank + 1)]
    for a, y in zip(range(-rank - 1, rank + 1), outs):
        assert y.shape.as_list() == list(np.expand_dims(x, a).shape)
        assert y.op.node.attr("axis") >= 0
    for a, got in zip(range(-rank - 1, rank + 1), run(outs)):
        same(got, np.expand_dims(x, a))


def test_expand_dims_dim_alias_unknown_dims_and_errors():
    x = tf.placeholder(tf.float32, [None, 3])
    y = tf.expand_dims(x, dim=-1)
    assert y.shape.as_list() == [None, 3, 1]
    a = data((4, 3))
    same(run(y, {x: a}), a[..., None])
    build_error(lambda: tf.expand_dims(x, 3), "op `expand_dims`", "f32[?,3]", "axis 3")
    build_error(lambda: tf.expand_dims(x, -4), "op `expand_dims`", "f32[?,3]")
    with pytest.raises(ValueError, match="both"):
        tf.expand_dims(x, 0, dim=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((1, 3, 1, 2), None), ((1, 3, 1, 2), [2]), ((1, 3, 1, 2), [-4, -2]),
                                        ((1,), None), ((3, 1), -1), ((1, 1), [])])
def test_squeeze(dtype, shape, axis):
    x = data(shape, dtype)
    y = tf.squeeze(x, axis)
    expected = np.squeeze(x, axis=None if axis in (None, []) else tuple(np.atleast_1d(axis)))
    assert y.shape.as_list() == list(expected.shape)
    same(run(y), expected)


def test_squeeze_unknown_dims():
    x = tf.placeholder(tf.float32, [None, 1, None])
    assert tf.squeeze(x).shape.ndims is None  # an unknown dim might be 1, as TF says
    y = tf.squeeze(x, squeeze_dims=[1])
    assert y.shape.as_list() == [None, None]
    a = data((3, 1, 1))
    got = run([tf.squeeze(x), y, tf.squeeze(x, -1)], {x: a})
    same(got[0], np.squeeze(a))
    same(got[1], a[:, 0])
    same(got[2], a[..., 0])
    with pytest.raises(InvalidArgumentError, match="squeeze"):
        run(tf.squeeze(x, -1), {x: data((3, 1, 2))})


def test_squeeze_errors():
    x = tf.zeros([2, 1])
    build_error(lambda: tf.squeeze(x, [0]), "op `squeeze`", "f32[2,1]", "size is 2")
    build_error(lambda: tf.squeeze(x, [2]), "op `squeeze`", "f32[2,1]", "axis 2")


# -- concat --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_concat(dtype, axis):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    sizes = [1, 2, 3]
    arrays = []
    for s, k in zip(shapes, sizes):
        shape = list(s)
        shape[axis] = k
        arrays.append(data(shape, dtype))
    y = tf.concat(arrays, axis)
    expected = np.concatenate(arrays, axis)
    assert y.shape.as_list() == list(expected.shape)
    assert y.op.name == "concat"
    same(run(y), expected)


def test_concat_unknown_dims_and_python_values():
    x = tf.placeholder(tf.float64, [None, 2])
    y = tf.placeholder(tf.float64, [3, None])
    z = tf.concat([x, y, [[1.5, 2.5]]], axis=0)
    assert z.shape.as_list() == [None, 2]
    assert z.dtype == tf.float64
    assert tf.concat([x, y], 1).shape.as_list() == [3, None]
    a, b = data((4, 2), np.float64), data((3, 2), np.float64)
    same(run(z, {x: a, y: b}), np.concatenate([a, b, [[1.5, 2.5]]], 0))
    one = tf.concat([x], 0)
    same(run(one, {x: a}), a)


def test_concat_errors_name_op_and_shapes():
    a, b = tf.zeros([2, 3]), tf.zeros([3, 3])
    build_error(lambda: tf.concat([a, b], 1), "op `concat`", "f32[2,3]", "f32[3,3]", "except along axis 1")
    build_error(lambda: tf.concat([a, tf.zeros([2])], 0), "op `concat`", "same rank")
    build_error(lambda: tf.concat([a, b], 2), "op `concat`", "axis 2", "f32[2,3]")
    build_error(lambda: tf.concat([a, tf.zeros([2, 3], tf.int32)], 0), "op `concat`", "dtype")
    build_error(lambda: tf.concat([tf.zeros([]), tf.zeros([])], 0), "op `concat`", "tf.stack")


# -- split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("splits,axis", [(3, 0), (2, 1), (1, -1), ([1, 2, 3], 0), ([4, -1], -1),
                                         ([-1, 0, 1], 1)])
def test_split(dtype, splits, axis):
    x = data((6, 4, 5), dtype)
    parts = tf.split(x, splits, axis=axis)
    cuts = splits if isinstance(splits, int) else np.cumsum(
        [x.shape[axis] - sum(s for s in splits if s != -1) if s == -1 else s for s in splits])[:-1]
    expected = np.split(x, cuts, axis=axis)
    assert [p.shape.as_list() for p in parts] == [list(e.shape) for e in expected]
    assert [p.name for p in parts] == [f"split:{i}" for i in range(len(expected))]
    for got, want in zip(run(parts), expected):
        same(got, want)


def test_split_unknown_dims():
    x = tf.placeholder(tf.int32, [None, 6])
    even = tf.split(x, 2, axis=0)
    sized = tf.split(x, [-1, 2], axis=0)
    assert [p.shape.as_list() for p in even] == [[None, 6]] * 2
    assert [p.shape.as_list() for p in sized] == [[None, 6], [2, 6]]
    a = data((4, 6), np.int32)
    got = run(even + sized, {x: a})
    for g, w in zip(got, np.split(a, 2) + np.split(a, [2])):
        same(g, w)
    with pytest.raises(InvalidArgumentError, match="split"):
        run(even, {x: data((3, 6), np.int32)})


def test_split_errors():
    x = tf.zeros([5, 2])
    build_error(lambda: tf.split(x, 2), "op `split`", "f32[5,2]", "evenly")
    build_error(lambda: tf.split(x, [2, 2]), "op `split`", "f32[5,2]")
    build_error(lambda: tf.split(x, [-1, -1, 1]), "op `split`", "one -1")
    build_error(lambda: tf.split(x, 2, axis=2), "op `split`", "axis 2")


# -- stack, unstack --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((), 0), ((3,), 1), ((2, 3), 0), ((2, 3), -1), ((2, 3), -3), ((2, 3), 1)])
def test_stack_and_unstack(dtype, shape, axis):
    arrays = [data(shape, dtype) for _ in range(4)]
    y = tf.stack([tf.constant(a) for a in arrays], axis=axis)
    expected = np.stack(arrays, axis=axis)
    assert y.shape.as_list() == list(expected.shape)
    parts = tf.unstack(y, axis=axis)
    assert len(parts) == 4 and parts[0].shape.as_list() == list(shape)
    got = run([y] + parts)
    same(got[0], expected)
    for g, a in zip(got[1:], arrays):
        same(g, a)


def test_stack_python_values_is_a_constant_and_mixes_with_tensors():
    assert tf.stack([1, 2]).op.node.op == "constant"
    n = tf.placeholder(tf.int64, [])
    v = tf.stack([n, 7])
    assert v.dtype == tf.int64 and v.shape.as_list() == [2]
    same(run(v, {n: 3}), np.stack([np.int64(3), np.int64(7)]))


def test_stack_unstack_unknown_dims():
    x = tf.placeholder(tf.float32, [None, 3])
    y = tf.placeholder(tf.float32, [2, None])
    s = tf.stack([x, y], axis=1)
    assert s.shape.as_list() == [2, 2, 3]
    parts = tf.unstack(x, axis=1)
    assert [p.shape.as_list() for p in parts] == [[None]] * 3
    a, b = data((2, 3)), data((2, 3))
    got = run([s] + parts, {x: a, y: b})
    same(got[0], np.stack([a, b], 1))
    for i, g in enumerate(got[1:]):
        same(g, a[:, i])
    with pytest.raises(ValueError, match="Cannot infer num"):
        tf.unstack(x)
    rows = tf.unstack(x, num=2)
    with pytest.raises(InvalidArgumentError, match="unstack"):
        run(rows, {x: data((3, 3))})


def test_stack_errors():
    build_error(lambda: tf.stack([tf.zeros([2]), tf.zeros([3])]), "op `stack`", "f32[2]", "f32[3]")
    build_error(lambda: tf.stack([tf.zeros([2]), tf.zeros([2])], axis=2), "op `stack`", "axis 2")
    build_error(lambda: tf.unstack(tf.zeros([2]), axis=1), "op `unstack`", "axis 1")


# -- slice -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("begin,size", [([0, 0, 0], [2, 3, 4]), ([1, 0, 2], [1, -1, 2]), ([0, 2, 1], [-1, 1, -1]),
                                        ([1, 3, 4], [1, 0, 0])])
def test_slice(dtype, begin, size):
    x = data((2, 3, 4), dtype)
    y = tf.slice(x, begin, size)
    expected = x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]
    assert y.shape.as_list() == list(expected.shape)
    same(run(y), expected)


def test_slice_unknown_dims_and_dynamic_bounds():
    x = tf.placeholder(tf.float32, [None, 4])
    y = tf.slice(x, [1, 1], [-1, 2])
    assert y.shape.as_list() == [None, 2]
    b = tf.placeholder(tf.int32, [])
    z = tf.slice(x, [b, 0], [1, tf.shape(x)[1] - b])
    assert z.shape.as_list() == [1, None]
    a = data((3, 4))
    got = run([y, z], {x: a, b: 2})
    same(got[0], a[1:, 1:3])
    same(got[1], a[2:3, :2])
    with pytest.raises(InvalidArgumentError, match="slice"):
        run(z, {x: a, b: 3})


def test_slice_errors():
    x = tf.zeros([2, 3])
    build_error(lambda: tf.slice(x, [0, 2], [1, 2]), "op `slice`", "f32[2,3]", "size[1] = 2")
    build_error(lambda: tf.slice(x, [-1, 0], [1, 1]), "op `slice`", "f32[2,3]")
    build_error(lambda: tf.slice(x, [0], [1]), "op `slice`", "f32[2,3]")


# -- strided_slice and indexing -------------------------------------------------------------
INDEXES = [
    lambda a: a[1], lambda a: a[-1], lambda a: a[:, -1], lambda a: a[::-1], lambda a: a[1:, ::2, None, ...],
    lambda a: a[..., 1], lambda a: a[None], lambda a: a[:, None, 1:3], lambda a: a[-3:-1, ::-2],
    lambda a: a[::2, 1, ::-1], lambda a: a[10:], lambda a: a[:-10], lambda a: a[1:1], lambda a: a[..., None, 2:0:-1],
    lambda a: a[0, 1, 2], lambda a: a[-4:100:3], lambda a: a[:, :, ::-3], lambda a: a[()], lambda a: a[[1, 2]],
    lambda a: a[np.int64(2), ..., -1], lambda a: a[None, ..., None],
]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.float16])
def test_indexing_matches_numpy(dtype):
    a = data((4, 3, 5), dtype)
    x = tf.constant(a)
    outs = [index(x) for index in INDEXES]
    for index, y in zip(INDEXES, outs):
        key = index(_Key())
        expected = a[tuple(key) if isinstance(key, list) else key]
        assert y.shape.as_list() == list(expected.shape), key
    for index, got in zip(INDEXES, run(outs)):
        key = index(_Key())
        same(got, a[tuple(key) if isinstance(key, list) else key])


class _Key:
    """Records the key a lambda indexes with, so the same key can index NumPy."""

    def __getitem__(self, key):
        return key


def test_indexing_unknown_dims():
    x = tf.placeholder(tf.float32, [None, 3, None])
    cases = [lambda a: a[1:, ::2, None, ...], lambda a: a[:, -1], lambda a: a[::-1], lambda a: a[..., 1:],
             lambda a: a[0], lambda a: a[:, 1:3, ::2]]
    outs = [c(x) for c in cases]
    assert [o.shape.as_list() for o in outs] == [[None, 2, 1, None], [None, None], [None, 3, None],
                                                 [None, 3, None], [3, None], [None, 2, None]]
    a = data((4, 3, 5))
    for c, got in zip(cases, run(outs, {x: a})):
        same(got, c(a))
    r = tf.placeholder(tf.float32, None)
    assert r[1:].shape.ndims is None
    same(run(r[1:, 0], {r: a}), a[1:, 0])


def test_indexing_with_scalar_tensors():
    x = tf.placeholder(tf.float64, [None, 4])
    i = tf.placeholder(tf.int32, [])
    j = tf.placeholder(tf.int64, [])
    y, z, w = x[i], x[:, i:j], x[-1, j]
    assert y.shape.as_list() == [4] and z.shape.as_list() == [None, None] and w.shape.as_list() == []
    a = data((3, 4), np.float64)
    got = run([y, z, w], {x: a, i: 1, j: 3})
    same(got[0], a[1])
    same(got[1], a[:, 1:3])
    same(got[2], a[-1, 3])
    with pytest.raises(InvalidArgumentError, match="strided_slice"):
        run(y, {x: a, i: 3})


def test_indexing_shape_vectors_is_known_while_building():
    x = tf.placeholder(tf.float32, [None, 3, 4])
    s = tf.shape(x)
    assert s[0].shape.as_list() == [] and s[1:].shape.as_list() == [2]
    a = data((2, 3, 4))
    same(run(s[1:], {x: a}), np.array(a.shape[1:], np.int32))
    flat = tf.reshape(x, tf.concat([s[:1], [12]], 0))
    assert flat.shape.as_list() == [None, 12]


def test_indexing_variables_and_iteration():
    init = data((2, 3))
    v = tf.Variable(init)
    eye = np.eye(3, dtype=np.int32)
    rows = list(tf.constant(eye))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        same(sess.run(v[1, ::-1]), init[1, ::-1])
        for i, r in enumerate(sess.run(rows)):
            same(r, eye[i])


def test_strided_slice_api_with_masks():
    a = data((4, 5, 6))
    x = tf.constant(a)
    y = tf.strided_slice(x, [1, 0, 0, 2], [3, 0, 0, 6], [1, 1, 1, 2], begin_mask=0b0010, end_mask=0b0010,
                         ellipsis_mask=0b0100, new_axis_mask=0b0000, shrink_axis_mask=0b0000)
    assert y.op.name == "StridedSlice"
    assert y.shape.as_list() == [2, 5, 2]
    same(run(y), a[1:3, :, ..., 2:6:2])
    z = tf.strided_slice(x, [0, 1], [1, 2], shrink_axis_mask=1, new_axis_mask=2)
    same(run(z), a[0, None])


def test_indexing_errors():
    x = tf.zeros([2, 3])
    build_error(lambda: x[2], "op `strided_slice`", "f32[2,3]", "index 2")
    build_error(lambda: x[:, -4], "op `strided_slice`", "f32[2,3]")
    build_error(lambda: x[0, 0, 0], "op `strided_slice`", "f32[2,3]", "3 axes")
    build_error(lambda: x[::0], "op `strided_slice`", "non-zero")
    build_error(lambda: x[..., ...], "op `strided_slice`", "ellipsis")
    for bad in (1.5, "a", tf.zeros([]), tf.constant([0, 1]), True):
        with pytest.raises(TypeError, match="valid indices"):
            x[bad]


# -- gather ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("index_dtype,indices", [(np.int32, 2), (np.int64, [0, 2, 2]), (np.int32, [[1, 0], [2, 2]]),
                                                 (np.int64, np.zeros((0,), int))])
def test_gather(dtype, axis, index_dtype, indices):
    params = data((3, 4, 3), dtype)
    idx = np.asarray(indices, index_dtype)
    y = tf.gather(params, idx, axis=axis)
    expected = np.take(params, idx, axis=axis)
    assert y.shape.as_list() == list(expected.shape)
    assert y.op.name == "GatherV2"
    same(run(y), expected)


def test_gather_unknown_dims():
    p = tf.placeholder(tf.float32, [None, 5])
    i = tf.placeholder(tf.int64, [None, 2])
    y = tf.gather(p, i)
    z = tf.gather(p, i, axis=-1)
    assert y.shape.as_list() == [None, 2, 5] and z.shape.as_list() == [None, None, 2]
    a, b = data((4, 5)), np.array([[3, 0], [1, 1], [2, 3]], np.int64)
    got = run([y, z], {p: a, i: b})
    same(got[0], a[b])
    same(got[1], np.take(a, b, axis=1))


def test_gather_out_of_range_is_a_run_time_error_naming_the_op():
    p = tf.placeholder(tf.float32, [None, 2])
    y = tf.gather(p, [0, 3], name="lookup")
    with pytest.raises(InvalidArgumentError, match=r"gather.*lookup.*indices\[1\] = 3 is not in \[0, 3\)"):
        run(y, {p: data((3, 2))})
    with pytest.raises(InvalidArgumentError, match="is not in"):
        run(tf.gather(p, [-1]), {p: data((3, 2))})
    build_error(lambda: tf.gather(p, [0.5]), "op `gather`", "int32 or int64")
    build_error(lambda: tf.gather(p, [0], axis=2), "op `gather`", "axis 2")


# -- one_hot ---------------------------------------------------------------------------------
def np_one_hot(indices, depth, on, off, axis, dtype):
    hot = np.asarray(indices)[..., None] == np.arange(depth)
    out = np.where(hot, on, off).astype(dtype)
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("axis", [None, -1, 0, 1])
@pytest.mark.parametrize("index_dtype", [np.uint8, np.int32, np.int64])
def test_one_hot_default_values(axis, index_dtype):
    idx = np.array([[0, 2, 5], [1, 1, 3]], index_dtype)
    y = tf.one_hot(idx, 4, axis=axis)
    expected = np_one_hot(idx, 4, 1, 0, -1 if axis is None else axis, np.float32)
    assert y.dtype == tf.float32 and y.shape.as_list() == list(expected.shape)
    same(run(y), expected)


@pytest.mark.parametrize("on,off,dtype,np_dtype", [(5, -1, tf.int64, np.int64), (2.5, 0.5, None, np.float32),
                                                   (True, False, None, np.bool_), (None, None, tf.float16, np.float16),
                                                   (7, None, tf.int32, np.int32), (1.0, 0.0, tf.float64, np.float64)])
def test_one_hot_values_and_dtypes(on, off, dtype, np_dtype):
    idx = np.array([3, -1, 0, 1], np.int32)
    y = tf.one_hot(idx, 3, on_value=on, off_value=off, dtype=dtype)
    on_v = 1 if on is None else on
    off_v = 0 if off is None else off
    same(run(y), np_one_hot(idx, 3, on_v, off_v, -1, np_dtype))


def test_one_hot_unknown_dims_and_dynamic_depth():
    idx = tf.placeholder(tf.int64, [None])
    depth = tf.placeholder(tf.int32, [])
    y = tf.one_hot(idx, depth, axis=0)
    assert y.shape.as_list() == [None, None]
    z = tf.one_hot(idx, 3)
    assert z.shape.as_list() == [None, 3]
    a = np.array([2, 0, 1, 2], np.int64)
    got = run([y, z], {idx: a, depth: 4})
    same(got[0], np_one_hot(a, 4, 1, 0, 0, np.float32))
    same(got[1], np_one_hot(a, 3, 1, 0, -1, np.float32))


def test_one_hot_errors():
    with pytest.raises(TypeError, match="on_value"):
        tf.one_hot([1], 2, on_value=1.0, dtype=tf.int32)
    build_error(lambda: tf.one_hot([1.0], 2), "op `one_hot`", "indices")
    build_error(lambda: tf.one_hot([1], 2, axis=3), "op `one_hot`", "axis")
    build_error(lambda: tf.one_hot([1], -2), "op `one_hot`", "depth")


# -- pad -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["CONSTANT", "REFLECT", "SYMMETRIC", "reflect"])
def test_pad_modes(dtype, mode):
    x = data((3, 4), dtype)
    paddings = [[1, 2], [2, 0]]
    y = tf.pad(x, paddings, mode=mode)
    expected = np.pad(x, paddings, mode=mode.lower())
    assert y.shape.as_list() == list(expected.shape)
    same(run(y), expected)


@pytest.mark.parametrize("dtype,value", [(np.float32, 1.5), (np.int64, -3), (np.bool_, True), (np.float16, 2)])
def test_pad_constant_values(dtype, value):
    x = data((2, 1, 3), dtype)
    paddings = np.array([[0, 1], [2, 2], [1, 0]])
    y = tf.pad(x, paddings, constant_values=value)
    assert y.op.name == "PadV2"
    same(run(y), np.pad(x, paddings, constant_values=value))


def test_pad_unknown_dims_and_dynamic_paddings():
    x = tf.placeholder(tf.float32, [None, 3])
    n = tf.placeholder(tf.int32, [])
    y = tf.pad(x, [[1, 1], [0, 2]])
    z = tf.pad(x, [[0, n], [n, 0]], mode="SYMMETRIC")
    assert y.shape.as_list() == [None, 5] and z.shape.as_list() == [None, None]
    a = data((2, 3))
    got = run([y, z], {x: a, n: 2})
    same(got[0], np.pad(a, [[1, 1], [0, 2]]))
    same(got[1], np.pad(a, [[0, 2], [2, 0]], mode="symmetric"))
    with pytest.raises(InvalidArgumentError, match="mirror_pad"):
        run(z, {x: a, n: 4})


def test_pad_errors():
    x = tf.zeros([2, 3])
    build_error(lambda: tf.pad(x, [[2, 0], [0, 0]], "REFLECT"), "op `mirror_pad`", "f32[2,3]", "at most 1")
    build_error(lambda: tf.pad(x, [[0, 0], [4, 0]], "SYMMETRIC"), "op `mirror_pad`", "f32[2,3]", "at most 3")
    build_error(lambda: tf.pad(x, [[0, 0]]), "op `pad`", "f32[2,3]", "per axis")
    build_error(lambda: tf.pad(x, [[0, -1], [0, 0]]), "op `pad`", "non-negative")
    with pytest.raises(ValueError, match="Unknown padding mode"):
        tf.pad(x, [[0, 0], [0, 0]], mode="EDGE")


# -- tile, broadcast_to ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,multiples", [((3,), [2]), ((2, 3), [1, 3]), ((2, 1, 2), [2, 0, 3]), ((), [])])
def test_tile(dtype, shape, multiples):
    x = data(shape, dtype)
    y = tf.tile(x, multiples)
    expected = np.tile(x, multiples) if multiples else x
    assert y.shape.as_list() == list(expected.shape)
    same(run(y), expected)


def test_tile_unknown_dims_dynamic_multiples_and_errors():
    x = tf.placeholder(tf.int32, [None, 2])
    n = tf.placeholder(tf.int32, [])
    y = tf.tile(x, [2, 1])
    z = tf.tile(x, [1, n])
    assert y.shape.as_list() == [None, 2] and z.shape.as_list() == [None, None]
    a = data((3, 2), np.int32)
    got = run([y, z], {x: a, n: 3})
    same(got[0], np.tile(a, [2, 1]))
    same(got[1], np.tile(a, [1, 3]))
    build_error(lambda: tf.tile(x, [2]), "op `tile`", "i32[?,2]", "per axis")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,target", [((3,), [2, 3]), ((2, 1), [2, 4]), ((), [3, 2]), ((1, 3), [2, 2, 3])])
def test_broadcast_to(dtype, shape, target):
    x = data(shape, dtype)
    y = tf.broadcast_to(x, target)
    assert y.shape.as_list() == target
    same(run(y), np.broadcast_to(x, target))


def test_broadcast_to_shape_of_other_tensor():
    x = tf.placeholder(tf.float32, [3])
    y = tf.placeholder(tf.float32, [None, None])
    z = tf.broadcast_to(x, tf.shape(y))
    assert z.shape.as_list() == [None, 3]
    a, b = data((3,)), data((2, 3))
    same(run(z, {x: a, y: b}), np.broadcast_to(a, (2, 3)))
    with pytest.raises(InvalidArgumentError, match="broadcast_to"):
        run(z, {x: a, y: data((2, 4))})


def test_broadcast_to_of_unknown_size_one_dim_is_kept():
    """An unknown dim may be 1 at run time, so broadcast_to is not a no-op on equal static types."""
    cond = tf.placeholder(tf.bool, [None])
    y = tf.placeholder(tf.float32, [None, 1])
    w = tf.where(cond)  # i64[?,1], its first dim unknown even when cond is fed
    z = tf.broadcast_to(w, tf.shape(y))
    assert z.shape.as_list() == [None, 1]
    c = np.array([False, True])
    same(run(z, {cond: c, y: np.zeros((4, 1), np.float32)}), np.broadcast_to(np.argwhere(c), (4, 1)))


def test_broadcast_to_errors():
    build_error(lambda: tf.broadcast_to(tf.zeros([2, 3]), [3, 3]), "op `broadcast_to`", "f32[2,3]", "[3, 3]")
    build_error(lambda: tf.broadcast_to(tf.zeros([2, 3]), [3]), "op `broadcast_to`", "lower rank")


# -- IR text round trip ----------------------------------------------------------------------
def test_ir_round_trip_of_every_layout_op():
    x = tf.placeholder(tf.float32, [None, 3, 4], name="x")
    i = tf.placeholder(tf.int32, [], name="i")
    b = tf.placeholder(tf.bool, [2], name="b")
    outs = [
        tf.reshape(x, [tf.shape(x)[0], -1]), tf.reshape(x, [-1, 4]), tf.transpose(x), tf.expand_dims(x, -1),
        tf.squeeze(tf.expand_dims(x, 1), [1]), tf.concat([x, x], 2), *tf.split(x, [1, -1], 1),
        tf.stack([x, x], -1), *tf.unstack(x, axis=1), tf.slice(x, [0, 1, i], [-1, 1, 2]), x[i, ::-1, None, ...],
        tf.gather(x, [2, 0], axis=1), tf.one_hot(tf.constant([1, 0]), i + 1, on_value=b[0], off_value=b[1]),
        tf.pad(x, [[0, 0], [1, i], [0, 0]]), tf.pad(x, [[0, 0], [1, 1], [2, 0]], "REFLECT"),
        tf.tile(x, [1, i, 1]), tf.broadcast_to(b, [3, 2]), tf.identity(x), tf.stop_gradient(x),
    ]
    a = data((2, 3, 4))
    feeds = [(x, a), (i, np.array(1, np.int32)), (b, np.array([True, False]))]
    round_trip(outs, feeds)
    text = print_graph(extract(tf.get_default_graph().nodes, [o.value for o in outs], [],
                               [(t.value, TensorType(t.dtype, v.shape)) for t, v in feeds]))
    assert "reshape[shape=[none, -1]]" in text and "strided_slice[" in text and "mirror_pad[" in text


def test_ir_round_trip_of_a_constant_only_graph():
    a = data((2, 3), np.int64)
    outs = [tf.concat([a, a], 0)[1:, ::-1], tf.reshape(tf.transpose(a), [-1]), *tf.split(a, 3, axis=1)]
    round_trip(outs)
