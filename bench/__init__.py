"""tfjit's benchmark harness: framework-neutral workloads, one adapter per system.

Run it with `tfjit bench` (or `python -m tfjit.bench.cli`); see bench/README.md.
Nothing here imports tfjit or a peer framework at import time: each system is
imported only inside the worker process that measures it.
"""
