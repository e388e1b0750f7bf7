"""`tf.contrib`: `slim`, `layers` (slim's layers, initializers and regularizers) and `rnn` (the
RNN cells and `static_rnn`) (issue 6)."""
from __future__ import annotations

from types import SimpleNamespace

from . import rnn as _rnn
from . import slim  # noqa: F401

layers = slim

rnn = SimpleNamespace(
    RNNCell=_rnn.RNNCell, LayerRNNCell=_rnn.LayerRNNCell, BasicRNNCell=_rnn.BasicRNNCell,
    GRUCell=_rnn.GRUCell, BasicLSTMCell=_rnn.BasicLSTMCell, LSTMCell=_rnn.LSTMCell,
    LSTMStateTuple=_rnn.LSTMStateTuple, DropoutWrapper=_rnn.DropoutWrapper, MultiRNNCell=_rnn.MultiRNNCell,
    static_rnn=_rnn.static_rnn,
)
