"""TensorFlow 2: the shared TF model source (tf_models.py) under `tf.function`,
with `jit_compile=False` (TF's graph executor) or `True` (XLA).

Weights are `tf.Variable`s and per-call data are arguments, so neither is folded into
the compiled graph as a constant.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from .. import tf_models  # noqa: E402
from ..workloads import LR, Inputs, Size, Workload  # noqa: E402
from . import Prepared  # noqa: E402

VERSION = tf.__version__
BUILDERS = {**tf_models.FORWARD, **tf_models.TRAIN_LOSS}
tf.config.experimental.enable_tensor_float_32_execution(False)  # float32 means float32


def _sync(device: str) -> None:
    """CPU execution is synchronous; a GPU queue must drain before the clock stops."""
    if device == "gpu":
        tf.test.experimental.sync_devices()


def _forward(w: Workload, data: dict, weights: dict, size: Size, device: str,
             jit_compile: bool) -> Prepared:
    model = tf_models.FORWARD[w.name]
    fn = tf.function(lambda d: model(tf, {**d, **weights}, size), jit_compile=jit_compile)

    def step() -> dict:
        out = fn(data)
        _sync(device)
        return out
    return Prepared(step, lambda out: {k: v.numpy() for k, v in out.items()})


def _train(w: Workload, data: dict, weights: dict, size: Size, device: str,
           jit_compile: bool) -> Prepared:
    loss_fn = tf_models.TRAIN_LOSS[w.name]
    variables = list(weights.values())

    @tf.function(jit_compile=jit_compile)
    def train(d: dict) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(tf, {**d, **weights}, size)
        for var, grad in zip(variables, tape.gradient(loss, variables)):
            var.assign_sub(LR * grad)
        return loss

    def step() -> tf.Tensor:
        loss = train(data)
        _sync(device)
        return loss

    def fetch(loss: tf.Tensor) -> dict[str, np.ndarray]:
        return {"loss": loss.numpy(), **{k: v.numpy() for k, v in weights.items()}}
    return Prepared(step, fetch)


def _place(device: str) -> None:
    """TF places ops on a GPU whenever it sees one: hide it for the CPU variant.
    (tensorflow-cpu has no GPU support; `tensorflow[and-cuda]` does.)"""
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise NotImplementedError("this TensorFlow build sees no GPU")
    if device == "cpu":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:   # already initialised (an earlier workload, same device)
            pass


def prepare(w: Workload, inputs: Inputs, size: Size, device: str,
            jit_compile: bool) -> Prepared:
    _place(device)
    data = {k: tf.constant(inputs[k]) for k in w.data}
    weights = {k: tf.Variable(inputs[k], name=k) for k in w.weights(inputs)}
    build = _train if w.kind == "train" else _forward
    return build(w, data, weights, size, device, jit_compile)
