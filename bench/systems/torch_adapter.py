"""PyTorch eager and `torch.compile`, written the way PyTorch users write it
(torch.nn.functional, autograd, torch.optim.SGD).

Images stay NHWC in memory: the NCHW tensors torch's ops expect are permuted *views*
(channels_last), and conv kernels are laid out [F, C, kh, kw] once at set-up, so torch
does no layout work the other systems skip. `compile=True` compiles the model (and
through AOTAutograd its backward); the optimiser step stays eager, as users run it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..workloads import FORGET_BIAS, LN_EPS, LR, RESIDUAL_SCALE, Inputs, Size, Workload
from . import Prepared

VERSION = torch.__version__
torch.backends.cuda.matmul.allow_tf32 = False      # float32 means float32
torch.backends.cudnn.allow_tf32 = False

T = dict[str, Any]


def gelu_chain(t: T, s: Size) -> T:
    return {"y": F.gelu(t["x"], approximate="tanh")}


def softmax_rows(t: T, s: Size) -> T:
    return {"y": torch.softmax(t["x"], dim=-1)}


def layernorm(t: T, s: Size) -> T:
    return {"y": F.layer_norm(t["x"], (s["cols"],), t["gamma"], t["beta"], LN_EPS)}


def mlp_loss(t: T, s: Size) -> torch.Tensor:
    h = F.relu(t["x"] @ t["W1"] + t["b1"])
    h = F.relu(h @ t["W2"] + t["b2"])
    return F.cross_entropy(h @ t["W3"] + t["b3"], t["labels"])


def regression_loss(t: T, s: Size) -> torch.Tensor:
    y = torch.sigmoid(t["x"] @ t["W"] + t["b"])
    return torch.mean(torch.square(y - t["d"]))


def conv(x: torch.Tensor, k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, k, b, padding="same")


def cnn_loss(t: T, s: Size) -> torch.Tensor:
    net = F.relu(conv(t["x"], t["K1"], t["c1"]))
    net = F.max_pool2d(F.relu(conv(net, t["K2"], t["c2"])), 2)
    net = F.relu(conv(net, t["K3"], t["c3"]))
    net = F.max_pool2d(F.relu(conv(net, t["K4"], t["c4"])), 2)
    flat = net.permute(0, 2, 3, 1).reshape(net.shape[0], -1)   # NHWC order, as TF
    return F.cross_entropy(flat @ t["Wd"] + t["bd"], t["labels"])


def lstm_forward(t: T, s: Size) -> T:
    zeros = t["x"].new_zeros((s["batch"], s["hidden"]))
    h, c = [zeros, zeros], [zeros, zeros]
    for step in range(s["steps"]):
        inp = t["x"][step]
        for layer in range(2):
            gates = inp @ t[f"Wx{layer}"] + h[layer] @ t[f"Wh{layer}"] + t[f"b{layer}"]
            i, j, f, o = gates.chunk(4, dim=1)
            c[layer] = (c[layer] * torch.sigmoid(f + FORGET_BIAS)
                        + torch.sigmoid(i) * torch.tanh(j))
            h[layer] = torch.tanh(c[layer]) * torch.sigmoid(o)
            inp = h[layer]
    return {"h": h[1]}


def inception_resnet_block(t: T, s: Size) -> T:
    net = t["net"]
    tower0 = F.relu(conv(net, t["W0"], t["b0"]))
    tower1 = F.relu(conv(net, t["W1a"], t["b1a"]))
    tower1 = F.relu(conv(tower1, t["W1b"], t["b1b"]))
    tower1 = F.relu(conv(tower1, t["W1c"], t["b1c"]))
    up = conv(torch.cat([tower0, tower1], dim=1), t["Wup"], t["bup"])
    return {"y": F.relu(net + RESIDUAL_SCALE * up)}


FORWARD: dict[str, Callable[[T, Size], T]] = {
    "gelu_chain": gelu_chain, "softmax_rows": softmax_rows, "layernorm": layernorm,
    "lstm_forward": lstm_forward, "inception_resnet_block": inception_resnet_block,
}
TRAIN_LOSS: dict[str, Callable[[T, Size], torch.Tensor]] = {
    "mlp_train_step": mlp_loss, "seed_regression_step": regression_loss,
    "cnn_train_step": cnn_loss,
}
BUILDERS = {**FORWARD, **TRAIN_LOSS}


# --- layouts: NHWC images and HWIO kernels in, torch's NCHW / OIHW views out ------------

def to_torch(a: np.ndarray, device: torch.device, image: bool) -> torch.Tensor:
    t = torch.from_numpy(a).to(device)
    if a.ndim == 4 and image:
        return t.permute(0, 3, 1, 2)                 # NHWC memory, NCHW view
    if a.ndim == 4:
        return t.permute(3, 2, 0, 1).contiguous()    # HWIO -> OIHW
    return t


def to_numpy(t: torch.Tensor, image: bool) -> np.ndarray:
    t = t.detach()
    if t.ndim == 4:
        t = t.permute(0, 2, 3, 1) if image else t.permute(2, 3, 1, 0)
    return t.cpu().numpy()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(w: Workload, t: T, size: Size, device: torch.device, compile: bool) -> Prepared:
    model = FORWARD[w.name]
    fn = torch.compile(model) if compile else model

    def step() -> T:
        with torch.inference_mode():
            out = fn(t, size)
        _sync(device)
        return out
    return Prepared(step, lambda out: {k: to_numpy(v, True) for k, v in out.items()})


def _train(w: Workload, t: T, params: T, size: Size, device: torch.device,
           compile: bool) -> Prepared:
    loss_fn = TRAIN_LOSS[w.name]
    fn = torch.compile(loss_fn) if compile else loss_fn
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.SGD(list(params.values()), lr=LR)
    everything = {**t, **params}

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = fn(everything, size)
        loss.backward()
        opt.step()
        _sync(device)
        return loss

    def fetch(loss: torch.Tensor) -> dict[str, np.ndarray]:
        return {"loss": to_numpy(loss, False),
                **{k: to_numpy(v, False) for k, v in params.items()}}
    return Prepared(step, fetch)


def prepare(w: Workload, inputs: Inputs, size: Size, device: str, compile: bool) -> Prepared:
    if device == "gpu" and not torch.cuda.is_available():
        raise NotImplementedError("this PyTorch build sees no CUDA device")
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    data = {k: to_torch(inputs[k], dev, image=True) for k in w.data}
    weights = {k: to_torch(inputs[k], dev, image=False) for k in w.weights(inputs)}
    if w.kind == "train":
        return _train(w, data, weights, size, dev, compile)
    return _forward(w, {**data, **weights}, size, dev, compile)
