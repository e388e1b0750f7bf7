"""tf.summary: summary ops as serialized Summary bytes, and event files TensorBoard's own reader
loads (scalars, histograms, images and the graph)."""
from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest

import tfjit as tf
from tfjit.errors import GraphError


@pytest.fixture
def event_accumulator(monkeypatch):
    """tensorboard's reader, on its TensorFlow-free file layer (importing TF takes seconds)."""
    monkeypatch.setitem(sys.modules, "tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.backend.event_processing import event_accumulator as module

    def load(logdir: str):
        acc = module.EventAccumulator(logdir, size_guidance={module.IMAGES: 0, module.HISTOGRAMS: 0})
        acc.Reload()
        return acc

    return load


def _summary(raw: np.ndarray):
    from tensorboard.compat.proto import summary_pb2

    assert raw.dtype == np.uint8 and raw.ndim == 1
    return summary_pb2.Summary.FromString(raw.tobytes())


def test_scalar_summaries_and_the_graph_reach_tensorboard(tmp_path, event_accumulator):
    x = tf.placeholder(tf.float32, [None], name="x")
    W = tf.Variable(np.float32(2.0), name="W")
    loss = tf.reduce_mean(tf.square(x * W - 1.0), name="loss")
    train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    tf.summary.scalar("loss", loss)
    with tf.name_scope("weights"):
        tf.summary.scalar("W", W)
    merged = tf.summary.merge_all()
    assert merged.dtype == tf.uint8 and merged.op.name == "MergeSummary"
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    losses = []
    with tf.Session() as sess, tf.summary.FileWriter(str(tmp_path), sess.graph) as writer:
        assert writer.get_logdir() == str(tmp_path)
        sess.run(tf.global_variables_initializer())
        for step in range(3):
            summary, value, _ = sess.run([merged, loss, train], {x: xv})
            losses.append(value)
            writer.add_summary(summary, step)
    acc = event_accumulator(str(tmp_path))
    assert sorted(acc.Tags()["scalars"]) == ["loss_1", "weights/W"]  # the op `loss` took the name, as in TF
    events = acc.Scalars("loss_1")
    assert [e.step for e in events] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in events], losses, rtol=1e-6)
    graph = acc.Graph()
    by_name = {n.name: n for n in graph.node}
    assert {"x", "W", "loss", "GradientDescent", "MergeSummary"} <= set(by_name)
    assert by_name["loss"].op == "Mean" and list(by_name["loss"].input)[0].startswith("Square")
    assert by_name["W"].op == "VariableV2" and by_name["MergeSummary"].op == "MergeSummary"
    assert by_name["GradientDescent"].input[-1].startswith("^")
    assert [d.size for d in by_name["x"].attr["_output_shapes"].list.shape[0].dim] == [-1]


def test_histogram_follows_tf_buckets(tmp_path, event_accumulator):
    values = np.array([[-3.0, 0.0, 0.5], [0.5, 2.0, 1e-13]], np.float64)
    t = tf.constant(values)
    hist = tf.summary.histogram("h", t)
    with tf.Session() as sess:
        proto = _summary(sess.run(hist)).value[0]
    assert proto.tag == "h"
    h = proto.histo
    assert (h.min, h.max, h.num) == (-3.0, 2.0, 6)
    assert h.sum == pytest.approx(values.sum()) and h.sum_squares == pytest.approx((values ** 2).sum())
    assert sum(h.bucket) == 6 and len(h.bucket) == len(h.bucket_limit)
    limits = np.array(h.bucket_limit)
    for v in values.ravel():  # every value counted in the first bucket whose limit exceeds it
        i = np.searchsorted(limits, v, side="right")
        assert h.bucket[i] > 0
    assert np.all(np.diff(limits) > 0)
    with tf.summary.FileWriter(str(tmp_path)) as writer:
        with tf.Session() as sess:
            writer.add_summary(sess.run(hist), global_step=5)
    (event,) = event_accumulator(str(tmp_path)).Histograms("h")
    assert event.step == 5 and event.histogram_value.num == 6
    bad = tf.summary.histogram("bad", tf.constant([1.0, np.nan]))
    with tf.Session() as sess, pytest.raises(tf.InvalidArgumentError, match="Nan in summary histogram for: bad"):
        sess.run(bad)


