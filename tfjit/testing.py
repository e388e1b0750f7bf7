"""Gradient checking for users and tests: `tfjit.test.check_gradients(fn, inputs, order=1)`.

Symbolic gradients are compared with central finite differences computed in float64, along
random directions, through the inner-product identity <J^T u, v> = <u, J v>: one scalar per
direction, so a check costs a few function evaluations whatever the sizes. The symbolic side
runs in the inputs' own dtype, with tolerances chosen by that dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .autodiff.driver import gradients
from .compat.array_ops import placeholder
from .compat.math_ops import add_n, reduce_sum
from .compat.session import Session
from .ir.types import as_dtype, float64
from .trace.graph import Graph
from .trace.tensor import Tensor, convert_to_tensor

# Relative error allowed, and the magnitude below which an error counts as zero, per dtype.
RTOL = {"float64": 1e-6, "float32": 2e-3, "float16": 5e-2}
ATOL = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2}
_STEP = 1e-3  # finite-difference step; Richardson extrapolation makes the error O(step^4)


@dataclass(frozen=True)
class _Problem:
    """A function of some float inputs (the others held fixed) and the cotangents of its results."""

    fn: Callable[..., Any]
    arrays: list[np.ndarray]
    shapes: list[Any]
    cotangents: list[np.ndarray]

    @property
    def float_inputs(self) -> list[int]:
        return [i for i, a in enumerate(self.arrays) if a.dtype.kind == "f"]


def check_gradients(fn: Callable[..., Any], inputs: Sequence[Any], order: int = 1, *, directions: int = 2,
                    seed: int = 0, rtol: float | None = None, atol: float | None = None,
                    static_shapes: bool = True) -> float:
    """Check `fn`'s symbolic gradients (and second derivatives with `order=2`) at `inputs`.

    `fn` takes one Tensor per input and returns a Tensor or a list of them; it must work for
    any float dtype (the finite differences run it in float64). Integer and bool inputs are
    held fixed. `static_shapes=False` feeds inputs through placeholders whose dims are all
    unknown, exercising the gradient's run-time shape paths. Returns the largest relative
    error seen; raises AssertionError naming the input and direction beyond the tolerance.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in inputs]
    shapes = [a.shape if static_shapes else (None,) * a.ndim for a in arrays]
    cotangents = [rng.standard_normal(s) for s in _output_shapes(fn, arrays, shapes)]
    problem = _Problem(fn, arrays, shapes, cotangents)
    if order == 2:
        problem = _gradient_problem(problem, rng)
    return _check(problem, rng, directions, rtol, atol)


# -- building and running ----------------------------------------------------------------------------
def _build(fn: Callable[..., Any], arrays: list[np.ndarray], shapes: list[Any],
           dtype_of: Callable[[np.ndarray], Any]) -> tuple[Graph, list[Tensor], list[Tensor]]:
    graph = Graph()
    with graph.as_default():
        xs = [placeholder(dtype_of(a), shape, name=f"input_{i}") for i, (a, shape) in enumerate(zip(arrays, shapes))]
        ys = _float_results(fn(*xs))
    return graph, xs, ys


def _float_results(out: Any) -> list[Tensor]:
    listed = [convert_to_tensor(t) for t in (out if isinstance(out, (list, tuple)) else [out])]
    floats = [t for t in listed if t.dtype.is_floating]
    if not floats:
        raise ValueError("check_gradients: the function returned no floating-point tensor")
    return floats


def _in_float64(a: np.ndarray) -> Any:
    return float64 if a.dtype.kind == "f" else as_dtype(a.dtype)


def _output_shapes(fn: Callable[..., Any], arrays: list[np.ndarray], shapes: list[Any]) -> list[tuple[int, ...]]:
    graph, xs, ys = _build(fn, arrays, shapes, _in_float64)
    with Session(graph=graph) as sess:
        values = sess.run(ys, _feed(xs, arrays, np.float64))
    return [np.shape(v) for v in values]


def _feed(xs: list[Tensor], arrays: list[np.ndarray], float_dtype: Any) -> dict[Tensor, np.ndarray]:
    return {x: (a.astype(float_dtype) if a.dtype.kind == "f" and float_dtype is not None else a)
            for x, a in zip(xs, arrays)}


