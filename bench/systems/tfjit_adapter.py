"""tfjit, through both front doors, on the shared TF model source (tf_models.py).

style="session": TF1 graph building — placeholders for the data fed on every call,
`tf.Variable`s for the weights, `GradientDescentOptimizer(LR).minimize(loss)` for the
training steps, `sess.run(fetches, feed_dict)` per call.
style="function": `@tfjit.function` over NumPy arrays; a training step returns the
loss and the updated weights (via `tfjit.gradients`), which replace the old ones.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import tfjit
import tfjit as tf

from .. import tf_models
from ..workloads import LR, Inputs, Size, Workload
from . import Prepared

VERSION = getattr(tfjit, "__version__", "unknown")
BUILDERS = {**tf_models.FORWARD, **tf_models.TRAIN_LOSS}


def _fresh_graph() -> None:
    """Quick mode runs several workloads per process; start each on an empty graph."""
    reset = getattr(tf, "reset_default_graph", None)
    if reset is not None:
        reset()


def _session(w: Workload, inputs: Inputs, size: Size) -> Prepared:
    _fresh_graph()
    feeds = {k: tf.placeholder(tf.float32, shape=list(inputs[k].shape), name=k)
             for k in w.data}
    weights = {k: tf.Variable(inputs[k], name=k) for k in w.weights(inputs)}
    feed_dict = {feeds[k]: inputs[k] for k in w.data}
    sess = tf.Session()
    tensors = {**feeds, **weights}
    if w.kind == "forward":
        out = tf_models.FORWARD[w.name](tf, tensors, size)
        sess.run(tf.global_variables_initializer())
        names = list(out)
        fetches = [out[k] for k in names]
        step = lambda: sess.run(fetches, feed_dict=feed_dict)  # noqa: E731
        return Prepared(step, lambda res: dict(zip(names, res)))
    loss = tf_models.TRAIN_LOSS[w.name](tf, tensors, size)
    train = tf.train.GradientDescentOptimizer(LR).minimize(loss)
    sess.run(tf.global_variables_initializer())
    step = lambda: sess.run([train, loss], feed_dict=feed_dict)[1]  # noqa: E731
    params = list(weights)

    def fetch(res: Any) -> dict[str, np.ndarray]:
        values = sess.run([weights[k] for k in params])
        return {"loss": res, **dict(zip(params, values))}
    return Prepared(step, fetch)


def _forward_function(w: Workload, names: list[str], size: Size) -> Callable[..., Any]:
    model = tf_models.FORWARD[w.name]

    def forward(*args: Any) -> list[Any]:
        out = model(tf, dict(zip(names, args)), size)
        return [out[k] for k in w.outputs]
    return tfjit.function(forward)


def _train_function(w: Workload, names: list[str], params: list[str],
                    size: Size) -> Callable[..., Any]:
    loss_fn = tf_models.TRAIN_LOSS[w.name]

    def train(*args: Any) -> list[Any]:
        t = dict(zip(names, args))
        loss = loss_fn(tf, t, size)
        grads = tfjit.gradients(loss, [t[k] for k in params])
        return [loss] + [t[k] - LR * g for k, g in zip(params, grads)]
    return tfjit.function(train)


def _function(w: Workload, inputs: Inputs, size: Size) -> Prepared:
    names = list(inputs)
    state = dict(inputs)
    if w.kind == "forward":
        fn = _forward_function(w, names, size)
        step = lambda: fn(*[state[k] for k in names])  # noqa: E731
        return Prepared(step, lambda res: dict(zip(w.outputs, res)))
    params = list(w.params(inputs))
    fn = _train_function(w, names, params, size)

    def step() -> Any:
        loss, *new = fn(*[state[k] for k in names])
        state.update(zip(params, new))
        return loss
    fetch = lambda loss: {"loss": loss, **{k: state[k] for k in params}}  # noqa: E731
    return Prepared(step, fetch)


def _require_cuda() -> None:
    """tfjit's GPU backend is numba-cuda: without a device it would silently measure
    a CPU fallback under the GPU's name."""
    from numba import cuda
    if not cuda.is_available():
        raise NotImplementedError("numba-cuda sees no CUDA GPU")


def prepare(w: Workload, inputs: Inputs, size: Size, device: str, style: str) -> Prepared:
    build = _session if style == "session" else _function
    if device == "gpu":
        # The CUDA backend's default placement: every node with a CUDA kernel on the GPU,
        # the rest on the CPU (as TF places a graph without device scopes on a GPU machine).
        _require_cuda()
        tfjit.config.set_backend("numba_cuda")
    return build(w, inputs, size)
