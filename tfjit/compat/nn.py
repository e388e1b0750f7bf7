"""The `tf.nn` namespace."""
from .math_ops import (elu, gelu, leaky_relu, relu, relu6, selu, sigmoid, softplus, softsign,  # noqa: F401
                       tanh)
from .nn_ops import *  # noqa: F401,F403
from .cnn import *  # noqa: F401,F403  (conv, pooling, dropout, normalisation)
from .rnn import *  # noqa: F401,F403  (rnn_cell, static_rnn, dynamic_rnn)
