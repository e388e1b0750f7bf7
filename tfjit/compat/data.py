"""`tf.data` (TF 1.x): datasets as host-side pipelines, read through graph iterators.

A Dataset is a recipe of Python stages over NumPy elements. An iterator puts two stateful
ops into the graph (`iterator_init`, `iterator_get_next`, see `tfjit/ops/queue.py`); the
session runs the recipe when the iterator is initialised and pulls one element per
`get_next()`. Tensors a dataset is built from that are not constants (placeholders) become
inputs of the initializer, so `make_initializable_iterator` can be fed. `map` functions are
traced once into an IR graph, like `@tfjit.function`, and run on each element.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator as Stream
from typing import Any, Callable

import numpy as np

from .. import config
from ..errors import InvalidArgumentError
from ..ir.graph import Graph as IRGraph
from ..ir.graph import Node, Value
from ..ir.types import TensorType, as_dtype, int64
from ..ops.queue import register_pipeline
from ..runtime.results import owned
from ..runtime.state import RuntimeState
from ..trace.graph import Graph, get_default_graph
from ..trace.source import user_location
from ..trace.tensor import Operation, Tensor, TensorShape, _as_array, convert_to_tensor
from .math_ops import constant_value, emit
from .random_ops import get_seed

__all__ = ["Dataset", "Iterator", "make_initializable_iterator", "make_one_shot_iterator"]

Element = tuple[np.ndarray, ...]  # one element, flattened


# -- nested structures (tuples and dicts; a list is one tensor, as in TF) -----------------------
def _flatten(structure: Any) -> list[Any]:
    if isinstance(structure, tuple):
        return [leaf for item in structure for leaf in _flatten(item)]
    if isinstance(structure, dict):
        return [leaf for k in sorted(structure) for leaf in _flatten(structure[k])]
    return [structure]


def _pack(structure: Any, leaves: Stream[Any]) -> Any:
    if isinstance(structure, tuple):
        items = [_pack(item, leaves) for item in structure]
        return type(structure)(*items) if hasattr(structure, "_fields") else tuple(items)
    if isinstance(structure, dict):
        return {k: _pack(structure[k], leaves) for k in sorted(structure)}
    return next(leaves)


def _map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    return _pack(structure, iter([fn(leaf) for leaf in _flatten(structure)]))


class _Run:
    """One initialisation of an iterator: the captured tensors' values and each shuffle's stream."""

    def __init__(self, values: dict[Value, np.ndarray], state: RuntimeState):
        self.values = values
        self.state = state
        self.generators: dict[int, np.random.Generator] = {}

    def generator(self, stage: "Dataset", seed: tuple[int, int]) -> np.random.Generator:
        if id(stage) not in self.generators:
            self.generators[id(stage)] = _philox(seed)
        return self.generators[id(stage)]


def _philox(seed: tuple[int, int]) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=(seed[0] & 0xFFFFFFFF) << 32 | (seed[1] & 0xFFFFFFFF)))


# -- datasets -------------------------------------------------------------------------------
class Dataset:
    """A TF 1.x `tf.data.Dataset`: `structure` holds one TensorType per component."""

    def __init__(self, structure: Any, captured: tuple[Tensor, ...] = ()):
        self._structure = structure
        self._captured = captured

    # -- element spec ---------------------------------------------------------------------
    @property
    def output_types(self) -> Any:
        return _map_structure(lambda t: t.dtype, self._structure)

    @property
    def output_shapes(self) -> Any:
        return _map_structure(lambda t: TensorShape(t.shape), self._structure)

    @property
    def output_classes(self) -> Any:
        return _map_structure(lambda t: Tensor, self._structure)

    @property
    def _types(self) -> tuple[TensorType, ...]:
        return tuple(_flatten(self._structure))

    def _elements(self, run: _Run) -> Stream[Element]:
        raise NotImplementedError(f"{type(self).__name__} does not produce elements")

    def start(self, values: list[np.ndarray], state: RuntimeState) -> Stream[Element]:
        """The elements of one iterator initialisation (called by the `iterator_*` ops)."""
        return self._elements(_Run(dict(zip((t.value for t in self._captured), values)), state))

    # -- sources --------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors: Any) -> "Dataset":
        """Elements are the slices of every component along its first dimension."""
        return _Slices(tensors)

    @staticmethod
    def from_tensors(tensors: Any) -> "Dataset":
        """One element: the whole of `tensors`."""
        return _Tensors(tensors)

    @staticmethod
    def range(*args: int, output_type: Any = int64) -> "Dataset":
        """`range(stop)`, `range(start, stop)`, `range(start, stop, step)` as int64 scalars."""
        return _Range(range(*args), as_dtype(output_type))

    @staticmethod
    def zip(datasets: Any) -> "Dataset":
        return _Zip(datasets)

    # -- transformations ------------------------------------------------------------------
    def map(self, map_func: Callable[..., Any], num_parallel_calls: Any = None) -> "Dataset":
        return _Map(self, map_func)

    def filter(self, predicate: Callable[..., Any]) -> "Dataset":
        return _Filter(self, predicate)

    def batch(self, batch_size: int, drop_remainder: bool = False) -> "Dataset":
        return _Batch(self, int(batch_size), bool(drop_remainder))

    def shuffle(self, buffer_size: int, seed: int | None = None, reshuffle_each_iteration: bool = True) -> "Dataset":
        return _Shuffle(self, int(buffer_size), get_seed(seed), reshuffle_each_iteration)

    def repeat(self, count: int | None = None) -> "Dataset":
        return _Repeat(self, None if count is None or count < 0 else int(count))

    def take(self, count: int) -> "Dataset":
        return _Slice(self, 0, None if count < 0 else int(count))

    def skip(self, count: int) -> "Dataset":
        return _Slice(self, int(count), None) if count >= 0 else _Slice(self, 0, 0)  # -1 skips everything

    def concatenate(self, dataset: "Dataset") -> "Dataset":
        return _Concatenate(self, dataset)

    def prefetch(self, buffer_size: Any) -> "Dataset":
        """A no-op: elements are made when get_next runs, so there is nothing to overlap."""
        return self

    # -- iterators ------------------------------------------------------------------------
    def make_one_shot_iterator(self) -> "Iterator":
        if self._captured:
            names = ", ".join(t.name for t in self._captured)
            raise ValueError(f"Failed to create a one-shot iterator for a dataset that captures the "
                             f"non-constant tensors {names}; use make_initializable_iterator() and feed them "
                             "when running its initializer.")
        return Iterator(self, one_shot=True)

    def make_initializable_iterator(self, shared_name: str | None = None) -> "Iterator":
        return Iterator(self, one_shot=False)


def _as_component(value: Any) -> tuple[Tensor | None, np.ndarray | None]:
    """A component as (captured tensor, None) or (None, its constant value)."""
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        tensor = convert_to_tensor(value)
        const = constant_value(tensor)
        return (None, np.asarray(const)) if const is not None else (tensor, None)
    return None, _as_array(value, None, None)  # Python values take TF's dtypes (int32, float32)


class _Source(Dataset):
    """Components given as constants or captured (fed) tensors."""

    def __init__(self, tensors: Any, sliced: bool):
        parts = [_as_component(v) for v in _flatten(tensors)]
        self._parts = parts
        types = [_component_type(t, a, sliced) for t, a in parts]
        super().__init__(_pack(tensors, iter(types)), tuple(t for t, _ in parts if t is not None))

    def _arrays(self, run: _Run) -> list[np.ndarray]:
        return [a if t is None else run.values[t.value] for t, a in self._parts]


def _component_type(tensor: Tensor | None, array: np.ndarray | None, sliced: bool) -> TensorType:
    if tensor is not None:
        t = tensor.value.type
        shape = t.shape
    else:
        t = TensorType(as_dtype(array.dtype), array.shape)
        shape = tuple(array.shape)
    if not sliced:
        return TensorType(t.dtype, shape)
    if shape is not None and len(shape) == 0:
        raise ValueError(f"from_tensor_slices needs components of rank >= 1, got {t}")
    return TensorType(t.dtype, None if shape is None else shape[1:])


class _Slices(_Source):
    def __init__(self, tensors: Any):
        super().__init__(tensors, sliced=True)
        sizes = {a.shape[0] for t, a in self._parts if a is not None}
        if len(sizes) > 1:
            raise ValueError(f"from_tensor_slices needs components with one first dimension, got {sorted(sizes)}")

    def _elements(self, run: _Run) -> Stream[Element]:
        arrays = self._arrays(run)
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) != 1:
            raise InvalidArgumentError(message=f"from_tensor_slices: components have different first "
                                               f"dimensions {sorted(sizes)}")
        for i in range(sizes.pop()):
            yield tuple(a[i] for a in arrays)


class _Tensors(_Source):
    def __init__(self, tensors: Any):
        super().__init__(tensors, sliced=False)

    def _elements(self, run: _Run) -> Stream[Element]:
        yield tuple(self._arrays(run))


class _Range(Dataset):
    def __init__(self, r: range, dtype: Any):
        super().__init__(TensorType(dtype, ()))
        self._range = r

    def _elements(self, run: _Run) -> Stream[Element]:
        dtype = self._types[0].dtype.np_dtype
        for i in self._range:
            yield (np.asarray(i, dtype=dtype),)


class _Unary(Dataset):
    def __init__(self, parent: Dataset, structure: Any = None):
        super().__init__(parent._structure if structure is None else structure, parent._captured)
        self._parent = parent


class _Zip(Dataset):
    def __init__(self, datasets: Any):
        parts = _flatten_datasets(datasets)
        structure = _pack(datasets, iter([d._structure for d in parts]))
        super().__init__(structure, tuple(t for d in parts for t in d._captured))
        self._parts = parts

    def _elements(self, run: _Run) -> Stream[Element]:
        for elements in zip(*(d._elements(run) for d in self._parts)):
            yield tuple(a for e in elements for a in e)


def _flatten_datasets(datasets: Any) -> list[Dataset]:
    parts = _flatten(datasets)
    if not all(isinstance(d, Dataset) for d in parts):
        raise TypeError("Dataset.zip takes a (nested) tuple or dict of Datasets")
    return parts


class _Concatenate(Dataset):
    def __init__(self, first: Dataset, second: Dataset):
        if [t.dtype for t in first._types] != [t.dtype for t in second._types]:
            raise TypeError(f"Datasets to concatenate have different element types {first._types} and {second._types}")
        super().__init__(first._structure, first._captured + second._captured)
        self._pair = (first, second)

    def _elements(self, run: _Run) -> Stream[Element]:
        for d in self._pair:
            yield from d._elements(run)


class _Traced:
    """A map/filter function traced once into an IR graph over one element's components."""

    def __init__(self, fn: Callable[..., Any], structure: Any):
        graph = Graph()
        loc = user_location()
        types = _flatten(structure)
        params = [graph.add_node(Node("param", (), (("index", i),), (t,), loc=loc, name=f"arg{i}")).outputs[0]
                  for i, t in enumerate(types)]
        args = _pack(structure, iter(params))
        with graph.as_default():
            out = fn(*args) if isinstance(args, tuple) and not hasattr(args, "_fields") else fn(args)
            out = tuple(out) if isinstance(out, list) else out
            self.structure = _map_structure(lambda x: convert_to_tensor(x).value.type, out)
            leaves = [convert_to_tensor(x).value for x in _flatten(out)]
        body = [n for n in graph.nodes if n.op != "param"]
        name = re.sub(r"\W", "_", getattr(fn, "__name__", "")).strip("_") or "dataset_fn"  # '<lambda>' -> 'lambda'
        self.graph = IRGraph(name, [p.value for p in params], body, leaves)
        self._executable: Any = None

    def __call__(self, element: Element, state: RuntimeState) -> Element:
        if self._executable is None:
            self._executable = config.compile_graph(config.optimize(self.graph))
        return tuple(owned(self._executable.run(list(element), state), element))  # never a view of `element`


