"""The eight workloads, defined once and framework-neutrally.

A workload is its sizes (one preset per run mode), a function that draws its float32
inputs from a seed, the names of the inputs a training step updates, and its FLOP count
(for the lower bound). Every system receives the same arrays, written once to disk by
the parent process; the math each system runs is in numpy_models.py / tf_models.py /
the adapters.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

Size = Mapping[str, int]
Inputs = dict[str, np.ndarray]

LR = 0.01                 # SGD learning rate of every training step
LN_EPS = 1e-5             # layer-norm epsilon
RESIDUAL_SCALE = 0.17     # the Inception-ResNet block's `scale`
FORGET_BIAS = 1.0         # BasicLSTMCell's default
PRESETS = ("full", "quick", "tiny")


@dataclass(frozen=True)
class Workload:
    """One benchmark problem.

    `data` names the inputs fed on every call (placeholders in TF1 terms); the other
    inputs are weights (variables). A training step updates every weight.
    """

    name: str
    kind: str                                   # "forward" or "train"
    summary: str
    sizes: Mapping[str, Size]                   # preset name -> size parameters
    make_inputs: Callable[[Size, np.random.Generator], Inputs]
    flops: Callable[[Size], float]
    data: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("y",)           # a training step's is ("loss",)

    def weights(self, inputs: Inputs) -> tuple[str, ...]:
        return tuple(k for k in inputs if k not in self.data)

    def params(self, inputs: Inputs) -> tuple[str, ...]:
        """The weights a step updates (and the check compares): none when forward."""
        return self.weights(inputs) if self.kind == "train" else ()


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _weight(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He-style scale so activations stay O(1) through the deeper models."""
    return _normal(rng, shape, np.sqrt(2.0 / fan_in))


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    """Non-zero biases, so that a dropped bias term fails the check."""
    return _normal(rng, (n,), 0.1)


def _one_hot(rng: np.random.Generator, batch: int, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]


# --- 1. gelu_chain --------------------------------------------------------------------

def _gelu_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    return {"x": _normal(rng, (s["n"],), 2.0)}


GELU = Workload(
    "gelu_chain", "forward", "tanh-GELU, elementwise",
    {"full": {"n": 16 * 2**20}, "quick": {"n": 2**20}, "tiny": {"n": 4099}},
    _gelu_inputs, lambda s: 0.0)


# --- 2. softmax_rows ------------------------------------------------------------------

def _rows_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    return {"x": _normal(rng, (s["rows"], s["cols"]), 3.0)}


SOFTMAX = Workload(
    "softmax_rows", "forward", "softmax over the last axis",
    {"full": {"rows": 4096, "cols": 1024}, "quick": {"rows": 512, "cols": 1024},
     "tiny": {"rows": 37, "cols": 129}},
    _rows_inputs, lambda s: 0.0)


# --- 3. layernorm ---------------------------------------------------------------------

def _layernorm_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    inputs = _rows_inputs(s, rng)
    inputs["x"] += np.float32(1.5)   # a non-zero mean, so that centring matters
    inputs["gamma"] = (1.0 + _normal(rng, (s["cols"],), 0.1)).astype(np.float32)
    inputs["beta"] = _bias(rng, s["cols"])
    return inputs


LAYERNORM = Workload(
    "layernorm", "forward", "layer norm over the last axis, with gamma/beta",
    {"full": {"rows": 8192, "cols": 1024}, "quick": {"rows": 1024, "cols": 1024},
     "tiny": {"rows": 33, "cols": 130}},
    _layernorm_inputs, lambda s: 0.0)


# --- 4. mlp_train_step ----------------------------------------------------------------

def _mlp_dims(s: Size) -> list[int]:
    return [s["inp"], s["hidden"], s["hidden"], s["classes"]]


