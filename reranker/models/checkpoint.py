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

The files are untrusted: everything is validated before a byte of tensor data is read, and
every failure is a :class:`~reranker.errors.ModelLoadError` naming the file (and the tensor):
the header length (at most ``MAX_HEADER_BYTES`` and inside the file), the header's JSON types,
each tensor's dtype, shape (non-negative integers) and offsets (integers, in range, ``end -
begin = prod(shape) * itemsize``, no two tensors overlapping), a tensor name held by two
shards, and the index's ``weight_map`` (an object of tensor names to plain file names in the
folder). Tensors of non-float dtypes (``I64`` buffers) are accepted and skipped; reading one as
a weight is an error.
"""

from __future__ import annotations

import json
import math
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
# Other dtypes the format defines: their sizes validate offsets; they are never weights here.
_ITEMSIZES: dict[str, int] = {
    **{name: dtype.itemsize for name, dtype in _DTYPES.items()},
    "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1,
}
_CHUNK_ELEMENTS = 1 << 24
MAX_HEADER_BYTES = 100_000_000
"""Largest safetensors header read (the format's own reference implementation: 100 MB)."""
_MAX_DIMS = 8


@dataclass(frozen=True)
class StoredTensor:
    """One tensor inside a safetensors file; its data is read on demand."""

    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in the file
    name: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def numpy(self) -> np.ndarray:
        out = np.empty(self.size, dtype=np.float32)
        start = 0
        for piece in self.chunks():
            out[start : start + piece.size] = piece
            start += piece.size
        return out.reshape(self.shape)

    def chunks(self) -> Iterator[np.ndarray]:
        stored = _DTYPES.get(self.dtype)
        if stored is None:
            raise ModelLoadError(
                f"{self.path}: tensor {self.name!r} is {self.dtype}; weights must be one of "
                f"{', '.join(_DTYPES)}"
            )
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                for start in range(0, self.size, _CHUNK_ELEMENTS):
                    count = min(_CHUNK_ELEMENTS, self.size - start)
                    raw = np.fromfile(f, dtype=stored, count=count)
                    if raw.size != count:
                        raise ModelLoadError(
                            f"{self.path} ends inside tensor {self.name!r}: the file is cut")
                    yield _to_float32(raw, self.dtype)
        except OSError as exc:
            raise ModelLoadError(f"cannot read tensor {self.name!r} of {self.path}: {exc}") from exc


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
    """The safetensors files of a folder: the index's shards, else ``model.safetensors``.

    Raises:
        ModelLoadError: the index is not JSON, has no ``weight_map`` object, or names a file
            that is not a plain file name (``../x``, ``/etc/x``).
    """
    index = folder / INDEX_FILE
    if not index.is_file():
        return [SINGLE_FILE]
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"{index} has no 'weight_map' object of tensor names to files")
    files = set()
    for tensor, name in weight_map.items():
        if not isinstance(name, str) or not name or Path(name).name != name or name in (
                ".", ".."):
            raise ModelLoadError(
                f"{index}: weight_map[{tensor!r}] = {name!r} is not a file name in {folder}")
        files.add(name)
    return sorted(files)


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
        for tensor_name, tensor in _read_header(path).items():
            if tensor_name in tensors:
                raise ModelLoadError(
                    f"{path}: tensor {tensor_name!r} is also in another shard of {folder}")
            tensors[tensor_name] = tensor
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
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def _read_header(path: Path) -> dict[str, StoredTensor]:
    try:
        file_size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) != 8:
                raise ValueError(f"{len(prefix)} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, file_size - 8):
                raise ValueError(
                    f"a header of {length} bytes (the file has {file_size}; at most "
                    f"{MAX_HEADER_BYTES} are read)")
            header = json.loads(f.read(length))
    except (OSError, ValueError, RecursionError, struct.error) as exc:
        raise ModelLoadError(f"{path} is not a safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: the header is a JSON {type(header).__name__}, not an object")
    base, data_size = 8 + length, file_size - 8 - length
    found: dict[str, StoredTensor] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise ModelLoadError(f"{path}: __metadata__ is not an object")
            continue
        tensor = _tensor(path, name, info, base, data_size)
        found[name] = tensor
        begin = tensor.offset - base
        spans.append((begin, begin + tensor.size * _ITEMSIZES[tensor.dtype], name))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise ModelLoadError(f"{path}: tensors {first!r} and {second!r} overlap")
    return found


def _tensor(path: Path, name: str, info: object, base: int, data_size: int) -> StoredTensor:
    def bad(why: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: tensor {name!r} {why}")

    if not isinstance(info, dict):
        raise bad(f"is described by a JSON {type(info).__name__}, not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _ITEMSIZES:
        raise bad(f"has dtype {dtype!r}; supported: {', '.join(_ITEMSIZES)}")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(
            _is_int(d) and d >= 0 for d in shape):
        raise bad(f"has shape {shape!r}; expected at most {_MAX_DIMS} non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets)):
        raise bad(f"has data_offsets {offsets!r}; expected [begin, end] integers")
    begin, end = offsets
    expected = math.prod(shape) * _ITEMSIZES[dtype]
    if not 0 <= begin <= end <= data_size:
        raise bad(f"has data_offsets [{begin}, {end}] outside the {data_size} data bytes")
    if end - begin != expected:
        raise bad(f"has {end - begin} data bytes; shape {shape} of {dtype} needs {expected}")
    return StoredTensor(path, dtype, tuple(shape), base + begin, name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