class _Map(_Unary):
    def __init__(self, parent: Dataset, fn: Callable[..., Any]):
        self._fn = _Traced(fn, parent._structure)
        super().__init__(parent, self._fn.structure)

    def _elements(self, run: _Run) -> Stream[Element]:
        for element in self._parent._elements(run):
            yield self._fn(element, run.state)


class _Filter(_Unary):
    def __init__(self, parent: Dataset, predicate: Callable[..., Any]):
        super().__init__(parent)
        self._predicate = _Traced(predicate, parent._structure)
        t = self._predicate.structure
        if not isinstance(t, TensorType) or t.dtype.name != "bool" or t.shape not in ((), None):
            raise ValueError(f"`predicate` must return a scalar boolean tensor, got {t}")

    def _elements(self, run: _Run) -> Stream[Element]:
        for element in self._parent._elements(run):
            if bool(self._predicate(element, run.state)[0]):
                yield element


class _Batch(_Unary):
    def __init__(self, parent: Dataset, batch_size: int, drop_remainder: bool):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be greater than zero, got {batch_size}")
        lead = batch_size if drop_remainder else None
        structure = _map_structure(lambda t: TensorType(t.dtype, None if t.shape is None else (lead, *t.shape)),
                                   parent._structure)
        super().__init__(parent, structure)
        self._size, self._drop = batch_size, drop_remainder

    def _elements(self, run: _Run) -> Stream[Element]:
        elements = self._parent._elements(run)
        while True:
            chunk = list(itertools.islice(elements, self._size))
            if not chunk or (self._drop and len(chunk) < self._size):
                return
            yield tuple(np.stack(parts) for parts in zip(*chunk))