def test_images_are_png_scaled_as_tf_does():
    Image = pytest.importorskip("PIL.Image")
    floats = np.array([[[[0.0], [0.5]], [[1.0], [2.0]]],
                       [[[-1.0], [0.0]], [[0.5], [np.inf]]]], np.float32)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3)
    grey = tf.summary.image("grey", floats, max_outputs=3)
    colour = tf.summary.image("colour", rgb, max_outputs=1)
    with tf.Session() as sess:
        grey_values = _summary(sess.run(grey)).value
        (colour_value,) = _summary(sess.run(colour)).value
    assert [v.tag for v in grey_values] == ["grey/image/0", "grey/image/1"]
    decoded = [np.asarray(Image.open(io.BytesIO(v.image.encoded_image_string))) for v in grey_values]
    np.testing.assert_array_equal(decoded[0], np.uint8([[0, 63], [127, 255]]))  # 255 / max
    np.testing.assert_array_equal(decoded[1], np.uint8([[1, 128], [191, 255]]))  # 0 -> 128, inf -> red
    assert colour_value.tag == "colour/image" and (colour_value.image.height, colour_value.image.width) == (2, 3)
    assert colour_value.image.colorspace == 3
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(colour_value.image.encoded_image_string))),
                                  rgb[0])


def test_summary_names_tags_and_collections():
    v = tf.constant(1.0)
    a = tf.summary.scalar("acc uracy", v)
    b = tf.summary.scalar("acc uracy", v)
    c = tf.summary.scalar("x", v, family="fam")
    d = tf.summary.scalar("private", v, collections=["mine"])
    assert [t.op.name for t in (a, b, c)] == ["acc_uracy", "acc_uracy_1", "fam/x"]
    assert tf.get_collection(tf.GraphKeys.SUMMARIES) == [a, b, c]
    assert tf.get_collection("mine") == [d]
    with tf.Session() as sess:
        tags = [val.tag for val in _summary(sess.run(tf.summary.merge([a, b, c]))).value]
        assert tags == ["acc_uracy", "acc_uracy_1", "fam/fam/x"]
        with pytest.raises(tf.InvalidArgumentError, match="Duplicate tag acc_uracy"):
            sess.run(tf.summary.merge([a, a]))
    with tf.Graph().as_default():
        assert tf.summary.merge_all() is None


def test_summary_build_errors():
    with pytest.raises(GraphError, match=r"scalar_summary.*needs a scalar \(shape \[\]\), got f32\[3\]"):
        tf.summary.scalar("s", tf.zeros([3]))
    with pytest.raises(GraphError, match=r"image_summary.*1, 3 or 4 channels, got f32\[1,2,2,2\]"):
        tf.summary.image("i", tf.zeros([1, 2, 2, 2]))
    with pytest.raises(GraphError, match=r"image_summary.*got i32\[1,2,2,1\]"):
        tf.summary.image("i", tf.zeros([1, 2, 2, 1], tf.int32))
    with pytest.raises(GraphError, match=r"merge_summary.*got f32\[\]"):
        tf.summary.merge([tf.constant(1.0)])
    with pytest.raises(TypeError, match="add_summary takes"):
        tf.summary.FileWriter.add_summary(None, 3.0)


def test_a_scalar_fed_through_a_placeholder(tmp_path, event_accumulator):
    value = tf.placeholder(tf.float64, [])
    summary = tf.summary.scalar("fed", value)
    with tf.Session() as sess, tf.summary.FileWriter(str(tmp_path)) as writer:
        for step, v in enumerate([0.25, -1.5]):
            writer.add_summary(sess.run(summary, {value: v}), step)
            writer.add_summary(bytes(sess.run(summary, {value: v * 2})), step + 10)
    events = event_accumulator(str(tmp_path)).Scalars("fed")
    assert sorted((e.step, e.value) for e in events) == [(0, 0.25), (1, -1.5), (10, 0.5), (11, -3.0)]
