"""The `tf.train` namespace: optimizers, the global step, learning-rate schedules, checkpoints."""
from ..saver import (CheckpointState, Saver, checkpoint_exists, export_meta_graph,  # noqa: F401
                     get_checkpoint_state, import_meta_graph, latest_checkpoint,
                     update_checkpoint_state)
from .learning_rate_decay import exponential_decay, piecewise_constant  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .optimizers import (AdagradOptimizer, AdamOptimizer, GradientDescentOptimizer,  # noqa: F401
                         MomentumOptimizer, RMSPropOptimizer)
from .training_util import (assert_global_step, create_global_step, get_global_step,  # noqa: F401
                            get_or_create_global_step, global_step)
