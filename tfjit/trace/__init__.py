"""Tracing: the TF1 graph builder, symbolic tensors and @tfjit.function."""
