"""Checkpoints and meta graphs: bit-exact round trips, atomic saves, clear restore errors, and a
fresh process that rebuilds the graph from the files alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import tfjit as tf
from tfjit.compat import saver as saver_module

_VALUES = {
    "f16": np.array([1.5, -0.0, np.inf], np.float16),
    "f32": np.array([[np.nan, -0.0], [1e-45, 3.4e38]], np.float32),
    "f64": np.array(np.pi),
    "i32": np.array([-(2 ** 31), 7], np.int32),
    "i64": np.array([2 ** 62], np.int64),
    "u8": np.arange(5, dtype=np.uint8),
    "flag": np.array([True, False]),
}


def _variables() -> dict[str, tf.Variable]:
    return {k: tf.Variable(v, name=k) for k, v in _VALUES.items()}


def _scramble(sess: tf.Session, variables: dict[str, tf.Variable]) -> None:
    for k, v in variables.items():
        v.load(np.zeros_like(_VALUES[k]), sess)


def test_round_trip_is_bit_exact(tmp_path):
    variables = _variables()
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        nan_payload = np.array([0x7FC00123], np.uint32).view(np.float32)[0]
        variables["f32"].load(np.array([[nan_payload, -0.0], [1e-45, 3.4e38]], np.float32), sess)
        before = {k: sess.run(v) for k, v in variables.items()}
        prefix = saver.save(sess, str(tmp_path / "model.ckpt"))
        assert prefix == str(tmp_path / "model.ckpt")
        _scramble(sess, variables)
        saver.restore(sess, prefix)
        for k, v in variables.items():
            after = sess.run(v)
            assert after.dtype == before[k].dtype and after.shape == before[k].shape
            assert np.asarray(after).tobytes() == np.asarray(before[k]).tobytes(), k


def test_global_step_names_latest_and_max_to_keep(tmp_path):
    W = tf.Variable(np.zeros(2, np.float32), name="W")
    step = tf.train.get_or_create_global_step()
    bump = tf.group(W.assign_add(np.ones(2, np.float32)), step.assign_add(1))
    saver = tf.train.Saver(max_to_keep=2)
    base = str(tmp_path / "model")
    assert tf.train.latest_checkpoint(str(tmp_path)) is None
    assert tf.train.get_checkpoint_state(str(tmp_path)) is None
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        paths = []
        for _ in range(4):
            sess.run(bump)
            paths.append(saver.save(sess, base, global_step=step))
        assert paths == [f"{base}-{i}" for i in (1, 2, 3, 4)]
        assert saver.save(sess, base, global_step=np.int64(9), write_meta_graph=False) == f"{base}-9"
    kept = [f"{base}-4", f"{base}-9"]
    assert saver.last_checkpoints == kept
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-4.meta", "model-4.npz", "model-9.npz"]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == f"{base}-9" and state.all_model_checkpoint_paths == kept
    assert (tmp_path / "checkpoint").read_text() == ('model_checkpoint_path: "model-9"\n'
                                                     'all_model_checkpoint_paths: "model-4"\n'
                                                     'all_model_checkpoint_paths: "model-9"\n')
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{base}-9"
    with tf.Session() as sess:
        saver.restore(sess, f"{base}-4")
        np.testing.assert_array_equal(sess.run(W), [4.0, 4.0])
        assert sess.run(step) == 4


def _crash_on_replace(monkeypatch, fail_at: int) -> list[str]:
    """Make the `fail_at`-th os.replace of a save raise, as a crash at that moment would."""
    calls: list[str] = []
    real = os.replace

    def replace(src, dst):
        calls.append(os.path.basename(dst))
        if len(calls) == fail_at:
            raise OSError("simulated crash")
        real(src, dst)

    monkeypatch.setattr(saver_module.os, "replace", replace)
    return calls


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    W = tf.Variable(np.arange(3.0), name="W")
    saver = tf.train.Saver()
    base = str(tmp_path / "ckpt")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = saver.save(sess, base, global_step=1)
        W.load(np.full(3, 7.0), sess)
        calls = _crash_on_replace(monkeypatch, fail_at)  # data file, meta graph, index
        with pytest.raises(OSError, match="simulated crash"):
            saver.save(sess, base, global_step=2)
        monkeypatch.undo()
        assert calls[-1] == ["ckpt-2.npz", "ckpt-2.meta", "checkpoint"][fail_at - 1]
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # temporaries removed
        latest = tf.train.latest_checkpoint(str(tmp_path))
        assert latest == first
        saver.restore(sess, latest)
        np.testing.assert_array_equal(sess.run(W), np.arange(3.0))


def test_restore_reports_every_mismatch_at_once(tmp_path):
    with tf.Graph().as_default():
        tf.Variable(np.zeros((2, 3), np.float32), name="W")
        tf.Variable(np.zeros(3, np.float32), name="b")
        tf.Variable(np.zeros(1, np.float32), name="gone")
        tf.Variable(np.zeros(4, np.float32), name="ok")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            path = tf.train.Saver().save(sess, str(tmp_path / "m"))
    W = tf.Variable(np.ones((3, 3), np.float32), name="W")
    tf.Variable(np.ones(3, np.float64), name="b")
    tf.Variable(np.ones(1, np.float32), name="extra")
    ok = tf.Variable(np.ones(4, np.float32), name="ok")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(tf.InvalidArgumentError) as info:
            tf.train.Saver().restore(sess, path)
        message = str(info.value)
        assert "3 of 4 variables do not match" in message
        assert "W: shape (3, 3) in the graph, (2, 3) in the checkpoint" in message
        assert "b: dtype float64 in the graph, float32 in the checkpoint" in message
        assert "extra: not found in the checkpoint" in message
        np.testing.assert_array_equal(sess.run(ok), np.ones(4))  # nothing was restored
        np.testing.assert_array_equal(sess.run(W), np.ones((3, 3)))
        with pytest.raises(tf.NotFoundError, match="extra: not found"):
            tf.train.Saver([ok, tf.global_variables()[2]]).restore(sess, path)
        tf.train.Saver([ok]).restore(sess, path)
        np.testing.assert_array_equal(sess.run(ok), np.zeros(4))


def test_restore_rejects_missing_corrupt_and_pickled_files(tmp_path):
    tf.Variable(np.ones(2), name="W")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(ValueError, match="not a valid checkpoint"):
            saver.restore(sess, str(tmp_path / "nothing"))
        with pytest.raises(ValueError, match="save_path when it is None"):
            saver.restore(sess, None)
        path = saver.save(sess, str(tmp_path / "m"))
        data = (tmp_path / "m.npz").read_bytes()
        (tmp_path / "m.npz").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="unreadable"):
            saver.restore(sess, path)
        with zipfile.ZipFile(tmp_path / "m.npz", "w") as zf, zf.open("W.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
        with pytest.raises(ValueError, match="unreadable"):
            saver.restore(sess, path)
        with pytest.raises(ValueError, match="Parent directory"):
            saver.save(sess, str(tmp_path / "missing" / "m"))


def test_saver_arguments():
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b")
    with pytest.raises(TypeError, match="not a Variable"):
        tf.train.Saver([a, a.value()])
    with pytest.raises(ValueError, match="same name: a"):
        tf.train.Saver([a, b, a])
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="No variables to save"):
            tf.train.Saver()
        assert tf.train.Saver(allow_empty=True).last_checkpoints == []


def test_dict_var_list_renames_checkpoint_keys(tmp_path):
    a = tf.Variable(np.float32(3.0), name="a")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = tf.train.Saver({"renamed/a": a}).save(sess, str(tmp_path / "m"))
    with np.load(path + ".npz", allow_pickle=False) as npz:
        assert npz.files == ["renamed/a"]
    with tf.Graph().as_default():
        other = tf.Variable(np.float32(0.0), name="other")
        with tf.Session() as sess:
            tf.train.Saver({"renamed/a": other}).restore(sess, path)
            assert sess.run(other) == 3.0


# -- meta graphs -------------------------------------------------------------------------------
def _regression(rng: np.random.Generator) -> dict[str, object]:
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    d = tf.placeholder(tf.float32, [None, 2], name="d")
    W = tf.get_variable("layer/W", initializer=rng.standard_normal((3, 2)).astype(np.float32))
    b = tf.Variable(np.zeros(2, np.float32), name="layer/b")
    y = tf.nn.sigmoid(tf.matmul(x, W) + b, name="y")
    loss = tf.reduce_mean(tf.square(y - d), name="loss")
    step = tf.train.get_or_create_global_step()
    train = tf.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
    tf.add_to_collection("notes", "a string")
    tf.add_to_collection("notes", 3)
    return {"x": x, "d": d, "loss": loss, "train": train, "step": step}


_FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tfjit as tf

    ckpt_dir, data_path = sys.argv[1:]
    latest = tf.train.latest_checkpoint(ckpt_dir)
    saver = tf.train.import_meta_graph(latest + ".meta")
    data = np.load(data_path)
    feed = {"x:0": data["x"], "d:0": data["d"]}
    with tf.variable_scope("layer", reuse=True):
        reused = tf.get_variable("W", [3, 2]) is tf.trainable_variables()[0]
    with tf.Session() as sess:
        saver.restore(sess, latest)
        loss = sess.run("loss:0", feed_dict=feed)
        sess.run(tf.get_collection(tf.GraphKeys.TRAIN_OP)[0], feed_dict=feed)
        print(json.dumps({
            "loss": float(loss), "loss_after": float(sess.run("loss:0", feed_dict=feed)),
            "step": int(sess.run(tf.train.get_global_step())),
            "trainable": [v.op.name for v in tf.trainable_variables()],
            "notes": tf.get_collection("notes"),
            "reused": reused,
        }))
""")


