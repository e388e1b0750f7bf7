"""Backends turn a graph into an executable; they know nothing of tracing or the TF1 API."""
