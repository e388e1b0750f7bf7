"""`tf.summary`: summaries as byte tensors, and `FileWriter` event files TensorBoard reads.

tfjit has no string dtype, so a summary op yields what TF's string scalar would hold: the
bytes of a serialized `Summary` protocol buffer, as a `uint8[?]` vector. Summary ops are
ordinary registry ops (no state, no gradient), so passes and backends treat them like any
other op, `sess.run(merged)` returns a NumPy uint8 array, and `FileWriter.add_summary`
accepts that array (or `bytes`, or a `Summary` proto). `merge` concatenates its inputs:
concatenated serialized messages are the serialization of the merged message (repeated
`value`s append); like TF it first checks that no tag repeats.

`FileWriter` writes events synchronously with tensorboard's record writer and protos (the
TFRecord framing and the `Event` format), flushing after each event. The graph tab gets a
`GraphDef` built from the IR nodes: name, TF op type, inputs (`^name` for control inputs),
device, output shapes and, where short, the attributes' IR text. tensorboard loads lazily, so
`import tfjit` stays fast.
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import struct
import time
import zlib
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgumentError, OpTypeError
from ..ir.printer import format_attr
from ..ir.types import TensorType, float16, float32, float64, uint8
from ..ops.registry import Fusion, register
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from .graph_keys import GraphKeys
from .math_ops import emit1
from .op_types import tf_op_type

_BYTES = TensorType(uint8, (None,))
_IMAGE_DTYPES = (uint8, float16, float32, float64)
_BAD_COLOR = np.array([255, 0, 0, 255], np.uint8)  # TF's default for non-finite pixels
_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w.]")
_MAX_ATTR_TEXT = 200


@functools.lru_cache(maxsize=1)
def _pb() -> SimpleNamespace:
    """tensorboard's protocol buffer modules, loaded on first use."""
    from tensorboard.compat.proto import (attr_value_pb2, event_pb2, graph_pb2, summary_pb2,
                                          tensor_shape_pb2, types_pb2)

    return SimpleNamespace(summary=summary_pb2, event=event_pb2, graph=graph_pb2, attr_value=attr_value_pb2,
                           tensor_shape=tensor_shape_pb2, types=types_pb2)


def _as_bytes(summary_proto: Any) -> np.ndarray:
    return np.frombuffer(summary_proto.SerializeToString(), dtype=np.uint8)


# -- the ops -----------------------------------------------------------------------------------
def _scalar_rule(in_types: tuple[TensorType, ...], tag: str) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.dtype.is_bool:
        raise OpTypeError(f"scalar summary {tag!r} needs a real number, got {t}")
    if t.rank not in (None, 0):
        raise OpTypeError(f"scalar summary {tag!r} needs a scalar (shape []), got {t}")
    return (_BYTES,)


def _scalar_ref(value: np.ndarray, *, tag: str) -> np.ndarray:
    Summary = _pb().summary.Summary
    return _as_bytes(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]))


def _histogram_rule(in_types: tuple[TensorType, ...], tag: str) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.dtype.is_bool:
        raise OpTypeError(f"histogram summary {tag!r} needs real numbers, got {t}")
    return (_BYTES,)


@functools.lru_cache(maxsize=1)
def _bucket_limits() -> np.ndarray:
    """TF's default histogram buckets: edges growing by 10% from 1e-12 to 1e20, both signs."""
    edges, v = [], 1.0e-12
    while v < 1.0e20:
        edges.append(v)
        v *= 1.1
    edges.append(np.finfo(np.float64).max)
    return np.array([-e for e in reversed(edges)] + [0.0] + edges)


