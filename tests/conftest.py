"""Shared pytest fixtures: every test builds its graph from scratch."""
import pytest

import tfjit as tf


@pytest.fixture(autouse=True)
def _fresh_default_graph():
    """Reset the default graph so graphs and seeds never leak between tests."""
    tf.reset_default_graph()
    yield
