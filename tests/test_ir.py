"""The IR: text form round-trips, the parser rejects bad text, the verifier catches broken graphs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfjit as tf
from tfjit.backends.reference import run_graph
from tfjit.ir import (ArrayAttr, Graph, Loc, Node, ParseError, TensorType, float32, int32,
                      parse_graph, print_graph)
from tfjit.ir.verifier import VerifyError, verify
from tfjit.runtime.program import extract


def program(fetches, feeds=()):
    graph = tf.get_default_graph()
    fetch_list = fetches if isinstance(fetches, list) else [fetches]
    return extract(graph.nodes, [t.value for t in fetch_list], [], [(p.value, p.type) for p in feeds])


def roundtrip(g: Graph) -> Graph:
    text = print_graph(g)
    parsed = parse_graph(text)
    assert print_graph(parsed) == text
    verify(parsed)
    return parsed


GOLDEN = """\
func @loss(%0: f32[?,784] {name="x", loc="model.py:3"}, %1: f32[784,10] {name="w"}) -> (f32[]) {
  %2: f32[?,10] = matmul[transpose_a=false, transpose_b=false](%0, %1) {name="MatMul"}  # model.py:12
  %3: f32[?,10] = relu(%2) {name="Relu", device="CPU:0"}  # model.py:13
  %4: f32[] = mean[axes=[0, 1], keepdims=false](%3)  # model.py:14
  return %4
}"""


def test_golden_text_parses_and_prints_identically():
    g = parse_graph(GOLDEN)
    assert print_graph(g) == GOLDEN
    verify(g)
    assert g.nodes[1].device == "/job:localhost/replica:0/task:0/device:CPU:0"
    assert g.nodes[0].loc == Loc("model.py", 12)
    assert g.params[0].type == TensorType(float32, (None, 784))


def test_lecture_model_program_round_trips_and_runs_the_same():
    x = tf.placeholder(tf.float32, [None, 8], name="x")
    d = tf.placeholder(tf.float32, [None, 4], name="d")
    w = tf.constant(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
    b = tf.constant(np.arange(4, dtype=np.float32))
    y = tf.nn.sigmoid(tf.matmul(x, w) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    g = program(loss, feeds=[x, d])
    parsed = roundtrip(g)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((3, 8)).astype(np.float32), rng.random((3, 4)).astype(np.float32)]
    np.testing.assert_array_equal(run_graph(g, args)[0], run_graph(parsed, args)[0])


def test_user_source_line_is_recorded_not_a_tfjit_line():
    x = tf.placeholder(tf.float32, [2])
    y = tf.exp(x)  # this line
    loc = y.op.node.loc
    assert loc.file == __file__
    assert loc.line == test_user_source_line_is_recorded_not_a_tfjit_line.__code__.co_firstlineno + 2


def test_multi_result_and_control_edges_round_trip():
    t = TensorType(float32, (4,))
    p = Node("param", (), (("index", 0),), (t,), name="p")
    a = Node("exp", (p.out,), (), (t,))
    noop = Node("no_op", (), (), (), name="group")
    b = Node("neg", (a.out,), (), (t,), control_inputs=(noop,))
    g = Graph("f", [p.out], [a, noop, b], [b.out, a.out])
    text = print_graph(g)
    assert "%2 = no_op()" in text and "neg(%1, ^%2)" in text
    roundtrip(g)


@pytest.mark.parametrize("value", [
    np.array([1.5, -0.0, np.inf, -np.inf, np.nan], np.float32),
    np.array([[True, False]]),
    np.arange(6, dtype=np.int64).reshape(2, 3),
    np.array(0.1, np.float64),
    np.random.default_rng(1).standard_normal(100).astype(np.float16),
])
def test_constants_round_trip_bit_for_bit(value):
    c = tf.constant(value)
    g = roundtrip(program(c))
    out = g.nodes[0].attr("value").array
    assert out.dtype == value.dtype
    assert out.shape == value.shape and out.tobytes() == np.ascontiguousarray(value).tobytes()


def test_attribute_values_of_every_kind_round_trip():
    attrs = (("a", 1), ("b", -2.5e-07), ("c", "a \"quoted\" name"), ("d", None), ("e", True),
             ("f", (1, (2, 3), ())), ("g", float32), ("h", TensorType(int32, (None, "N", 3))),
             ("i", float("inf")), ("j", ArrayAttr(np.zeros((2, 2), np.float32))))
    node = Node("identity", (), attrs, (TensorType(float32, None),))
    text = print_graph(Graph("attrs", [], [node], [node.out]))
    assert print_graph(parse_graph(text)) == text


@pytest.mark.parametrize("text, message", [
    ("func @f() -> () {\n  return %3\n}", "used before it is defined"),
    ("func @f() -> () {\n  %0: f32[2] = exp(%1)\n  return %0\n}", "used before it is defined"),
    ("func @f() -> () {\n  %0: q9[2] = exp()\n  return %0\n}", "expected a dtype"),
    ("func @f() -> () {\n  %0: f32[2] = exp() $\n}", "unexpected character"),
])
def test_parser_reports_bad_text(text, message):
    with pytest.raises(ParseError, match=message):
        parse_graph(text)


def test_verifier_catches_wrong_types_unknown_ops_and_bad_order():
    t = TensorType(float32, (4,))
    p = Node("param", (), (("index", 0),), (t,))
    wrong = Node("exp", (p.out,), (), (TensorType(int32, (4,)),), name="bad_exp")
    unknown = Node("frobnicate", (p.out,), (), (t,))
    later = Node("neg", (p.out,), (), (t,))
    early = Node("exp", (later.out,), (), (t,))
    for nodes, message in [([wrong], "differ from the type rule"), ([unknown], "unknown op"),
                           ([early, later], "used before it is defined")]:
        with pytest.raises(VerifyError, match=message):
            verify(Graph("g", [p.out], nodes, [nodes[-1].out]))


# -- property: random graphs built through the API round-trip and verify ----------------------------
UNARY = ["exp", "tanh", "sigmoid", "relu", "square", "abs", "neg"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]


@st.composite
def random_program(draw):
    """A random chain of ops over one or two inputs of random (partly unknown) shapes."""
    tf.reset_default_graph()
    dtype = draw(st.sampled_from([tf.float32, tf.float64, tf.float16]))
    rows = draw(st.sampled_from([None, 1, 3]))
    cols = draw(st.integers(1, 4))
    x = tf.placeholder(dtype, [rows, cols], name="x")
    y = tf.placeholder(dtype, [cols], name="y")
    values = [x, y]
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "const"]))
        a = draw(st.sampled_from(values))
        if kind == "unary":
            values.append(getattr(tf, draw(st.sampled_from(UNARY)).replace("neg", "negative"))(a))
        elif kind == "binary":
            values.append(getattr(tf, draw(st.sampled_from(BINARY)))(a, draw(st.sampled_from([x, y]))))
        elif kind == "reduce":  # keepdims, so every value still broadcasts against x and y
            values.append(tf.reduce_sum(a, axis=-1, keepdims=True))
        else:
            values.append(a * draw(st.floats(-4, 4, allow_nan=False, width=16)))
    return program(values[2:] or [x], feeds=[x, y])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_program())
def test_print_parse_print_is_identity_on_random_graphs(g):
    roundtrip(g)
