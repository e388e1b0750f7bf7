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
# -- issue 6: queue runners and queue-based input pipelines
from .queue_runner import (Coordinator, QueueRunner, add_queue_runner, batch, input_producer,  # noqa: F401,E402
                           limit_epochs, range_input_producer, shuffle_batch, slice_input_producer,
                           start_queue_runners)
from . import queue_runner  # noqa: F401,E402  (tf.train.queue_runner.QueueRunner)
