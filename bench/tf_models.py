"""The workloads in TensorFlow's API, written once for every TF-like namespace.

The same source runs on `import tfjit as tf` (Session and @tfjit.function styles) and on
TensorFlow itself (tf.function with and without XLA), so those systems are compared on
literally the same model code. Each function takes the namespace `tf`, a dict of
tensors (inputs and parameters by name) and the size; forward models return a dict of
tensors, training models return the scalar loss (the adapter adds the update).
"""
from __future__ import annotations

from typing import Any, Callable

from .numpy_models import GELU_C
from .workloads import FORGET_BIAS, LN_EPS, RESIDUAL_SCALE, Size

T = dict[str, Any]


def xent(tf: Any, labels: Any, logits: Any) -> Any:
    """Mean softmax cross-entropy; TF1 names it `_v2`, TF2 dropped the suffix."""
    fn = getattr(tf.nn, "softmax_cross_entropy_with_logits_v2", None)
    fn = fn or tf.nn.softmax_cross_entropy_with_logits
    return tf.reduce_mean(fn(labels=labels, logits=logits))


def gelu_chain(tf: Any, t: T, s: Size) -> T:
    x = t["x"]
    return {"y": 0.5 * x * (1.0 + tf.tanh(GELU_C * (x + 0.044715 * (x * x * x))))}


def softmax_rows(tf: Any, t: T, s: Size) -> T:
    return {"y": tf.nn.softmax(t["x"])}


def layernorm(tf: Any, t: T, s: Size) -> T:
    mean, var = tf.nn.moments(t["x"], axes=[1], keepdims=True)
    return {"y": (t["x"] - mean) / tf.sqrt(var + LN_EPS) * t["gamma"] + t["beta"]}


def dense(tf: Any, x: Any, w: Any, b: Any) -> Any:
    return tf.matmul(x, w) + b


def mlp_loss(tf: Any, t: T, s: Size) -> Any:
    h = tf.nn.relu(dense(tf, t["x"], t["W1"], t["b1"]))
    h = tf.nn.relu(dense(tf, h, t["W2"], t["b2"]))
    return xent(tf, t["labels"], dense(tf, h, t["W3"], t["b3"]))


def regression_loss(tf: Any, t: T, s: Size) -> Any:
    y = tf.nn.sigmoid(tf.matmul(t["x"], t["W"]) + t["b"])
    return tf.reduce_mean(tf.square(y - t["d"]))


def conv(tf: Any, x: Any, k: Any, b: Any) -> Any:
    return tf.nn.conv2d(x, k, strides=[1, 1, 1, 1], padding="SAME") + b


def pool(tf: Any, x: Any) -> Any:
    return tf.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")


def cnn_loss(tf: Any, t: T, s: Size) -> Any:
    net = tf.nn.relu(conv(tf, t["x"], t["K1"], t["c1"]))
    net = pool(tf, tf.nn.relu(conv(tf, net, t["K2"], t["c2"])))
    net = tf.nn.relu(conv(tf, net, t["K3"], t["c3"]))
    net = pool(tf, tf.nn.relu(conv(tf, net, t["K4"], t["c4"])))
    flat = tf.reshape(net, [s["batch"], -1])
    return xent(tf, t["labels"], dense(tf, flat, t["Wd"], t["bd"]))


def lstm_cell(tf: Any, x: Any, h: Any, c: Any, wx: Any, wh: Any, b: Any) -> tuple[Any, Any]:
    """BasicLSTMCell's math: gates i, j, f, o; forget bias 1."""
    i, j, f, o = tf.split(tf.matmul(x, wx) + tf.matmul(h, wh) + b, 4, axis=1)
    c = c * tf.nn.sigmoid(f + FORGET_BIAS) + tf.nn.sigmoid(i) * tf.tanh(j)
    return tf.tanh(c) * tf.nn.sigmoid(o), c


def lstm_forward(tf: Any, t: T, s: Size) -> T:
    zeros = tf.zeros([s["batch"], s["hidden"]], dtype=tf.float32)
    h, c = [zeros, zeros], [zeros, zeros]
    for inp in tf.unstack(t["x"], axis=0):    # TF1's static-RNN idiom
        for layer in range(2):
            h[layer], c[layer] = lstm_cell(tf, inp, h[layer], c[layer], t[f"Wx{layer}"],
                                           t[f"Wh{layer}"], t[f"b{layer}"])
            inp = h[layer]
    return {"h": h[1]}


def inception_resnet_block(tf: Any, t: T, s: Size) -> T:
    net = t["net"]
    tower0 = tf.nn.relu(conv(tf, net, t["W0"], t["b0"]))
    tower1 = tf.nn.relu(conv(tf, net, t["W1a"], t["b1a"]))
    tower1 = tf.nn.relu(conv(tf, tower1, t["W1b"], t["b1b"]))
    tower1 = tf.nn.relu(conv(tf, tower1, t["W1c"], t["b1c"]))
    mixed = tf.concat([tower0, tower1], 3)
    up = conv(tf, mixed, t["Wup"], t["bup"])
    return {"y": tf.nn.relu(net + RESIDUAL_SCALE * up)}


FORWARD: dict[str, Callable[[Any, T, Size], T]] = {
    "gelu_chain": gelu_chain, "softmax_rows": softmax_rows, "layernorm": layernorm,
    "lstm_forward": lstm_forward, "inception_resnet_block": inception_resnet_block,
}
TRAIN_LOSS: dict[str, Callable[[Any, T, Size], Any]] = {
    "mlp_train_step": mlp_loss, "seed_regression_step": regression_loss,
    "cnn_train_step": cnn_loss,
}
