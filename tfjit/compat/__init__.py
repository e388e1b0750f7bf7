"""The TF1 API surface that `import tfjit as tf` exposes."""
