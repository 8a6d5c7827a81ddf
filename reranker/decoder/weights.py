"""Read a Hugging Face checkpoint (``config.json`` + safetensors) without torch or safetensors.

The safetensors format is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes. Tensors are memory-mapped and turned
into float32 one at a time when asked for, so a 1.2 GB bfloat16 checkpoint is never held twice
(numpy has no bfloat16: its bits are the high half of a float32's). Sharded checkpoints
(``model.safetensors.index.json``) are followed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["Checkpoint", "WEIGHT_FILES", "read_config"]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict."""
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data


class Checkpoint:
    """The tensors of a safetensors checkpoint by name, read lazily as float32."""

    def __init__(self, folder: Path) -> None:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise ModelLoadError(
                f"{folder} has no model.safetensors or model.safetensors.index.json"
            )
        self.files = [folder / name for name in files]
        self._where: dict[str, tuple[Path, str, list[int], int, int]] = {}
        for path in self.files:
            for name, entry in _header(path).items():
                start, end = entry["data_offsets"]
                self._where[name] = (path, entry["dtype"], entry["shape"], start, end)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def names(self) -> Iterator[str]:
        return iter(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._where[name][2])

    def get(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a float32 array (a copy, the file stays mapped read-only)."""
        try:
            path, dtype, shape, start, end = self._where[name]
        except KeyError:
            raise ModelLoadError(f"checkpoint has no tensor {name!r}") from None
        if dtype not in _DTYPES:
            raise ModelLoadError(f"tensor {name!r} has dtype {dtype}; supported: F32, F16, BF16")
        offset = 8 + _header_size(path) + start
        raw = np.memmap(path, dtype=_DTYPES[dtype], mode="r", offset=offset,
                        shape=((end - start) // np.dtype(_DTYPES[dtype]).itemsize,))
        if dtype == "BF16":
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            values = raw.astype(np.float32)
        return values.reshape(shape)

    def content_files(self) -> list[Path]:
        """The files whose bytes decide the weights (for cache keys)."""
        return list(self.files)


def _header_size(path: Path) -> int:
    with path.open("rb") as handle:
        return int.from_bytes(handle.read(8), "little")


def _header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read safetensors header of {path}: {exc}") from exc
    header.pop("__metadata__", None)
    return dict(header)
