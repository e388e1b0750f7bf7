"""The workloads in plain NumPy: the NumPy-eager system *and* the oracle.

Written the way a user without a JIT would write them (vectorised, no tricks), with
hand-derived backward passes for the training steps. Every function preserves its
inputs' dtype (NumPy 2 keeps float32 with Python-float constants), so the same code run
on float64 copies of the inputs is the reference every system is checked against.

Forward functions return {"y": ...} (LSTM: {"h": ...}); training steps update the
parameters in the given dict in place and return {"loss": ...}.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .workloads import FORGET_BIAS, LN_EPS, LR, RESIDUAL_SCALE, Inputs, Size

GELU_C = float(np.sqrt(2.0 / np.pi))


def gelu(x: np.ndarray) -> np.ndarray:
    """tanh approximation of GELU (as tf.nn.gelu(approximate=True))."""
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * (x * x * x))))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + LN_EPS) * gamma + beta


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean softmax cross-entropy over the batch and its gradient w.r.t. the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    batch = logits.shape[0]
    loss = -(labels * (shifted - np.log(total))).sum() / batch
    return loss, (e / total - labels) / batch


def sgd(params: Inputs, grads: Inputs) -> None:
    """In-place update, as TF's GradientDescentOptimizer does to its variables."""
    for name, grad in grads.items():
        params[name] -= LR * grad


# --- convolution helpers (NHWC, stride 1, SAME padding, odd kernels) -------------------

