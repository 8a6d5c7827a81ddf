"""The one checkpoint reader: ``config.json`` and its safetensors weights, read lazily.

Every graph builder (encoder and decoder families) reads its weights through
:func:`open_checkpoint`.

``model.safetensors``, or the shards a ``model.safetensors.index.json`` names, are opened by
their header only: each tensor's bytes are read from the file when a graph writer asks for
them, in bounded chunks with ordinary reads (not a memory map, whose touched pages would stay in
the process's resident memory), and converted to float32 (from float16 or bfloat16 too).

The safetensors layout read here is the documented one: an 8-byte little-endian header length,
a JSON header ``{name: {dtype, shape, data_offsets: [begin, end]}}`` (offsets relative to the
end of the header) and the data.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.writer import ArrayTensor, Tensor

__all__ = [
    "INDEX_FILE",
    "SINGLE_FILE",
    "Checkpoint",
    "StoredTensor",
    "open_checkpoint",
    "read_config",
    "weight_files",
]

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
}
_CHUNK_ELEMENTS = 1 << 24
_MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class StoredTensor:
    """One tensor inside a safetensors file; its data is read on demand."""

    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in the file

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self) -> np.ndarray:
        out = np.empty(self.size, dtype=np.float32)
        start = 0
        for piece in self.chunks():
            out[start : start + piece.size] = piece
            start += piece.size
        return out.reshape(self.shape)

    def chunks(self) -> Iterator[np.ndarray]:
        stored = _DTYPES[self.dtype]
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for start in range(0, self.size, _CHUNK_ELEMENTS):
                count = min(_CHUNK_ELEMENTS, self.size - start)
                raw = np.fromfile(f, dtype=stored, count=count)
                if raw.size != count:
                    raise ModelLoadError(f"{self.path} ends inside a tensor: the file is cut")
                yield _to_float32(raw, self.dtype)


def _to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":  # bfloat16 is the upper half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Checkpoint:
    """A model's ``config.json`` and its weights by Hugging Face state-dict name."""

    config: Mapping[str, Any]
    tensors: Mapping[str, Tensor]
    source: str = field(default="<memory>")
    #: The safetensors files the weights come from (what a build's cache key hashes).
    files: tuple[Path, ...] = ()

    @classmethod
    def from_arrays(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Checkpoint:
        """A checkpoint held in memory (test models)."""
        return cls(config, {k: ArrayTensor(v) for k, v in arrays.items()})

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def optional(self, name: str) -> Tensor | None:
        """The weight ``name``, or ``None`` when the checkpoint has none (optional biases)."""
        return self.tensors.get(name)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelLoadError(
                f"checkpoint {self.source} has no weight {name!r}, which its config.json "
                f"architecture ({', '.join(self.config.get('architectures') or ['?'])}) needs"
            ) from None


def weight_files(folder: Path) -> list[str]:
    """The safetensors files of a folder: the index's shards, else ``model.safetensors``."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no 'weight_map'")
        return sorted(set(map(str, weight_map.values())))
    return [SINGLE_FILE]


def open_checkpoint(folder: str | Path) -> Checkpoint:
    """Read ``config.json`` and the safetensors headers of a checkpoint folder.

    Raises:
        ModelLoadError: a file is missing or is not a valid safetensors file.
    """
    folder = Path(folder)
    config = read_config(folder)
    tensors: dict[str, Tensor] = {}
    files = weight_files(folder)
    for name in files:
        path = folder / name
        if not path.is_file():
            raise ModelLoadError(
                f"{folder} has no {name}: a model without an ONNX file needs config.json and "
                f"its safetensors weights ({SINGLE_FILE} or {INDEX_FILE} and its shards)"
            )
        tensors.update(_read_header(path))
    return Checkpoint(config, tensors, str(folder), tuple(folder / name for name in files))


def read_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict.

    Raises:
        ModelLoadError: it is missing, not JSON, or not a JSON object.
    """
    return _read_json(Path(folder) / "config.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def _read_header(path: Path) -> dict[str, StoredTensor]:
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(f.read(length))
        file_size = path.stat().st_size
    except (OSError, ValueError, struct.error) as exc:
        raise ModelLoadError(f"{path} is not a safetensors file: {exc}") from exc
    base = 8 + length
    found: dict[str, StoredTensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info.get("dtype"), tuple(int(d) for d in info.get("shape", ()))
        if dtype not in _DTYPES:
            raise ModelLoadError(
                f"{path}: tensor {name!r} is {dtype}; supported: {', '.join(_DTYPES)}"
            )
        begin, end = (int(x) for x in info["data_offsets"])
        if end - begin != _DTYPES[dtype].itemsize * int(np.prod(shape, dtype=np.int64)) or (
            base + end > file_size
        ):
            raise ModelLoadError(f"{path}: tensor {name!r} has inconsistent data offsets")
        found[name] = StoredTensor(path, dtype, shape, base + begin)
    return found
