"""RNN cells (`tf.nn.rnn_cell`, `tf.contrib.rnn`), `static_rnn` and `dynamic_rnn` (issue 6;
exported into tf.nn)."""
from __future__ import annotations

__all__: list[str] = []