def _weighted(ys: list[Tensor], cotangents: list[np.ndarray]) -> Tensor:
    """<u, y>: the scalar whose gradient is J^T u."""
    terms = [reduce_sum(y * convert_to_tensor(u.astype(y.dtype.np_dtype))) for y, u in zip(ys, cotangents)]
    return add_n(terms) if len(terms) > 1 else terms[0]


# -- second order: the gradient's own inner product, checked like a first-order function -----
def _gradient_problem(problem: _Problem, rng: np.random.Generator) -> _Problem:
    """<J^T u, w> as a function of the inputs; its gradient holds the second derivatives."""
    weights = {i: rng.standard_normal(problem.arrays[i].shape) for i in problem.float_inputs}

    def first_order(*xs: Tensor) -> Tensor:
        ys = _float_results(problem.fn(*xs))
        wrt = [xs[i] for i in weights]
        grads = gradients(ys, wrt, grad_ys=[convert_to_tensor(u.astype(y.dtype.np_dtype))
                                            for y, u in zip(ys, problem.cotangents)],
                          unconnected_gradients="zero")
        return _weighted(grads, list(weights.values()))

    return _Problem(first_order, problem.arrays, problem.shapes, [np.ones(())])


# -- the comparison ------------------------------------------------------------------------------
def _check(problem: _Problem, rng: np.random.Generator, directions: int, rtol: float | None,
           atol: float | None) -> float:
    symbolic = _symbolic_gradients(problem)
    worst = 0.0
    with _Evaluator(problem) as numeric:
        for i in problem.float_inputs:
            array = problem.arrays[i]
            tol, floor = rtol or RTOL[array.dtype.name], atol or ATOL[array.dtype.name]
            for k in range(directions):
                v = rng.standard_normal(array.shape)
                sym = float(np.sum(symbolic[i].astype(np.float64) * v))
                num = numeric.directional(i, v)
                error = abs(sym - num) / max(abs(sym), abs(num), floor)
                if error > tol:
                    raise AssertionError(f"gradient check failed for input {i} ({array.dtype.name}"
                                         f"{list(array.shape)}) along direction {k}: symbolic {sym!r}, "
                                         f"finite differences {num!r}, relative error {error:.3g} > {tol:g}")
                worst = max(worst, error)
    return worst


def _symbolic_gradients(problem: _Problem) -> dict[int, np.ndarray]:
    graph, xs, ys = _build(problem.fn, problem.arrays, problem.shapes, lambda a: as_dtype(a.dtype))
    with graph.as_default():
        seeds = [convert_to_tensor(u.astype(y.dtype.np_dtype)) for y, u in zip(ys, problem.cotangents)]
        grads = gradients(ys, [xs[i] for i in problem.float_inputs], grad_ys=seeds, unconnected_gradients="zero")
    with Session(graph=graph) as sess:
        values = sess.run(grads, _feed(xs, problem.arrays, None))
    return dict(zip(problem.float_inputs, (np.asarray(v) for v in values)))


class _Evaluator:
    """<u, f(x)> in float64, for finite differences along one input; a context manager that
    holds one session for all evaluations."""

    def __init__(self, problem: _Problem):
        graph, self.xs, ys = _build(problem.fn, problem.arrays, problem.shapes, _in_float64)
        with graph.as_default():
            self.value = _weighted(ys, problem.cotangents)
        self.session = Session(graph=graph)
        self.arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in problem.arrays]

    def __enter__(self) -> "_Evaluator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.session.close()

    def at(self, i: int, delta: np.ndarray) -> float:
        arrays = list(self.arrays)
        arrays[i] = arrays[i] + delta
        return float(self.session.run(self.value, dict(zip(self.xs, arrays))))

    def directional(self, i: int, v: np.ndarray) -> float:
        """d/dt <u, f(x + t v)> at t = 0 by central differences with Richardson extrapolation."""
        def central(h: float) -> float:
            return (self.at(i, h * v) - self.at(i, -h * v)) / (2 * h)

        return (4 * central(_STEP / 2) - central(_STEP)) / 3