def _histogram_ref(values: np.ndarray, *, tag: str) -> np.ndarray:
    """TF's HistogramSummary: counts per default bucket, runs of empty buckets collapsed."""
    x = np.asarray(values, np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise InvalidArgumentError(message=f"Nan in summary histogram for: {tag}")
    limits = _bucket_limits()
    bucket = np.minimum(np.searchsorted(limits, x, side="right"), len(limits) - 1)  # the last one is open
    counts = np.bincount(bucket, minlength=len(limits))
    nonzero = counts > 0
    keep = nonzero | np.append(nonzero[1:], True)  # a non-empty bucket, or the last of an empty run
    big = np.finfo(np.float64).max
    histo = _pb().summary.HistogramProto(
        min=float(x.min()) if x.size else big, max=float(x.max()) if x.size else -big, num=float(x.size),
        sum=float(x.sum()), sum_squares=float(np.dot(x, x)),
        bucket_limit=limits[keep].tolist(), bucket=counts[keep].astype(np.float64).tolist())
    Summary = _pb().summary.Summary
    return _as_bytes(Summary(value=[Summary.Value(tag=tag, histo=histo)]))


def _image_rule(in_types: tuple[TensorType, ...], tag: str, max_images: int) -> tuple[TensorType, ...]:
    (t,) = in_types
    if t.dtype not in _IMAGE_DTYPES:
        raise OpTypeError(f"image summary {tag!r} needs uint8, float16, float32 or float64 images, got {t}")
    if t.rank not in (None, 4) or (t.rank == 4 and isinstance(t.shape[3], int) and t.shape[3] not in (1, 3, 4)):
        raise OpTypeError(f"image summary {tag!r} needs a 4-D tensor [batch, height, width, channels] "
                          f"with 1, 3 or 4 channels, got {t}")
    return (_BYTES,)


def _image_ref(images: np.ndarray, *, tag: str, max_images: int) -> np.ndarray:
    Summary = _pb().summary.Summary
    count = min(len(images), max_images)
    values = []
    for i in range(count):
        pixels = images[i] if images.dtype == np.uint8 else _normalize_float_image(images[i])
        height, width, channels = pixels.shape
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=_png(pixels))
        values.append(Summary.Value(tag=f"{tag}/image" if max_images == 1 else f"{tag}/image/{i}", image=image))
    return _as_bytes(Summary(value=values))


def _normalize_float_image(image: np.ndarray) -> np.ndarray:
    """TF's rule: non-negative images scale to max 255; others map 0 to 128 and max |x| to
    127 away; pixels with a non-finite channel get the bad colour (red)."""
    finite = np.isfinite(image).all(axis=-1)
    seen = image[finite].astype(np.float32)
    lo = seen.min() if seen.size else np.float32(np.inf)
    hi = seen.max() if seen.size else np.float32(-np.inf)
    if lo < 0:
        top = max(abs(lo), abs(hi))
        scale, offset = (0.0 if top < 1e-6 else 127.0 / top), 128.0
    else:
        scale, offset = (0.0 if hi < 1e-6 else 255.0 / hi), 0.0
    dt = image.dtype.type
    with np.errstate(invalid="ignore"):
        scaled = (image * dt(scale) + dt(offset)).astype(np.uint8)
    scaled[~finite] = _BAD_COLOR[: image.shape[-1]]
    return scaled


def _png(pixels: np.ndarray) -> bytes:
    """A minimal 8-bit PNG (grey, RGB or RGBA) of an [h, w, c] uint8 array."""
    height, width, channels = pixels.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + chunk(b"IEND", b""))


