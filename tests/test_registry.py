"""The op registry: every op is complete (type rule, reference, fusion class) and every op is
exercised by some test.

"Exercised" is found by reading the test sources: a test names the op in quotes (a table of
op names, `node.op == "matmul"`) or calls a function of that name (`tf.matmul(`). Ops reached
through an API of another spelling are listed in ALIASES with the spellings that build them.
"""
from __future__ import annotations

import inspect
import pathlib
import re

import pytest

import tfjit  # noqa: F401  (registers every op)
from tfjit.ops import REGISTRY, Fusion, OpDef

TESTS = pathlib.Path(__file__).parent

ALIASES: dict[str, tuple[str, ...]] = {
    "variable": ("tf.Variable(", "get_variable("),
    "scalar_summary": ("summary.scalar(",),
    "histogram_summary": ("summary.histogram(",),
    "image_summary": ("summary.image(",),
    "merge_summary": ("summary.merge(", "summary.merge_all("),
}


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in sorted(TESTS.glob("test_*.py")) if p.name != "test_registry.py")


def _exercised(name: str, sources: str) -> bool:
    quoted_or_called = re.compile(rf"""["']{re.escape(name)}["']|(?<![A-Za-z0-9_]){re.escape(name)}\(""")
    return bool(quoted_or_called.search(sources)) or any(a in sources for a in ALIASES.get(name, ()))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_is_complete(name):
    op = REGISTRY[name]
    assert isinstance(op, OpDef) and op.name == name
    assert callable(op.type_rule), f"op {name!r} has no type rule"
    assert callable(op.reference), f"op {name!r} has no reference"
    assert isinstance(op.fusion, Fusion), f"op {name!r} has no fusion class"
    assert inspect.signature(op.type_rule).parameters, f"type rule of {name!r} takes no input types"
    if op.writes_state:
        assert op.stateful, f"op {name!r} writes state but is not marked stateful"


def test_every_op_is_exercised_by_a_test():
    sources = _test_sources()
    missing = sorted(name for name in REGISTRY if not _exercised(name, sources))
    assert not missing, f"ops with no test that exercises them: {missing}"


def test_the_coverage_check_itself():
    sources = 'x = tf.matmul(a, b)\nOPS = {"neg": 1}\ny = tf.Variable(0)\nz = reduce_sum(x)\n'
    assert _exercised("matmul", sources) and _exercised("neg", sources)
    assert _exercised("variable", sources)
    assert not _exercised("sum", sources)  # `reduce_sum(` is not `sum(`
    assert not _exercised("add", sources)


def test_registering_twice_is_refused():
    from tfjit.ops import register

    op = REGISTRY["add"]
    with pytest.raises(ValueError, match="registered twice"):
        register("add", op.type_rule, op.reference, op.fusion)
