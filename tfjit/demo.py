"""`make demo`: the lecture's model with `import tfjit as tf`, its IR, and its loss."""
from __future__ import annotations

import numpy as np

import tfjit as tf


def build_lecture_model() -> dict[str, object]:
    """The lecture's regression model: y = sigmoid(x @ W + b), loss = mean((y - d)^2)."""
    x = tf.placeholder(tf.float32, shape=[None, 256], name="x")
    d = tf.placeholder(tf.float32, shape=[None, 64], name="d")
    W = tf.Variable(tf.random_normal([256, 64], stddev=0.1, seed=1), name="W")
    b = tf.Variable(tf.zeros([64]), name="b")
    y = tf.nn.sigmoid(tf.matmul(x, W) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    return {"x": x, "d": d, "W": W, "b": b, "y": y, "loss": loss}


def main() -> None:
    tf.reset_default_graph()
    m = build_lecture_model()
    rng = np.random.default_rng(0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for batch in (32, 128, 1024):
            xv = rng.standard_normal((batch, 256)).astype(np.float32)
            dv = rng.random((batch, 64)).astype(np.float32)
            loss = sess.run(m["loss"], feed_dict={m["x"]: xv, m["d"]: dv})
            print(f"batch {batch:5d}: loss = {loss:.6f}")
        print("\nIR of the loss for a batch of 32 (tfjit.dump_ir):")
        print(tf.dump_ir(m["loss"], feed_dict={m["x"]: xv[:32], m["d"]: dv[:32]}))


if __name__ == "__main__":
    main()
