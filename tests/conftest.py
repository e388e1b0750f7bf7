"""Shared pytest fixtures: every test builds its graph from scratch, and every program any
test compiles must round-trip through the IR text form and pass the verifier."""
import os

import pytest

import tfjit as tf
from tfjit import config
from tfjit.ir import parse_graph, print_graph
from tfjit.ir.verifier import verify


@pytest.fixture(autouse=True)
def _test_backend():
    """Tests run on the reference backend (the oracle) unless TFJIT_BACKEND names another:
    the library's default is numba, but compiling every op test's kernels would cost minutes;
    the numba tests select their backend themselves, and `TFJIT_BACKEND=numba pytest tests`
    runs the whole corpus on generated kernels."""
    previous = config.current.backend
    config.set_backend(os.environ.get("TFJIT_BACKEND", "reference"))
    yield
    config.set_backend(previous)


@pytest.fixture
def backend():
    """`backend(name)` switches backends inside a test; the test's backend is restored after."""
    previous = config.current.backend
    yield config.set_backend
    config.set_backend(previous)


@pytest.fixture(autouse=True)
def _fresh_default_graph():
    """Reset the default graph so graphs and seeds never leak between tests."""
    tf.reset_default_graph()
    yield


def _checked_pass_manager(original):
    def make(*args, **kwargs):
        manager = original(*args, **kwargs)
        run = manager.run

        def run_checked(graph):
            for g in (graph, run(graph)):
                text = print_graph(g)
                assert print_graph(parse_graph(text)) == text, "IR text did not round-trip"
                verify(g)
            return manager.history[-1][1]

        manager.run = run_checked
        return manager

    return make


@pytest.fixture(autouse=True)
def _every_compiled_program_round_trips(monkeypatch):
    """Session.run and @tfjit.function compile through config.pass_manager: check the program
    before and after the passes (text round trip, verifier) in every test."""
    monkeypatch.setattr(config, "pass_manager", _checked_pass_manager(config.pass_manager))
    yield
