"""`tfjit dump` on scripts and functions, its stages and formats, its stats on the MLP training
step, and its errors on bad input."""
from __future__ import annotations

import re
import textwrap

import pytest

from tfjit.cli import main
from tfjit.ir import parse_graph, print_graph

LECTURE = """
import numpy as np
import tfjit as tf
x = tf.placeholder(tf.float32, shape=[None, 256], name="x")
d = tf.placeholder(tf.float32, shape=[None, 64], name="d")
W = tf.Variable(tf.zeros([256, 64]))
b = tf.Variable(tf.zeros([64]))
y = tf.nn.sigmoid(tf.matmul(x, W) + b)
loss_mean = tf.reduce_mean(tf.square(y - d))
step = tf.train.GradientDescentOptimizer(0.01).minimize(loss_mean)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    raise SystemExit("the dump must stop at the first Session.run")
"""

MLP = """
import tfjit as tf
x = tf.placeholder(tf.float32, [256, 784], name="x")
labels = tf.placeholder(tf.int64, [256], name="labels")
h = x
for i, n in enumerate([512, 512]):
    with tf.variable_scope(f"layer{i}"):
        w = tf.get_variable("w", [h.shape[1].value, n])
        b = tf.get_variable("b", [n], initializer=tf.zeros_initializer())
        h = tf.nn.relu(tf.matmul(h, w) + b)
with tf.variable_scope("logits"):
    w = tf.get_variable("w", [512, 10])
    b = tf.get_variable("b", [10], initializer=tf.zeros_initializer())
    logits = tf.matmul(h, w) + b
loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.one_hot(labels, 10), logits=logits))
train = tf.train.GradientDescentOptimizer(0.01).minimize(loss, name="train")
"""

FUNCTION = """
import tfjit as tf

def dense(x, w):
    return tf.nn.relu(tf.matmul(x, w))
"""


@pytest.fixture
def script(tmp_path):
    def write(name: str, source: str) -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write


def dump(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["dump", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dump_of_the_lecture_script_stops_at_the_first_run_and_names_user_lines(script, capsys):
    path = script("lecture.py", LECTURE)
    code, out, _ = dump(capsys, path, "--input", "x=f32[32,256]", "--input", "d=f32[32,64]")
    assert code == 0
    assert 'fused[kind="contraction"]' in out and "sigmoid" in out
    body_lines = [line for line in out.splitlines() if " = " in line]
    assert body_lines and all(re.search(r"# lecture\.py:\d+$", line) for line in body_lines)
    text = out.strip()
    assert print_graph(parse_graph(text)) == text
    code_again, out_again, _ = dump(capsys, path, "--input", "x=f32[32,256]", "--input", "d=f32[32,64]")
    assert out_again == out  # deterministic


def test_dump_of_a_function_with_input_specs_at_every_stage(script, capsys):
    path = script("model.py", FUNCTION)
    code, out, _ = dump(capsys, f"{path}:dense", "--input", "x=f32[8,4]", "--input", "w=f32[4,3]", "--stage", "all")
    assert code == 0
    for stage in ("traced", "optimized", "placed", "fused", "planned"):
        assert f"// stage: {stage}" in out
    assert "buffers=" not in out.split("// stage: planned")[0]
    code, out, _ = dump(capsys, f"{path}:dense", "--input", "x=f32[8,4]", "--input", "w=f32[4,3]", "--after", "cse")
    assert code == 0 and out.startswith("func @dense(%0: f32[8,4]")


def test_dump_dot_format_and_output_file(script, capsys, tmp_path):
    path = script("model.py", FUNCTION)
    target = tmp_path / "g.dot"
    code, out, _ = dump(capsys, f"{path}:dense", "--input", "x=f32[8,4]", "--input", "w=f32[4,3]",
                        "--format", "dot", "-o", str(target))
    dot = target.read_text()
    assert code == 0 and out == ""
    assert dot.startswith('digraph "dense" {') and "subgraph cluster_" in dot and "matmul" in dot


@pytest.mark.parametrize("argv, message", [
    (["{dir}/missing.py"], "no such file"),
    (["{model}:nope"], "has no function `nope`; it defines dense"),
    (["{model}:dense", "--input", "x=f32[8,"], "bad --input 'x=f32[8,'"),
    (["{model}:dense", "--input", "q=f32[8,4]"], "has no parameter q; its parameters are x, w"),
    (["{model}:dense", "--input", "x=f99[8,4]"], "unknown dtype 'f99'"),
])
def test_dump_reports_bad_input_clearly_with_a_nonzero_exit(script, capsys, tmp_path, argv, message):
    model = script("model.py", FUNCTION)
    args = [a.format(dir=tmp_path, model=model) for a in argv]
    code, out, err = dump(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("tfjit dump: error: ") and message in err


def test_dump_stats_of_the_mlp_training_step(script, capsys):
    """The passes issue's bar: no adjacent elementwise kernels left apart, each variable's update
    one kernel, cross-entropy and its gradient in at most two kernels, and a planned peak of
    intermediates at most 60% of their sum."""
    path = script("mlp.py", MLP)
    code, out, _ = dump(capsys, path, "--fetch", "train", "--fetch", "Mean:0", "--stats", "--stage", "planned")
    assert code == 0
    assert "adjacent elementwise kernels left unfused: 0" in out
    updates = re.findall(r"kernels writing variable (\S+): (\d+)", out)
    assert len(updates) == 6 and all(count == "1" for _, count in updates)
    xent = [line for line in out.splitlines() if "softmax_cross_entropy" in line.lower() and " = " in line
            and not line.startswith("      ")]
    assert 1 <= len(xent) <= 2
    peak = int(re.search(r"planned peak of intermediates: \d+ bytes = (\d+)% of the \d+ bytes the unfused", out).group(1))
    assert peak <= 60