def _windows(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """[N, H, W, C, kh, kw] view of the SAME-padded input (TF pads the extra at the end)."""
    pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
    return sliding_window_view(np.pad(x, pads), (kh, kw), axis=(1, 2))


def conv2d(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """conv2d(x, k, strides=1, padding='SAME'); 1x1 kernels are a plain matmul."""
    kh, kw, c, f = k.shape
    if kh == kw == 1:
        return (x.reshape(-1, c) @ k.reshape(c, f)).reshape(*x.shape[:3], f)
    return np.tensordot(_windows(x, kh, kw), k, axes=([4, 5, 3], [0, 1, 2]))


def conv2d_grads(x: np.ndarray, k: np.ndarray, dy: np.ndarray,
                 need_dx: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients of conv2d w.r.t. the kernel and (optionally) the input."""
    kh, kw = k.shape[:2]
    dk = np.tensordot(_windows(x, kh, kw), dy, axes=([0, 1, 2], [0, 1, 2]))
    dk = dk.transpose(1, 2, 0, 3)
    dx = conv2d(dy, k[::-1, ::-1].transpose(0, 1, 3, 2)) if need_dx else None
    return dk, dx


def max_pool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def max_pool2_grad(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Route dy to the maxima. Ties only occur at relu's zeros, whose gradient the
    preceding relu zeroes anyway, so this equals TF's first-max routing."""
    n, h, w, c = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
    mask = windows == y[:, :, None, :, None, :]
    return (mask * dy[:, :, None, :, None, :]).reshape(x.shape)


# --- the workloads ---------------------------------------------------------------------

def gelu_chain(p: Inputs, s: Size) -> Inputs:
    return {"y": gelu(p["x"])}


def softmax_rows(p: Inputs, s: Size) -> Inputs:
    return {"y": softmax(p["x"])}


def layernorm_rows(p: Inputs, s: Size) -> Inputs:
    return {"y": layernorm(p["x"], p["gamma"], p["beta"])}


def mlp_train_step(p: Inputs, s: Size) -> Inputs:
    z1 = p["x"] @ p["W1"] + p["b1"]
    a1 = relu(z1)
    z2 = a1 @ p["W2"] + p["b2"]
    a2 = relu(z2)
    loss, dz3 = softmax_xent(a2 @ p["W3"] + p["b3"], p["labels"])
    dz2 = (dz3 @ p["W3"].T) * (z2 > 0)
    dz1 = (dz2 @ p["W2"].T) * (z1 > 0)
    sgd(p, {"W3": a2.T @ dz3, "b3": dz3.sum(axis=0),
            "W2": a1.T @ dz2, "b2": dz2.sum(axis=0),
            "W1": p["x"].T @ dz1, "b1": dz1.sum(axis=0)})
    return {"loss": np.asarray(loss)}


def seed_regression_step(p: Inputs, s: Size) -> Inputs:
    y = sigmoid(p["x"] @ p["W"] + p["b"])
    diff = y - p["d"]
    loss = (diff * diff).mean()
    dz = (2.0 / diff.size) * diff * y * (1.0 - y)
    sgd(p, {"W": p["x"].T @ dz, "b": dz.sum(axis=0)})
    return {"loss": np.asarray(loss)}


def _conv_relu(x: np.ndarray, k: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = conv2d(x, k) + c
    return z, relu(z)


def cnn_train_step(p: Inputs, s: Size) -> Inputs:
    x = p["x"]
    z1, a1 = _conv_relu(x, p["K1"], p["c1"])
    z2, a2 = _conv_relu(a1, p["K2"], p["c2"])
    q2 = max_pool2(a2)
    z3, a3 = _conv_relu(q2, p["K3"], p["c3"])
    z4, a4 = _conv_relu(a3, p["K4"], p["c4"])
    q4 = max_pool2(a4)
    flat = q4.reshape(x.shape[0], -1)
    loss, dlogits = softmax_xent(flat @ p["Wd"] + p["bd"], p["labels"])

    grads = {"Wd": flat.T @ dlogits, "bd": dlogits.sum(axis=0)}
    dq4 = (dlogits @ p["Wd"].T).reshape(q4.shape)
    dz4 = max_pool2_grad(a4, q4, dq4) * (z4 > 0)
    grads["K4"], da3 = conv2d_grads(a3, p["K4"], dz4, need_dx=True)
    dz3 = da3 * (z3 > 0)
    grads["K3"], dq2 = conv2d_grads(q2, p["K3"], dz3, need_dx=True)
    dz2 = max_pool2_grad(a2, q2, dq2) * (z2 > 0)
    grads["K2"], da1 = conv2d_grads(a1, p["K2"], dz2, need_dx=True)
    dz1 = da1 * (z1 > 0)
    grads["K1"], _ = conv2d_grads(x, p["K1"], dz1, need_dx=False)
    for i, dz in enumerate([dz1, dz2, dz3, dz4], start=1):
        grads[f"c{i}"] = dz.sum(axis=(0, 1, 2))
    sgd(p, grads)
    return {"loss": np.asarray(loss)}


def lstm_cell(x: np.ndarray, h: np.ndarray, c: np.ndarray, wx: np.ndarray,
              wh: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BasicLSTMCell: gates i, j, f, o in that order, forget bias 1."""
    i, j, f, o = np.split(x @ wx + h @ wh + b, 4, axis=1)
    c = c * sigmoid(f + FORGET_BIAS) + sigmoid(i) * np.tanh(j)
    return np.tanh(c) * sigmoid(o), c


def lstm_forward(p: Inputs, s: Size) -> Inputs:
    x = p["x"]
    zeros = np.zeros((s["batch"], s["hidden"]), dtype=x.dtype)
    h, c = [zeros, zeros], [zeros, zeros]
    for t in range(s["steps"]):
        inp = x[t]
        for layer in range(2):
            h[layer], c[layer] = lstm_cell(inp, h[layer], c[layer], p[f"Wx{layer}"],
                                           p[f"Wh{layer}"], p[f"b{layer}"])
            inp = h[layer]
    return {"h": h[1]}


def inception_resnet_block(p: Inputs, s: Size) -> Inputs:
    net = p["net"]
    tower0 = relu(conv2d(net, p["W0"]) + p["b0"])
    tower1 = relu(conv2d(net, p["W1a"]) + p["b1a"])
    tower1 = relu(conv2d(tower1, p["W1b"]) + p["b1b"])
    tower1 = relu(conv2d(tower1, p["W1c"]) + p["b1c"])
    mixed = np.concatenate([tower0, tower1], axis=3)
    up = conv2d(mixed, p["Wup"]) + p["bup"]
    return {"y": relu(net + RESIDUAL_SCALE * up)}


MODELS = {
    "gelu_chain": gelu_chain, "softmax_rows": softmax_rows, "layernorm": layernorm_rows,
    "mlp_train_step": mlp_train_step, "seed_regression_step": seed_regression_step,
    "cnn_train_step": cnn_train_step, "lstm_forward": lstm_forward,
    "inception_resnet_block": inception_resnet_block,
}


def reference(name: str, inputs: Inputs, size: Size, params: tuple[str, ...]) -> Inputs:
    """The oracle: the NumPy model in float64 on the float32 inputs.

    For a training step the result also holds every updated parameter.
    """
    p = {k: v.astype(np.float64) for k, v in inputs.items()}
    with np.errstate(over="ignore"):
        out = MODELS[name](p, size)
    out.update({k: p[k] for k in params})
    return out
