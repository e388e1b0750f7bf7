"""Gradient clipping by norm (`tf.clip_by_norm`, `tf.global_norm`, `tf.clip_by_global_norm`)."""
from __future__ import annotations

from typing import Any, Sequence

from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, convert_to_tensor
from .array_ops import constant, identity, ones_like
from .layout_ops import stack
from .math_ops import cast, maximum, minimum, reduce_sum, sqrt, where
from .nn_ops import l2_loss


def clip_by_norm(t: Any, clip_norm: Any, axes: Any = None, name: str | None = None) -> Tensor:
    """`t * clip_norm / max(l2norm(t), clip_norm)` along `axes` (all by default); an all-zero
    `t` stays zero, and the norm's gradient is safe there (TF's formulation)."""
    with get_default_graph().name_scope(name or "clip_by_norm") as scope:
        values = convert_to_tensor(t, name="t")
        l2sum = reduce_sum(values * values, axes, keepdims=True)
        positive = l2sum > 0
        l2norm = where(positive, sqrt(where(positive, l2sum, ones_like(l2sum))), l2sum)
        return identity(values * clip_norm / maximum(l2norm, clip_norm), name=scope)


def global_norm(t_list: Sequence[Any], name: str | None = None) -> Tensor:
    """`sqrt(sum of sum(t ** 2))` over the tensors of `t_list` (None entries are skipped)."""
    _require_sequence(t_list)
    with get_default_graph().name_scope(name or "global_norm"):
        half_squared = [l2_loss(convert_to_tensor(t)) for t in t_list if t is not None]
        return sqrt(reduce_sum(stack(half_squared)) * 2.0, name="global_norm")


def clip_by_global_norm(t_list: Sequence[Any], clip_norm: Any, use_norm: Any = None,
                        name: str | None = None) -> tuple[list[Tensor | None], Tensor]:
    """Scale every tensor by `clip_norm / max(global_norm, clip_norm)`; returns the clipped
    list (None stays None) and the global norm. A non-finite norm makes every value NaN."""
    _require_sequence(t_list)
    t_list = list(t_list)
    norm = convert_to_tensor(use_norm) if use_norm is not None else global_norm(t_list, name)
    with get_default_graph().name_scope(name or "clip_by_global_norm") as scope:
        scale_for_finite = clip_norm * minimum(1.0 / norm, constant(1.0, dtype=norm.dtype) / clip_norm)
        scale = scale_for_finite + (norm - norm)  # NaN when the norm is inf or NaN, as TF does
        values = [None if t is None else convert_to_tensor(t) for t in t_list]
        clipped = [None if v is None else identity(v * cast(scale, v.dtype), name=f"{scope}_{i}")
                   for i, v in enumerate(values)]
    return clipped, norm


def _require_sequence(t_list: Any) -> None:
    if not isinstance(t_list, (list, tuple)):
        raise TypeError(f"`t_list` should be a sequence of tensors. Received {type(t_list)}.")