def _mlp_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    inputs = {"x": rng.random((s["batch"], s["inp"]), dtype=np.float32),
              "labels": _one_hot(rng, s["batch"], s["classes"])}
    dims = _mlp_dims(s)
    for i in range(3):
        inputs[f"W{i + 1}"] = _weight(rng, (dims[i], dims[i + 1]), dims[i])
        inputs[f"b{i + 1}"] = _bias(rng, dims[i + 1])
    return inputs


def _mlp_flops(s: Size) -> float:
    """Forward, weight gradients, and input gradients of layers 2 and 3."""
    dims = _mlp_dims(s)
    layer = [2.0 * s["batch"] * dims[i] * dims[i + 1] for i in range(3)]
    return 3 * sum(layer) - layer[0]


MLP = Workload(
    "mlp_train_step", "train", "SGD step of an MLP (relu, softmax cross-entropy)",
    {"full": {"batch": 256, "inp": 784, "hidden": 512, "classes": 10},
     "quick": {"batch": 64, "inp": 784, "hidden": 256, "classes": 10},
     "tiny": {"batch": 8, "inp": 20, "hidden": 16, "classes": 10}},
    _mlp_inputs, _mlp_flops, data=("x", "labels"), outputs=("loss",))


# --- 5. seed_regression_step ----------------------------------------------------------

def _regression_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    return {"x": _normal(rng, (s["batch"], s["inp"]), 1.0),
            "d": rng.random((s["batch"], s["out"]), dtype=np.float32),
            "W": _normal(rng, (s["inp"], s["out"]), 1.0 / np.sqrt(s["inp"])),
            "b": _bias(rng, s["out"])}


REGRESSION = Workload(
    "seed_regression_step", "train", "the lecture's sigmoid regression, one GD step",
    {"full": {"batch": 1024, "inp": 256, "out": 64},
     "quick": {"batch": 256, "inp": 128, "out": 32},
     "tiny": {"batch": 16, "inp": 12, "out": 5}},
    _regression_inputs, lambda s: 2 * 2.0 * s["batch"] * s["inp"] * s["out"],
    data=("x", "d"), outputs=("loss",))


# --- 6. cnn_train_step ----------------------------------------------------------------

def _cnn_channels(s: Size) -> list[int]:
    return [3, s["c1"], s["c1"], s["c2"], s["c2"]]