def _merge_rule(in_types: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    for t in in_types:
        if t.dtype != uint8 or t.rank not in (None, 1):
            raise OpTypeError(f"merge_summary takes the outputs of summary ops (u8[?]), got {t}")
    return (_BYTES,)


def _merge_ref(*summaries: np.ndarray) -> np.ndarray:
    seen: set[str] = set()
    for raw in summaries:
        for value in _pb().summary.Summary.FromString(raw.tobytes()).value:
            if value.tag in seen:
                raise InvalidArgumentError(message=f"Duplicate tag {value.tag} found in summary inputs")
            seen.add(value.tag)
    return np.concatenate(summaries)


register("scalar_summary", _scalar_rule, _scalar_ref, Fusion.OPAQUE, differentiable=False)
register("histogram_summary", _histogram_rule, _histogram_ref, Fusion.OPAQUE, differentiable=False)
register("image_summary", _image_rule, _image_ref, Fusion.OPAQUE, differentiable=False)
register("merge_summary", _merge_rule, _merge_ref, Fusion.OPAQUE, differentiable=False)


# -- the TF1 API -------------------------------------------------------------------------------
def _clean_tag(name: str | None) -> str | None:
    """TF's tag cleaning: illegal characters become '_', leading slashes go."""
    return None if name is None else _INVALID_TAG_CHARACTERS.sub("_", name).lstrip("/")


def _summary_op(op: str, name: str, tensor: Any, attrs: dict[str, Any], collections: Any,
                family: str | None) -> Tensor:
    """Emit a summary op named by its (unique) scope, tagged as TF tags it, and collect it."""
    name, family = _clean_tag(name), _clean_tag(family)
    graph = get_default_graph()
    with graph.name_scope(name if family is None else f"{family}/{name}") as scope:
        tag = scope.rstrip("/") if family is None else f"{family}/{scope.rstrip('/')}"
        out = emit1(op, [convert_to_tensor(tensor)], {"tag": tag, **attrs}, name=scope)
    for key in (collections if collections is not None else [GraphKeys.SUMMARIES]):
        graph.add_to_collection(key, out)
    return out


def scalar(name: str, tensor: Any, collections: Sequence[str] | None = None, family: str | None = None) -> Tensor:
    """A summary of one real number (a scalar tensor)."""
    return _summary_op("scalar_summary", name, tensor, {}, collections, family)


def histogram(name: str, values: Any, collections: Sequence[str] | None = None,
              family: str | None = None) -> Tensor:
    """A histogram of all the values of a real tensor (TF's default buckets)."""
    return _summary_op("histogram_summary", name, values, {}, collections, family)


def image(name: str, tensor: Any, max_outputs: int = 3, collections: Sequence[str] | None = None,
          family: str | None = None) -> Tensor:
    """PNG images of the first `max_outputs` of a [batch, height, width, 1|3|4] tensor."""
    if max_outputs < 1:
        raise ValueError(f"max_outputs must be at least 1, got {max_outputs}")
    return _summary_op("image_summary", name, tensor, {"max_images": int(max_outputs)}, collections, family)


def merge(inputs: Sequence[Any], collections: Sequence[str] | None = None, name: str | None = None) -> Tensor:
    """One summary holding the values of all `inputs`."""
    if not inputs:
        raise ValueError("merge needs at least one summary")
    graph = get_default_graph()
    out = emit1("merge_summary", [convert_to_tensor(t) for t in inputs], name=name or "MergeSummary")
    for key in collections or []:
        graph.add_to_collection(key, out)
    return out


def merge_all(key: str = GraphKeys.SUMMARIES, scope: str | None = None, name: str | None = None) -> Tensor | None:
    """`merge` of every summary in the collection `key`; None when there is none."""
    summaries = get_default_graph().get_collection(key, scope)
    return merge(summaries, name=name) if summaries else None


# -- graphs for the graph tab ------------------------------------------------------------------
def build_graph_def(graph: Any) -> Any:
    """A tensorboard `GraphDef` of a TF1 graph's IR nodes."""
    out = _pb().graph.GraphDef()
    for node in graph.nodes:
        node_def = out.node.add(name=node.name, op=tf_op_type(node.op), device=node.device or "")
        node_def.input.extend([_input_name(v) for v in node.inputs] + ["^" + c.name for c in node.control_inputs])
        _set_attrs(node_def, node)
    return out


def _input_name(value: Any) -> str:
    return value.node.name if value.index == 0 else f"{value.node.name}:{value.index}"


def _set_attrs(node_def: Any, node: Any) -> None:
    if node.types:
        node_def.attr["_output_shapes"].list.shape.extend(_shape_proto(t) for t in node.types)
        node_def.attr["T"].type = _pb().types.DataType.Value(_TF_DTYPE_ENUMS[node.types[0].dtype.name])
    for key, value in node.attrs:
        text = format_attr(value)
        if len(text) <= _MAX_ATTR_TEXT:
            node_def.attr[key].s = text.encode("utf-8")


_TF_DTYPE_ENUMS = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int8": "DT_INT8",
                   "uint8": "DT_UINT8", "int32": "DT_INT32", "int64": "DT_INT64", "bool": "DT_BOOL"}


