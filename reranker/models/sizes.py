"""Sizes read from ``config.json``, checked before a graph is built from them.

A hostile or broken ``config.json`` must not build a wrong model silently: every size a family
reads goes through :func:`config_int` (an integer, positive, bounded) and the layer count
through :func:`layer_count` (the layers the config declares are exactly the layers the
checkpoint holds). Both raise :class:`~reranker.errors.ModelLoadError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint

__all__ = ["MAX_SIZE", "config_int", "config_mapping", "layer_count"]

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