def _cnn_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    hw, ch = s["hw"], _cnn_channels(s)
    inputs = {"x": rng.random((s["batch"], hw, hw, 3), dtype=np.float32),
              "labels": _one_hot(rng, s["batch"], s["classes"])}
    for i in range(4):
        inputs[f"K{i + 1}"] = _weight(rng, (3, 3, ch[i], ch[i + 1]), 9 * ch[i])
        inputs[f"c{i + 1}"] = _bias(rng, ch[i + 1])
    flat = (hw // 4) ** 2 * ch[4]
    inputs["Wd"] = _weight(rng, (flat, s["classes"]), flat)
    inputs["bd"] = _bias(rng, s["classes"])
    return inputs


def _cnn_flops(s: Size) -> float:
    """Forward, weight gradients, and input gradients of every layer but the first."""
    ch, n, hw = _cnn_channels(s), s["batch"], s["hw"]
    pixels = [hw * hw, hw * hw, (hw // 2) ** 2, (hw // 2) ** 2]
    convs = [2.0 * n * pixels[i] * 9 * ch[i] * ch[i + 1] for i in range(4)]
    dense = 2.0 * n * (hw // 4) ** 2 * ch[4] * s["classes"]
    return 3 * (sum(convs) + dense) - convs[0]


CNN = Workload(
    "cnn_train_step", "train", "4 conv layers, 2 max-pools, dense, SGD step (NHWC)",
    {"full": {"batch": 32, "hw": 32, "c1": 32, "c2": 64, "classes": 10},
     "quick": {"batch": 8, "hw": 16, "c1": 16, "c2": 32, "classes": 10},
     "tiny": {"batch": 2, "hw": 8, "c1": 4, "c2": 8, "classes": 10}},
    _cnn_inputs, _cnn_flops, data=("x", "labels"), outputs=("loss",))


# --- 7. lstm_forward ------------------------------------------------------------------

def _lstm_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    h = s["hidden"]
    inputs = {"x": _normal(rng, (s["steps"], s["batch"], s["inp"]), 1.0)}
    for layer, fan_in in enumerate([s["inp"], h]):
        inputs[f"Wx{layer}"] = _normal(rng, (fan_in, 4 * h), 1.0 / np.sqrt(fan_in + h))
        inputs[f"Wh{layer}"] = _normal(rng, (h, 4 * h), 1.0 / np.sqrt(fan_in + h))
        inputs[f"b{layer}"] = _bias(rng, 4 * h)
    return inputs


def _lstm_flops(s: Size) -> float:
    h, b = s["hidden"], s["batch"]
    per_step = sum(2.0 * b * (fan_in + h) * 4 * h for fan_in in [s["inp"], h])
    return s["steps"] * per_step


LSTM = Workload(
    "lstm_forward", "forward", "2-layer LSTM (BasicLSTMCell math), final top state",
    {"full": {"steps": 32, "batch": 64, "inp": 128, "hidden": 256},
     "quick": {"steps": 8, "batch": 16, "inp": 64, "hidden": 64},
     "tiny": {"steps": 3, "batch": 2, "inp": 5, "hidden": 4}},
    _lstm_inputs, _lstm_flops, outputs=("h",))


# --- 8. inception_resnet_block --------------------------------------------------------

INCEPTION_KERNEL = 7


def _inception_inputs(s: Size, rng: np.random.Generator) -> Inputs:
    c, b, k = s["channels"], s["branch"], INCEPTION_KERNEL
    shapes = {"W0": (1, 1, c, b), "W1a": (1, 1, c, b), "W1b": (1, k, b, b),
              "W1c": (k, 1, b, b), "Wup": (1, 1, 2 * b, c)}
    inputs = {"net": _normal(rng, (s["batch"], s["hw"], s["hw"], c), 1.0)}
    for name, shape in shapes.items():
        inputs[name] = _weight(rng, shape, int(np.prod(shape[:3])))
        inputs["b" + name[1:]] = _bias(rng, shape[3])
    return inputs


def _inception_flops(s: Size) -> float:
    c, b, pixels = s["channels"], s["branch"], s["batch"] * s["hw"] ** 2
    macs = 2 * c * b + 2 * INCEPTION_KERNEL * b * b + 2 * b * c
    return 2.0 * pixels * macs


INCEPTION = Workload(
    "inception_resnet_block", "forward", "the lecture's Inception-ResNet block (NHWC)",
    {"full": {"batch": 8, "hw": 17, "channels": 384, "branch": 128},
     "quick": {"batch": 2, "hw": 17, "channels": 96, "branch": 32},
     "tiny": {"batch": 1, "hw": 5, "channels": 8, "branch": 4}},
    _inception_inputs, _inception_flops, data=("net",))


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    GELU, SOFTMAX, LAYERNORM, MLP, REGRESSION, CNN, LSTM, INCEPTION]}


def make_inputs(workload: Workload, preset: str, seed: int) -> Inputs:
    """The workload's inputs; the seed is mixed with the name so workloads differ."""
    rng = np.random.default_rng([seed, zlib.crc32(workload.name.encode())])
    inputs = workload.make_inputs(workload.sizes[preset], rng)
    assert all(a.dtype == np.float32 for a in inputs.values()), workload.name
    return inputs


def min_bytes(workload: Workload, inputs: Inputs, outputs: Inputs) -> int:
    """Compulsory memory traffic: read every input, write every output.

    A training step also writes each parameter back (its output dict holds them).
    """
    return sum(a.nbytes for a in inputs.values()) + sum(a.nbytes for a in outputs.values())