def _shape_proto(t: TensorType) -> Any:
    TensorShapeProto = _pb().tensor_shape.TensorShapeProto
    if t.shape is None:
        return TensorShapeProto(unknown_rank=True)
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=d if isinstance(d, int) else -1) for d in t.shape])


# -- event files -------------------------------------------------------------------------------
_writer_ids = itertools.count()


class FileWriter:
    """Writes summaries and the graph to an event file in `logdir` (TF1's `tf.summary.FileWriter`).

    Events are written synchronously and flushed one by one, so `max_queue` and `flush_secs`
    have nothing to tune; they are accepted for TF's signature.
    """

    def __init__(self, logdir: str, graph: Any = None, max_queue: int = 10, flush_secs: float = 120,
                 graph_def: Any = None, filename_suffix: str | None = None, session: Any = None):
        from tensorboard.summary.writer.record_writer import RecordWriter

        os.makedirs(logdir, exist_ok=True)
        self._logdir = logdir
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_writer_ids)}{filename_suffix or ''}")
        self._file = open(os.path.join(logdir, name), "wb")
        self._records = RecordWriter(self._file)
        self.add_event(_pb().event.Event(wall_time=time.time(), file_version="brain.Event:2"))
        if graph is not None or graph_def is not None:
            self.add_graph(graph, graph_def=graph_def)

    def get_logdir(self) -> str:
        return self._logdir

    def add_event(self, event: Any) -> None:
        if self._file.closed:
            raise RuntimeError("this FileWriter is closed")
        self._records.write(event.SerializeToString())
        self._file.flush()

    def add_summary(self, summary: Any, global_step: int | None = None) -> None:
        """Add what `sess.run(summary_op)` returned (or bytes, or a `Summary` proto)."""
        event = _pb().event.Event(wall_time=time.time(), summary=_as_summary_proto(summary))
        if global_step is not None:
            event.step = int(global_step)
        self.add_event(event)

    def add_graph(self, graph: Any, global_step: int | None = None, graph_def: Any = None) -> None:
        """Add a graph for TensorBoard's graph tab: a tfjit/TF1 graph or a `GraphDef` proto."""
        proto = graph_def if graph_def is not None else _graph_def_of(graph)
        event = _pb().event.Event(wall_time=time.time(), graph_def=proto.SerializeToString())
        if global_step is not None:
            event.step = int(global_step)
        self.add_event(event)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> "FileWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _graph_def_of(graph: Any) -> Any:
    """A `GraphDef` for a tfjit graph; a `GraphDef` proto is returned as it is."""
    return graph if hasattr(graph, "SerializeToString") else build_graph_def(graph)


def _as_summary_proto(summary: Any) -> Any:
    Summary = _pb().summary.Summary
    if isinstance(summary, Summary):
        return summary
    if isinstance(summary, np.ndarray) and summary.dtype == np.uint8 and summary.ndim == 1:
        return Summary.FromString(summary.tobytes())
    if isinstance(summary, (bytes, bytearray)):
        return Summary.FromString(bytes(summary))
    raise TypeError(f"add_summary takes what sess.run(summary_op) returns (a uint8 array), bytes or a "
                    f"Summary proto, not {type(summary).__name__}")