class _Shuffle(_Unary):
    """TF's buffered shuffle: fill `buffer_size` elements, emit a random one, refill its slot."""

    def __init__(self, parent: Dataset, buffer_size: int, seed: tuple[int, int], reshuffle: bool):
        if buffer_size <= 0:
            raise ValueError(f"buffer_size must be greater than zero, got {buffer_size}")
        super().__init__(parent)
        self._buffer_size, self._seed, self._reshuffle = buffer_size, seed, reshuffle

    def _elements(self, run: _Run) -> Stream[Element]:
        rng = run.generator(self, self._seed) if self._reshuffle else _philox(self._seed)
        buffer: list[Element] = []
        for element in self._parent._elements(run):
            buffer.append(element)
            if len(buffer) == self._buffer_size:
                yield _pop_random(buffer, rng)
        while buffer:
            yield _pop_random(buffer, rng)


def _pop_random(buffer: list[Element], rng: np.random.Generator) -> Element:
    i = int(rng.integers(len(buffer)))
    buffer[i], buffer[-1] = buffer[-1], buffer[i]
    return buffer.pop()


class _Repeat(_Unary):
    def __init__(self, parent: Dataset, count: int | None):
        super().__init__(parent)
        self._count = count

    def _elements(self, run: _Run) -> Stream[Element]:
        epochs = itertools.count() if self._count is None else range(self._count)
        for _ in epochs:
            empty = True
            for element in self._parent._elements(run):
                empty = False
                yield element
            if empty:  # an empty dataset repeated forever is still empty
                return


