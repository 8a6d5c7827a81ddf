"""Sizes read from ``config.json``, checked before a graph is built from them.

A hostile or broken ``config.json`` must not build a wrong model silently: every size a family
reads goes through :func:`config_int` (an integer, positive, bounded), objects through
:func:`config_mapping` (a mapping, not a list), the layer count through :func:`layer_count`
(the layers the config declares are exactly the layers the checkpoint holds), and weights
through :func:`expect_shape` (the shared layers take an expected ``shape``). All raise
:class:`~reranker.errors.ModelLoadError` naming the field or tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint

__all__ = [
    "MAX_SIZE",
    "config_float",
    "config_int",
    "config_mapping",
    "expect_shape",
    "layer_count",
]

MAX_SIZE = 1 << 24
"""Largest size a config may declare (hidden sizes, vocabularies, heads, layers)."""


def config_int(config: Mapping[str, Any], key: str, source: str, *,
               default: int | None = None, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """``config[key]`` as an int in ``[minimum, maximum]`` (``default`` when absent)."""
    value = config.get(key, default)
    if value is None:
        raise ModelLoadError(f"config.json of {source} has no {key!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelLoadError(
            f"config.json of {source}: {key}={value!r} is not an integer"
        )
    if not minimum <= value <= maximum:
        raise ModelLoadError(
            f"config.json of {source}: {key}={value} is outside [{minimum}, {maximum}]"
        )
    return value


def config_float(config: Mapping[str, Any], key: str, source: str, *, default: float,
                 minimum: float, maximum: float) -> float:
    """``config[key]`` as a finite number in ``[minimum, maximum]`` (``default`` when absent or
    null): epsilons, RoPE bases."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            minimum <= value <= maximum):
        raise ModelLoadError(
            f"config.json of {source}: {key}={value!r} is not a number in [{minimum}, {maximum}]"
        )
    return float(value)


def config_mapping(config: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    """``config[key]`` as a mapping (``{}`` when absent or null)."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ModelLoadError(
            f"config.json of {source}: {key} is a {type(value).__name__}, expected an object"
        )
    return value


def layer_count(checkpoint: Checkpoint, prefix: str, key: str = "num_hidden_layers") -> int:
    """``config[key]``, checked to equal the layers ``prefix<i>.`` the checkpoint holds.

    Raises:
        ModelLoadError: the config declares more or fewer layers than the weights have, or the
            weights' layers are not numbered 0..n-1.
    """
    declared = config_int(checkpoint.config, key, checkpoint.source)
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    present = {int(m.group(1)) for name in checkpoint.tensors if (m := pattern.match(name))}
    if present != set(range(declared)):
        found = f"layers {min(present)}..{max(present)} ({len(present)})" if present else "none"
        raise ModelLoadError(
            f"config.json of {checkpoint.source} declares {key}={declared}, but the weights "
            f"under {prefix}<i> hold {found}"
        )
    return declared


def expect_shape(checkpoint: Checkpoint, name: str, shape: tuple[int, ...]) -> None:
    """``checkpoint[name]`` has ``shape`` (what ``config.json`` implies), else a
    ``ModelLoadError`` naming the tensor, both shapes and the checkpoint."""
    found = tuple(checkpoint[name].shape)
    if found != tuple(shape):
        raise ModelLoadError(
            f"tensor {name!r} of {checkpoint.source} has shape {list(found)}, but config.json "
            f"implies {list(shape)}"
        )
