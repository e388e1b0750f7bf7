"""The `tf.nn` namespace."""
from .math_ops import (elu, gelu, leaky_relu, relu, relu6, selu, sigmoid, softplus, softsign,  # noqa: F401
                       tanh)
from .nn_ops import *  # noqa: F401,F403