class _Slice(_Unary):
    def __init__(self, parent: Dataset, start: int, stop: int | None):
        super().__init__(parent)
        self._start, self._stop = start, stop

    def _elements(self, run: _Run) -> Stream[Element]:
        return itertools.islice(self._parent._elements(run), self._start, self._stop)


# -- iterators ------------------------------------------------------------------------------
class Iterator:
    """`tf.data.Iterator`: `get_next()` builds an op that pulls the next element each run."""

    def __init__(self, dataset: Dataset, one_shot: bool):
        graph = get_default_graph()
        self._graph = graph
        self._dataset = dataset
        self._one_shot = one_shot
        self._resource = graph.unique_name("OneShotIterator" if one_shot else "Iterator")
        self._pipeline = register_pipeline(dataset, graph)
        self._initializer: Operation | None = None
        if not one_shot:
            attrs = {"resource": self._resource, "pipeline": self._pipeline}
            with graph.as_default():
                self._initializer = emit("iterator_init", list(dataset._captured), attrs,
                                         name=self._resource + "/MakeIterator")

    @property
    def initializer(self) -> Operation:
        if self._initializer is None:
            raise ValueError("Iterator does not have an initializer (a one-shot iterator initialises itself).")
        return self._initializer

    @property
    def output_types(self) -> Any:
        return self._dataset.output_types

    @property
    def output_shapes(self) -> Any:
        return self._dataset.output_shapes

    def get_next(self, name: str | None = None) -> Any:
        """The next element's tensors; running past the end raises tf.errors.OutOfRangeError."""
        attrs = {"resource": self._resource, "pipeline": self._pipeline,
                 "components": self._dataset._types, "one_shot": self._one_shot}
        with self._graph.as_default():
            op = emit("iterator_get_next", [], attrs, name=name or "IteratorGetNext")
        return _pack(self._dataset._structure, iter(op.outputs))


def make_one_shot_iterator(dataset: Dataset) -> Iterator:
    return dataset.make_one_shot_iterator()


def make_initializable_iterator(dataset: Dataset, shared_name: str | None = None) -> Iterator:
    return dataset.make_initializable_iterator(shared_name)
