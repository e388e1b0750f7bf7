"""`make demo`: the lecture's model with `import tfjit as tf`, trained, and its IR."""
from __future__ import annotations

import numpy as np

import tfjit as tf
from tfjit.ir import print_graph


def build_lecture_model() -> dict[str, object]:
    """The lecture's regression model: y = sigmoid(x @ W + b), loss = mean((y - d)^2)."""
    x = tf.placeholder(tf.float32, shape=[None, 256], name="x")
    d = tf.placeholder(tf.float32, shape=[None, 64], name="d")
    W = tf.Variable(tf.random_normal([256, 64], stddev=0.1, seed=1), name="W")
    b = tf.Variable(tf.zeros([64]), name="b")
    y = tf.nn.sigmoid(tf.matmul(x, W) + b)
    loss = tf.reduce_mean(tf.square(y - d))
    return {"x": x, "d": d, "W": W, "b": b, "y": y, "loss": loss}


def main(steps: int = 300, learning_rate: float = 5.0) -> None:
    """Train the lecture's model with `GradientDescentOptimizer(...).minimize(loss)` on data from
    a fixed "teacher" network, printing the falling loss. (The lecture's rate of 0.01 moves a
    mean over 64 sigmoid outputs too slowly to see in a few hundred steps.)"""
    tf.reset_default_graph()
    m = build_lecture_model()
    step = tf.train.GradientDescentOptimizer(learning_rate).minimize(m["loss"])
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((256, 64)).astype(np.float32) / 16
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(steps + 1):
            xv = rng.standard_normal((64, 256)).astype(np.float32)
            dv = 1 / (1 + np.exp(-xv @ teacher))
            feed = {m["x"]: xv, m["d"]: dv}
            if i % 50 == 0:
                print(f"step {i:4d}: loss = {sess.run(m['loss'], feed_dict=feed):.6f}")
            if i < steps:
                sess.run(step, feed_dict=feed)
        feed = {m["x"]: xv[:32], m["d"]: dv[:32]}
        print("\nIR of one training step as traced (tfjit.dump_ir):")
        print(tf.dump_ir([m["loss"], step], feed_dict=feed))
        print("\nThe same step after the passes (fused kernels, placed, memory planned):")
        print(print_graph(tf.config.optimize(tf.program_for([m["loss"], step], feed_dict=feed))))


if __name__ == "__main__":
    main()
