"""Random tensors with TF1's seed semantics (graph seed + op seed)."""
from __future__ import annotations

import os
from typing import Any

from ..ir.types import DType, as_dtype, float32, float64
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor
from .math_ops import cast, constant_value, emit1, floor

DEFAULT_GRAPH_SEED = 87654321


def set_random_seed(seed: int) -> None:
    get_default_graph().seed = int(seed)


def get_seed(op_seed: int | None) -> tuple[int, int]:
    """TF's rule: both seeds unset means a fresh random stream; otherwise deterministic."""
    graph = get_default_graph()
    if graph.seed is not None:
        return graph.seed, graph.next_seed() if op_seed is None else int(op_seed)
    if op_seed is not None:
        return DEFAULT_GRAPH_SEED, int(op_seed)
    # TF draws a nondeterministic seed; tfjit draws it while building, so one graph is one program.
    return int.from_bytes(os.urandom(4), "little") | 1, int.from_bytes(os.urandom(4), "little")


def _static_shape(shape: Any) -> tuple[int, ...]:
    value = constant_value(shape) if isinstance(shape, Tensor) else shape
    if value is None:
        raise ValueError("random ops need a shape known while the graph is built")
    if hasattr(value, "as_list"):
        value = value.as_list()
    dims = tuple(int(d) for d in (value.tolist() if hasattr(value, "tolist") else value))
    if any(d < 0 for d in dims):
        raise ValueError(f"random ops need a fully known shape, got {list(dims)}")
    return dims


def _random(op: str, shape: Any, dtype: Any, seed: int | None, name: str | None, **params: float) -> Tensor:
    s1, s2 = get_seed(seed)
    attrs = {"shape": _static_shape(shape), "dtype": as_dtype(dtype), "seed": s1, "seed2": s2}
    attrs.update({k: float(v) for k, v in params.items()})
    return emit1(op, [], attrs, name)


def random_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = float32,
                  seed: int | None = None, name: str | None = None) -> Tensor:
    return _random("random_normal", shape, dtype, seed, name or "random_normal", mean=mean, stddev=stddev)


def truncated_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = float32,
                     seed: int | None = None, name: str | None = None) -> Tensor:
    return _random("truncated_normal", shape, dtype, seed, name or "truncated_normal", mean=mean, stddev=stddev)


def random_uniform(shape: Any, minval: float = 0, maxval: float | None = None, dtype: Any = float32,
                   seed: int | None = None, name: str | None = None) -> Tensor:
    """Uniform on [minval, maxval); integer dtypes need `maxval`, as in TF."""
    dt = as_dtype(dtype)
    if dt.is_integer:
        return _random_integers(shape, minval, maxval, dt, seed, name or "random_uniform")
    return _random("random_uniform", shape, dt, seed, name or "random_uniform", minval=minval,
                   maxval=1.0 if maxval is None else maxval)


def _random_integers(shape: Any, minval: float, maxval: float | None, dtype: DType, seed: int | None,
                     name: str) -> Tensor:
    """floor of a float64 uniform draw on [minval, maxval): every integer equally likely."""
    if maxval is None:
        raise ValueError(f"Must specify maxval for integer dtype {dtype!r}")
    if not minval < maxval:
        raise ValueError(f"Need minval < maxval, got {minval} >= {maxval}")
    draws = _random("random_uniform", shape, float64, seed, f"{name}/float", minval=minval, maxval=maxval)
    return cast(floor(draws), dtype, name=name)
