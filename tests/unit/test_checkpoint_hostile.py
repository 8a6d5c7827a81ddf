"""Hostile checkpoints (issue 21 items 1-2): every case the review found, through the library.

Each case ends as a ``ModelLoadError`` naming the file or field, never a ``MemoryError``,
``TypeError``, ``KeyError``, raw ``ValueError`` or a silently wrong graph.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reranker.backends import build_backend
from reranker.config import parse_backend_config
from reranker.errors import ModelLoadError
from reranker.testing.families import bert, qwen3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {
        "bert": bert.make_checkpoint(root / "bert", num_layers=6),
        "qwen3": qwen3.make_checkpoint(root / "qwen3"),
    }


def _copy(pristine: dict[str, Path], name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(pristine[name], folder, ignore=shutil.ignore_patterns("onnx"))
    return folder


def _load(folder: Path, tmp_path: Path) -> Any:
    return build_backend(parse_backend_config({
        "type": "custom", "model_id": str(folder), "model_format": "safetensors",
        "max_length": 128, "cache_dir": str(tmp_path / "cache")}))


def _split(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _write(path: Path, header: object, data: bytes, length: int | None = None) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def _edit_header(folder: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = folder / "model.safetensors"
    header, data = _split(path)
    _write(path, edit(header), data)


def _first(header: dict[str, Any]) -> dict[str, Any]:
    name = sorted(k for k in header if k != "__metadata__")[0]
    return dict(header[name])


def _set_first(header: dict[str, Any], **changes: object) -> dict[str, Any]:
    name = sorted(k for k in header if k != "__metadata__")[0]
    header[name] = {**header[name], **changes}
    return header


def _two_spans(header: dict[str, Any]) -> dict[str, Any]:
    names = sorted(k for k in header if k != "__metadata__")
    by_size = sorted(names, key=lambda n: header[n]["data_offsets"][1]
                     - header[n]["data_offsets"][0])
    small, big = by_size[0], by_size[-1]
    begin = header[big]["data_offsets"][0]
    size = header[small]["data_offsets"][1] - header[small]["data_offsets"][0]
    header[small] = {**header[small], "data_offsets": [begin, begin + size]}  # inside `big`
    return header


HEADER_CASES: dict[str, Callable[[Path], None]] = {
    "header length 2**62": lambda f: _write(f / "model.safetensors", {}, b"", 2**62),
    "header is a JSON list": lambda f: _edit_header(f, lambda h: [h]),
    "entry is a string": lambda f: _edit_header(f, lambda h: _set_first(h) | {"x": "y"}),
    "offsets past the end": lambda f: _edit_header(f, lambda h: _set_first(
        h, data_offsets=[10**12, 10**12 + _first(h)["data_offsets"][1]
                         - _first(h)["data_offsets"][0]])),
    "negative offsets": lambda f: _edit_header(f, lambda h: _set_first(
        h, data_offsets=[-4, _first(h)["data_offsets"][1] - _first(h)["data_offsets"][0] - 4])),
    "overlapping tensors": lambda f: _edit_header(f, _two_spans),
    "shape not matching the bytes": lambda f: _edit_header(f, lambda h: _set_first(
        h, shape=[*_first(h)["shape"], 2])),
    "negative dimension": lambda f: _edit_header(f, lambda h: _set_first(
        h, shape=[-1, *_first(h)["shape"]])),
    "unknown dtype": lambda f: _edit_header(f, lambda h: _set_first(h, dtype="Q7")),
    "float offsets": lambda f: _edit_header(f, lambda h: _set_first(h, data_offsets=[0.5, 1])),
    "file cut inside the header": lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:20]),
    "deeply nested header": lambda f: (f / "model.safetensors").write_bytes(
        struct.pack("<Q", 200_000) + b"[" * 200_000),
}


@pytest.mark.parametrize("family", ["bert", "qwen3"])
@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_a_hostile_safetensors_header_is_a_model_load_error(
        pristine: dict[str, Path], tmp_path: Path, family: str, case: str) -> None:
    folder = _copy(pristine, family, tmp_path)
    HEADER_CASES[case](folder)
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        _load(folder, tmp_path)


@pytest.mark.parametrize("family", ["bert", "qwen3"])
@pytest.mark.parametrize(("index", "why"), [
    ({"metadata": {}}, "weight_map"),
    ({"weight_map": ["model.safetensors"]}, "weight_map"),
    ({"weight_map": {"a": "../../outside.safetensors"}}, "not a file name"),
    ({"weight_map": {"a": 7}}, "not a file name"),
])
def test_a_hostile_index_is_a_model_load_error(
        pristine: dict[str, Path], tmp_path: Path, family: str, index: object, why: str) -> None:
    folder = _copy(pristine, family, tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=why):
        _load(folder, tmp_path)


def test_a_tensor_in_two_shards_is_refused(pristine: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(pristine, "bert", tmp_path)
    header, data = _split(folder / "model.safetensors")
    for shard in ("a.safetensors", "b.safetensors"):
        _write(folder / shard, header, data)
    (folder / "model.safetensors").unlink()
    names = [n for n in header if n != "__metadata__"]
    weight_map = {n: "a.safetensors" if i % 2 else "b.safetensors" for i, n in enumerate(names)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ModelLoadError, match="also in another shard"):
        _load(folder, tmp_path)


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("family", "changes", "why"), [
    # A 2-layer decoder whose config says 1 or -3 layers built a graph that skipped layers.
    ("qwen3", {"num_hidden_layers": 1}, "declares num_hidden_layers=1"),
    ("qwen3", {"num_hidden_layers": -3}, r"num_hidden_layers=-3 is outside"),
    ("qwen3", {"num_hidden_layers": 3}, "declares num_hidden_layers=3"),
    # Division by zero.
    ("qwen3", {"num_attention_heads": 0}, "num_attention_heads=0 is outside"),
    # A list where a mapping is expected was an AttributeError.
    ("qwen3", {"rope_scaling": [1, 2]}, "rope_scaling is a list"),
    ("qwen3", {"rope_parameters": ["default"]}, "rope_parameters is a list"),
    ("qwen3", {"hidden_size": "64"}, "hidden_size='64' is not an integer"),
    ("qwen3", {"num_key_value_heads": 3}, "not a multiple of num_key_value_heads"),
    ("qwen3", {"intermediate_size": 100}, "mlp.gate_proj.weight"),
    ("qwen3", {"vocab_size": 10**9}, "vocab_size=1000000000 is outside"),
    ("qwen3", {"head_dim": 16}, "q_proj.weight"),
    # A 6-layer encoder whose config says 1 or -3 layers built and scored.
    ("bert", {"num_hidden_layers": 1}, "declares num_hidden_layers=1"),
    ("bert", {"num_hidden_layers": -3}, r"num_hidden_layers=-3 is outside"),
    ("bert", {"num_attention_heads": 0}, "num_attention_heads=0 is outside"),
    ("bert", {"hidden_size": 64, "num_attention_heads": 4}, "word_embeddings.weight"),
    ("bert", {"intermediate_size": 65}, "intermediate.dense.weight"),
    ("bert", {"max_position_embeddings": 4096}, "position_embeddings.weight"),
    ("bert", {"hidden_act": ["gelu"]}, "hidden_act"),
])
def test_config_sizes_must_agree_with_the_weights(
        pristine: dict[str, Path], tmp_path: Path, family: str, changes: dict[str, object],
        why: str) -> None:
    folder = _copy(pristine, family, tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(ModelLoadError, match=why):
        _load(folder, tmp_path)


def test_the_pristine_checkpoints_load(pristine: dict[str, Path], tmp_path: Path) -> None:
    for family in pristine:
        backend = _load(_copy(pristine, family, tmp_path), tmp_path)
        assert len(backend.score("q", ["a", "b"])) == 2
        backend.close()


def test_a_tokenizer_window_past_the_position_table_is_cut_to_the_table(
        pristine: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(pristine, "bert", tmp_path)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = 100_000  # the weights hold 128 positions
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    backend = build_backend(parse_backend_config({
        "type": "custom", "model_id": str(folder), "model_format": "safetensors",
        "cache_dir": str(tmp_path / "cache")}))
    try:
        assert backend.max_length == 128
        assert len(backend.score("q", ["word " * 1000, "short"])) == 2
    finally:
        backend.close()