def test_a_fresh_process_restores_graph_and_checkpoint(tmp_path):
    rng = np.random.default_rng(5)
    m = _regression(rng)
    feed_np = {"x": rng.standard_normal((4, 3)).astype(np.float32), "d": rng.random((4, 2)).astype(np.float32)}
    feed = {m["x"]: feed_np["x"], m["d"]: feed_np["d"]}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(m["train"], feed)
        tf.train.Saver().save(sess, str(tmp_path / "model"), global_step=m["step"])
        loss = sess.run(m["loss"], feed)
        sess.run(m["train"], feed)
        loss_after = sess.run(m["loss"], feed)
    np.savez(tmp_path / "data.npz", **feed_np)
    run = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path), str(tmp_path / "data.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["loss"] == pytest.approx(float(loss), rel=1e-6)
    assert got["loss_after"] == pytest.approx(float(loss_after), rel=1e-6)
    assert got["step"] == 4 and got["trainable"] == ["layer/W", "layer/b"]
    assert got["notes"] == ["a string", 3] and got["reused"] is True


def test_meta_graph_file_and_import_scope(tmp_path):
    rng = np.random.default_rng(1)
    m = _regression(rng)
    saver = tf.train.Saver()
    path = str(tmp_path / "graph.meta")
    data = saver.export_meta_graph(path)
    on_disk = json.loads((tmp_path / "graph.meta").read_text())
    assert on_disk == json.loads(json.dumps(data))
    assert on_disk["format"] == "tfjit.meta_graph" and on_disk["graph"].startswith("func @meta_graph()")
    assert on_disk["saver"]["var_list"]["layer/W"] == "layer/W"
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        ckpt = saver.save(sess, str(tmp_path / "m"), write_meta_graph=False)
        expected = sess.run(m["loss"], {m["x"]: np.ones((2, 3)), m["d"]: np.zeros((2, 2))})
    with tf.Graph().as_default() as g:
        savers = [tf.train.import_meta_graph(path, import_scope=s) for s in ("a", "b")]
        assert g.get_operation_by_name("a/layer/W").get_attr("var") == "a/layer/W"
        assert [v.op.name for v in tf.trainable_variables()] == ["a/layer/W", "a/layer/b", "b/layer/W", "b/layer/b"]
        with pytest.raises(ValueError, match="already has ops named a/x"):
            tf.train.import_meta_graph(path, import_scope="a")
        with tf.Session() as sess:
            for s, saver_s in zip("ab", savers):
                saver_s.restore(sess, ckpt)
                got = sess.run(f"{s}/loss:0", {f"{s}/x:0": np.ones((2, 3)), f"{s}/d:0": np.zeros((2, 2))})
                assert got == expected
    (tmp_path / "bad.meta").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a tfjit meta graph"):
        tf.train.import_meta_graph(str(tmp_path / "bad.meta"))


def test_reshape_restores_by_element_count(tmp_path):
    with tf.Graph().as_default():
        tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="W")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            path = tf.train.Saver().save(sess, str(tmp_path / "m"))
    W = tf.Variable(np.zeros((3, 2), np.float32), name="W")
    with tf.Session() as sess:
        with pytest.raises(tf.InvalidArgumentError, match=r"W: shape \(3, 2\) in the graph, \(2, 3\)"):
            tf.train.Saver().restore(sess, path)
        tf.train.Saver(reshape=True).restore(sess, path)
        np.testing.assert_array_equal(sess.run(W), np.arange(6, dtype=np.float32).reshape(3, 2))
