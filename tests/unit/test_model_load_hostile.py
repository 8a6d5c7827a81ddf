"""Hostile checkpoints for every family: each load fails with ``ModelLoadError``, never another
exception, a hang or a process killed for memory.

Like ``tests/integration/test_serve_hostile.py`` for requests: one matrix of what an untrusted
``custom`` checkpoint may hold (a corrupt or truncated safetensors file, tensors of the wrong
shape or missing, ``config.json`` values that disagree with the weights or make no sense, files
missing), parametrized over :func:`reranker.testing.families.all_families`, so a family added
later is covered without being named here. Each case starts from the family's own tiny
checkpoint (its kit's ``make_checkpoint``), changes one thing, and loads it the way the library
does (``build_backend`` of a ``custom`` config, built from the safetensors).
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from reranker.config import parse_backend_config
from reranker.errors import ModelLoadError, ModelNotFoundError, RerankerError
from reranker.registry import build_backend
from reranker.testing.families import all_families

KITS = all_families()
_KITS_BY_NAME = {kit.NAME: kit for kit in KITS}
WEIGHTS = "model.safetensors"
QUERY = "is the cat here?"
DOCUMENTS = ["a cat sat on the mat", "water is wet", ""]


# --- safetensors surgery -----------------------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path: Path, header: Any, data: bytes, *, length: int | None = None) -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + data)


def _tensors(header: dict[str, Any]) -> list[str]:
    """Tensor names, largest first (ties by name): a weight every family reads."""
    names = [k for k in header if k != "__metadata__"]
    return sorted(names, key=lambda k: (-_numel(header[k]["shape"]), k))


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _edit_header(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        header, data = _read(folder / WEIGHTS)
        edit(header)
        _write(folder / WEIGHTS, header, data)

    return mutate


def _first(header: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = header[_tensors(header)[0]]
    return entry


def _truncate(keep: Callable[[int], int]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        raw = (folder / WEIGHTS).read_bytes()
        (folder / WEIGHTS).write_bytes(raw[:keep(len(raw))])

    return mutate


def _header_length(n: int) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        header, data = _read(folder / WEIGHTS)
        _write(folder / WEIGHTS, header, data, length=n)

    return mutate


def _raw_header(blob: bytes) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        _, data = _read(folder / WEIGHTS)
        (folder / WEIGHTS).write_bytes(struct.pack("<Q", len(blob)) + blob + data)

    return mutate


def _offsets(make: Callable[[list[int], int], list[int]]) -> Callable[[Path], None]:
    def edit(header: dict[str, Any]) -> None:
        entry = _first(header)
        end = max(h["data_offsets"][1] for k, h in header.items() if k != "__metadata__")
        entry["data_offsets"] = make(entry["data_offsets"], end)

    return _edit_header(edit)


def _overlap(header: dict[str, Any]) -> None:
    # The second largest tensor reads the largest one's bytes (sizes kept consistent).
    big, other = (header[k] for k in _tensors(header)[:2])
    size = other["data_offsets"][1] - other["data_offsets"][0]
    other["data_offsets"] = [big["data_offsets"][0], big["data_offsets"][0] + size]


def _shape(change: Callable[[list[int]], list[int]]
           ) -> Callable[[Path], None]:
    def edit(header: dict[str, Any]) -> None:
        entry = _first(header)
        entry["shape"] = change(list(entry["shape"]))

    return _edit_header(edit)


def _transposed(shape: list[int]) -> list[int]:
    return shape[::-1] if len(shape) == 2 and shape[0] != shape[1] else [shape[0] * 2, -1]


def _drop_tensor(folder: Path) -> None:
    header, data = _read(folder / WEIGHTS)
    del header[_tensors(header)[0]]
    _write(folder / WEIGHTS, header, data)


def _rename_tensors(folder: Path) -> None:
    header, data = _read(folder / WEIGHTS)
    renamed = {("__metadata__" if k == "__metadata__" else f"x.{k}"): v for k, v in header.items()}
    _write(folder / WEIGHTS, renamed, data)


# --- config.json surgery -----------------------------------------------------------------------


_TOP_LEVEL = {"architectures", "model_type"}


def _sizes(config: dict[str, Any]) -> dict[str, Any]:
    # A multimodal config keeps its text decoder's sizes under text_config.
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def _config(**values: Any) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        for key, value in values.items():
            (config if key in _TOP_LEVEL else _sizes(config))[key] = value
        path.write_text(json.dumps(config))

    return mutate


def _config_text(text: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / "config.json").write_text(text)

    return mutate


def _text(name: str, text: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / name).write_text(text)

    return mutate


def _remove(name: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / name).unlink()

    return mutate


def _scale_config(key: str, factor: float) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        sizes = _sizes(config)
        sizes[key] = int(sizes[key] * factor)
        path.write_text(json.dumps(config))

    return mutate


CASES: dict[str, Callable[[Path], None]] = {
    # the weights file
    "weights: empty file": _truncate(lambda n: 0),
    "weights: 5 bytes": _truncate(lambda n: 5),
    "weights: cut in the header": _truncate(lambda n: 40),
    "weights: cut in the data": _truncate(lambda n: n // 2),
    "weights: last byte cut": _truncate(lambda n: n - 1),
    "weights: header length 2**62": _header_length(2**62),
    "weights: header length past the file": _header_length(10**7),
    "weights: header not JSON": _raw_header(b"\xff\xfe not json at all"),
    "weights: header a JSON list": _raw_header(b"[1, 2, 3]"),
    "weights: header deeply nested": _raw_header(b"[" * 100_000 + b"]" * 100_000),
    "weights: entry not an object": _edit_header(lambda h: h.update({_tensors(h)[0]: [1]})),
    "weights: unknown dtype": _edit_header(lambda h: _first(h).update(dtype="Q7")),
    "weights: integer dtype": _edit_header(lambda h: _first(h).update(dtype="I64")),
    "weights: dtype a number": _edit_header(lambda h: _first(h).update(dtype=7)),
    "weights: offsets past the end": _offsets(lambda o, end: [o[0], end + 4096]),
    "weights: negative offsets": _offsets(lambda o, end: [-8, o[1] - o[0] - 8]),
    "weights: offsets reversed": _offsets(lambda o, end: [o[1], o[0]]),
    "weights: offsets not integers": _offsets(lambda o, end: ["0", o[1]]),
    "weights: overlapping tensors": _edit_header(_overlap),
    "weights: shape and bytes disagree": _shape(lambda s: [d + 1 for d in s]),
    "weights: negative dimension": _shape(lambda s: [-d for d in s]),
    "weights: huge shape": _shape(lambda s: [2**40] * len(s)),
    "weights: transposed weight": _shape(_transposed),
    "weights: a tensor missing": _drop_tensor,
    "weights: every tensor renamed": _rename_tensors,
    # config.json
    "config: not JSON": _config_text("{not json"),
    "config: a JSON list": _config_text("[]"),
    "config: deeply nested": _config_text("[" * 100_000 + "]" * 100_000),
    "config: architectures a string": _config(architectures="BertForSequenceClassification"),
    "config: unknown architecture": _config(architectures=["NoSuchModelForAnything"],
                                            model_type="nosuch"),
    "config: one layer fewer": _config(num_hidden_layers=1),
    "config: one layer more": _scale_config("num_hidden_layers", 2),
    "config: negative layers": _config(num_hidden_layers=-3),
    "config: zero layers": _config(num_hidden_layers=0),
    "config: a billion layers": _config(num_hidden_layers=10**9),
    "config: layers as a string": _config(num_hidden_layers="2"),
    "config: layers as a float": _config(num_hidden_layers=2.5),
    "config: layers as a bool": _config(num_hidden_layers=True),
    "config: zero heads": _config(num_attention_heads=0),
    "config: heads not dividing the width": _config(num_attention_heads=7),
    "config: negative heads": _config(num_attention_heads=-4),
    "config: zero width": _config(hidden_size=0),
    "config: width disagrees with the weights": _scale_config("hidden_size", 2),
    "config: huge width": _config(hidden_size=10**12),
    "config: intermediate size disagrees": _scale_config("intermediate_size", 2),
    "config: vocabulary disagrees": _scale_config("vocab_size", 0.5),
    "config: negative positions": _config(max_position_embeddings=-1),
    "config: huge positions": _config(max_position_embeddings=10**15),
    "config: null sizes": _config(hidden_size=None, num_attention_heads=None),
    # missing files
    "missing: config.json": _remove("config.json"),
    "missing: weights": _remove(WEIGHTS),
    "missing: tokenizer.json": _remove("tokenizer.json"),
    "tokenizer: not JSON": _text("tokenizer.json", "{nope"),
    "tokenizer: deeply nested": _text("tokenizer.json", "[" * 100_000 + "]" * 100_000),
    "tokenizer: a JSON list": _text("tokenizer.json", "[]"),
    "config: tokenizer_config.json deeply nested": _text(
        "tokenizer_config.json", '{"model_max_length": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "config: tokenizer_config.json a list": _text("tokenizer_config.json", "[]"),
}
MISSING = {"missing: config.json", "missing: weights", "missing: tokenizer.json"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kit.NAME: kit.make_checkpoint(tmp_path_factory.mktemp(kit.NAME) / "model")
            for kit in KITS}


def _rule(name: str) -> dict[str, str]:
    # A family whose architecture is a generic LLM's is named by the rule field.
    return {"rule": name} if getattr(_KITS_BY_NAME[name], "NEEDS_RULE", False) else {}


def _load(folder: Path, cache: Path, name: str) -> np.ndarray:
    backend = build_backend(parse_backend_config({
        "type": "custom", "model_id": str(folder), "model_format": "safetensors",
        "cache_dir": str(cache), **_rule(name)}))
    try:
        return np.asarray(backend.score(QUERY, DOCUMENTS), dtype=np.float64)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def pristine_scores(pristine: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, np.ndarray]:
    # Every family's untouched checkpoint loads and scores, so each refusal below is the
    # mutation's doing.
    cache = tmp_path_factory.mktemp("pristine-cache")
    return {name: _load(folder, cache, name) for name, folder in pristine.items()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kit", KITS, ids=lambda k: k.NAME)
def test_a_hostile_checkpoint_is_refused(kit: ModuleType, case: str, pristine: dict[str, Path],
                                         pristine_scores: dict[str, np.ndarray],
                                         tmp_path: Path) -> None:
    """Broken weights and tokenizers are a ``ModelLoadError`` (a missing file the
    ``ModelNotFoundError`` of a file that does not exist). A hostile ``config.json`` value is a
    ``ModelLoadError`` too, unless the family never reads that field: then the model builds
    and scores exactly as the untouched one, never as a silently different model."""
    folder = tmp_path / "model"
    shutil.copytree(pristine[kit.NAME], folder)
    CASES[case](folder)
    try:
        scores = _load(folder, tmp_path / "cache", kit.NAME)
    except RerankerError as exc:
        expected = ModelNotFoundError if case in MISSING else ModelLoadError
        assert isinstance(exc, expected), (type(exc).__name__, exc)
        assert str(exc).strip(), "an error that says nothing"
        return
    assert case.startswith("config:"), f"{case!r} loaded and scored {scores}"
    np.testing.assert_array_equal(scores, pristine_scores[kit.NAME], err_msg=case)
