"""tfjit: a JIT compiler for TensorFlow-1.x-style model code. `import tfjit as tf`."""
from __future__ import annotations

import os as _os

# numba's OpenMP workers spin between kernels by default, which made back-to-back small
# parallel kernels ~10x slower here (DESIGN.md); must be set before numba starts its pool.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from . import config  # noqa: F401  (tfjit.config.set_backend, set_optimization_level, ...)
from . import ops as _ops  # registers every op
from .compat import nn  # noqa: F401
from .compat.array_ops import *  # noqa: F401,F403
from .compat.array_ops import range  # noqa: F401,A004
from .compat.control_flow import control_dependencies, group, no_op  # noqa: F401
from .compat.control_flow import tuple_ as tuple  # noqa: F401,A001
from .compat.graph_keys import (GraphKeys, add_to_collection, add_to_collections,  # noqa: F401
                                get_collection, get_collection_ref)
from .compat import initializers  # noqa: F401  (tf.initializers.*)
from .compat.initializers import (constant_initializer, glorot_normal_initializer,  # noqa: F401
                                  glorot_uniform_initializer, he_normal, he_uniform,
                                  lecun_normal, lecun_uniform, ones_initializer,
                                  random_normal_initializer, random_uniform_initializer,
                                  truncated_normal_initializer, variance_scaling_initializer,
                                  zeros_initializer)
from .compat.layout_ops import *  # noqa: F401,F403
from .compat.math_ops import *  # noqa: F401,F403
from .compat.math_ops import abs, pow, round  # noqa: F401,A004
from .compat.math_ops import install_operators as _install_operators
from .compat.random_ops import (random_normal, random_uniform, set_random_seed,  # noqa: F401
                                truncated_normal)
from .compat.session import (ConfigProto, GPUOptions, GraphOptions, InteractiveSession,  # noqa: F401
                             RunMetadata, RunOptions, Session, get_default_session)
from .compat.variables import (AUTO_REUSE, Variable, VariableScope, all_variables, assign,  # noqa: F401
                               assign_add, assign_sub,
                               get_variable, get_variable_scope, global_variables,
                               global_variables_initializer, initialize_all_variables,
                               is_variable_initialized, local_variables,
                               local_variables_initializer, model_variables, trainable_variables,
                               variable_scope, variables_initializer)
from .compat.variables import _install_variable_operators
from .debug import dump_ir, program_for  # noqa: F401
from .errors import (FailedPreconditionError, InvalidArgumentError, NotFoundError,  # noqa: F401
                     OpError)
from .ir.types import (DType, as_dtype, bool_ as bool, float16, float32, float64, int8,  # noqa: F401
                       int32, int64, uint8)
from .trace.function import Function, TensorSpec, function  # noqa: F401
from .trace.graph import Graph, get_default_graph, reset_default_graph  # noqa: F401
from .trace.tensor import Dimension, Operation, Tensor, TensorShape, convert_to_tensor  # noqa: F401

_install_operators()
_install_variable_operators()

half = float16
double = float64
newaxis = None


def name_scope(name: str | None, default_name: str | None = None, values: object = None):
    """TF1's `tf.name_scope` on the default graph."""
    return get_default_graph().name_scope(name if name is not None else default_name)


def device(device_name: str | None):
    """`with tf.device('/gpu:0'):` places the ops built inside on that device."""
    return get_default_graph().device(device_name)


__version__ = "0.1.0"

# -- autodiff (issue 3)
from . import testing  # noqa: E402
from .autodiff import UnconnectedGradients, custom_gradient, gradients, hessians  # noqa: E402,F401

test = testing

# -- training (issue 3)
from .compat import losses, metrics, summary, train  # noqa: E402,F401
from .compat.clip_ops import clip_by_global_norm, clip_by_norm, global_norm  # noqa: E402,F401

# -- issue 6: control flow and queues (each module lists its names in __all__)
from .compat.cond_while import *  # noqa: E402,F401,F403
from .compat.queues import *  # noqa: E402,F401,F403

# -- issue 6: queues and data
from .compat import data  # noqa: E402,F401  (tf.data.Dataset)

# -- issue 6: layers and contrib
from .compat import contrib, layers  # noqa: E402,F401

# -- the numba backend loads with tfjit when it is the backend (the default): numba's import
# (0.1-0.15 s) is then part of `import tfjit`, as JAX's is of `import jax`, not of the first
# Session.run. `TFJIT_BACKEND=reference` skips it.
if config.current.backend == "numba":
    from .backends.numba_cpu import executable as _numba_executable  # noqa: E402,F401
