"""JAX: each workload as a `jax.jit` function, written the way JAX users write it
(jax.nn, lax.conv_general_dilated, value_and_grad with a functional SGD update).

Every array is an argument, never a closure constant, so XLA cannot fold the inputs.
When BENCH_CACHE_DIR is set JAX's persistent compilation cache lives there, so that
its warm-cache first call is measured like tfjit's.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..workloads import FORGET_BIAS, LN_EPS, LR, RESIDUAL_SCALE, Inputs, Size, Workload
from . import Prepared

VERSION = jax.__version__
jax.config.update("jax_default_matmul_precision", "highest")   # no TF32 on GPUs
if os.environ.get("BENCH_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

T = dict[str, Any]


def gelu_chain(t: T, s: Size) -> T:
    return {"y": jax.nn.gelu(t["x"], approximate=True)}


def softmax_rows(t: T, s: Size) -> T:
    return {"y": jax.nn.softmax(t["x"], axis=-1)}


def layernorm(t: T, s: Size) -> T:
    x = t["x"]
    mean = x.mean(axis=-1, keepdims=True)
    var = jnp.square(x - mean).mean(axis=-1, keepdims=True)
    return {"y": (x - mean) * lax.rsqrt(var + LN_EPS) * t["gamma"] + t["beta"]}


def xent(labels: jax.Array, logits: jax.Array) -> jax.Array:
    return -(labels * jax.nn.log_softmax(logits)).sum(axis=-1).mean()


def mlp_loss(t: T, s: Size) -> jax.Array:
    h = jax.nn.relu(t["x"] @ t["W1"] + t["b1"])
    h = jax.nn.relu(h @ t["W2"] + t["b2"])
    return xent(t["labels"], h @ t["W3"] + t["b3"])


def regression_loss(t: T, s: Size) -> jax.Array:
    y = jax.nn.sigmoid(t["x"] @ t["W"] + t["b"])
    return jnp.mean(jnp.square(y - t["d"]))


def conv(x: jax.Array, k: jax.Array, b: jax.Array) -> jax.Array:
    y = lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b


def pool(x: jax.Array) -> jax.Array:
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def cnn_loss(t: T, s: Size) -> jax.Array:
    net = jax.nn.relu(conv(t["x"], t["K1"], t["c1"]))
    net = pool(jax.nn.relu(conv(net, t["K2"], t["c2"])))
    net = jax.nn.relu(conv(net, t["K3"], t["c3"]))
    net = pool(jax.nn.relu(conv(net, t["K4"], t["c4"])))
    logits = net.reshape(net.shape[0], -1) @ t["Wd"] + t["bd"]
    return xent(t["labels"], logits)


def lstm_forward(t: T, s: Size) -> T:
    zeros = jnp.zeros((s["batch"], s["hidden"]), jnp.float32)
    h, c = [zeros, zeros], [zeros, zeros]
    for step in range(s["steps"]):
        inp = t["x"][step]
        for layer in range(2):
            gates = inp @ t[f"Wx{layer}"] + h[layer] @ t[f"Wh{layer}"] + t[f"b{layer}"]
            i, j, f, o = jnp.split(gates, 4, axis=1)
            c[layer] = (c[layer] * jax.nn.sigmoid(f + FORGET_BIAS)
                        + jax.nn.sigmoid(i) * jnp.tanh(j))
            h[layer] = jnp.tanh(c[layer]) * jax.nn.sigmoid(o)
            inp = h[layer]
    return {"h": h[1]}


def inception_resnet_block(t: T, s: Size) -> T:
    net = t["net"]
    tower0 = jax.nn.relu(conv(net, t["W0"], t["b0"]))
    tower1 = jax.nn.relu(conv(net, t["W1a"], t["b1a"]))
    tower1 = jax.nn.relu(conv(tower1, t["W1b"], t["b1b"]))
    tower1 = jax.nn.relu(conv(tower1, t["W1c"], t["b1c"]))
    up = conv(jnp.concatenate([tower0, tower1], axis=3), t["Wup"], t["bup"])
    return {"y": jax.nn.relu(net + RESIDUAL_SCALE * up)}


FORWARD: dict[str, Callable[[T, Size], T]] = {
    "gelu_chain": gelu_chain, "softmax_rows": softmax_rows, "layernorm": layernorm,
    "lstm_forward": lstm_forward, "inception_resnet_block": inception_resnet_block,
}
TRAIN_LOSS: dict[str, Callable[[T, Size], jax.Array]] = {
    "mlp_train_step": mlp_loss, "seed_regression_step": regression_loss,
    "cnn_train_step": cnn_loss,
}
BUILDERS = {**FORWARD, **TRAIN_LOSS}


def _forward(w: Workload, arrays: T, size: Size) -> Prepared:
    fn = jax.jit(lambda t: FORWARD[w.name](t, size))
    step = lambda: jax.block_until_ready(fn(arrays))  # noqa: E731
    return Prepared(step, lambda out: {k: np.asarray(v) for k, v in out.items()})


def _train(w: Workload, arrays: T, params: T, size: Size) -> Prepared:
    loss_fn = TRAIN_LOSS[w.name]

    def update(p: T, data: T) -> tuple[T, jax.Array]:
        loss, grads = jax.value_and_grad(lambda q: loss_fn({**data, **q}, size))(p)
        return jax.tree.map(lambda v, g: v - LR * g, p, grads), loss

    jitted = jax.jit(update, donate_argnums=0)   # the update reuses the old buffers
    state = {"params": params}

    def step() -> jax.Array:
        state["params"], loss = jax.block_until_ready(jitted(state["params"], arrays))
        return loss

    def fetch(loss: jax.Array) -> dict[str, np.ndarray]:
        return {"loss": np.asarray(loss),
                **{k: np.asarray(v) for k, v in state["params"].items()}}
    return Prepared(step, fetch)


def prepare(w: Workload, inputs: Inputs, size: Size, device: str) -> Prepared:
    try:
        dev = jax.devices(device)[0]
    except RuntimeError as exc:            # e.g. no CUDA plugin installed
        raise NotImplementedError(f"JAX has no {device} backend here: {exc}") from exc
    data = {k: jax.device_put(inputs[k], dev) for k in w.data}
    weights = {k: jax.device_put(inputs[k], dev) for k in w.weights(inputs)}
    if w.kind == "train":
        return _train(w, data, weights, size)
    return _forward(w, {**data, **weights}, size)
