"""The ``instruct`` preset and a sharded ``custom`` decoder repo through the Hub stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reranker import Reranker
from reranker.presets import PRESETS
from reranker.testing.families.qwen3_models import build_qwen3_reranker
from reranker.testing.families.qwen3_reference import (
    reference_decoder_encode,
    reference_decoder_scores,
)
from tests.integration.hub_standin import HubStandin

QUERY = "what is the capital of France"
DOCS = ["Paris is the capital of France", "a fish", "the capital city"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_instruct_preset_downloads_and_scores(hub: HubStandin, tmp_path: Path) -> None:
    preset = PRESETS["instruct"]
    folder = build_qwen3_reranker(tmp_path / "qwen3", seed=3)
    hub.add_repo(preset.repo_id, _files(folder), revision=preset.revision)
    config = {"type": "preset", "name": "instruct", "max_length": 160,
              "cache_dir": str(tmp_path / "cache")}
    with Reranker(config) as rr:
        results = rr.rerank(QUERY, DOCS, raw_scores=True)
    enc = reference_decoder_encode(folder, QUERY, DOCS, 160)
    expected = reference_decoder_scores(folder, enc["input_ids"], enc["attention_mask"])
    got = {r.index: r.score for r in results}
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))], expected, atol=1e-4)
    assert hub.count("GET", preset.repo_id, "model.safetensors") == 1
    assert hub.count("GET", preset.repo_id, "onnx/model.onnx") == 0


def test_sharded_custom_repo_fetches_its_shards(hub: HubStandin, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = build_qwen3_reranker(tmp_path / "qwen3", seed=4, seq_cls=True)
    files = _files(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[:10], names[10:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(tmp_path / shard))
        files[shard] = (tmp_path / shard).read_bytes()
        weight_map.update(dict.fromkeys(part, shard))
    del files["model.safetensors"]
    files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
    hub.add_repo("someone/qwen3-reranker-seq-cls", files)
    with Reranker({"type": "custom", "model_id": "someone/qwen3-reranker-seq-cls",
                   "max_length": 160, "cache_dir": str(tmp_path / "cache")}) as rr:
        results = rr.rerank(QUERY, DOCS, raw_scores=True)
    enc = reference_decoder_encode(folder, QUERY, DOCS, 160)
    expected = reference_decoder_scores(folder, enc["input_ids"], enc["attention_mask"])
    got = {r.index: r.score for r in results}
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))], expected, atol=1e-4)


def test_download_fetches_a_custom_decoder_repo(hub: HubStandin, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``reranker download`` of a decoder repo fetches its safetensors and tokenizer (it has
    no ``onnx/model.onnx`` to ask for); loading it afterwards fetches nothing more."""
    from reranker.cli.main import main

    folder = build_qwen3_reranker(tmp_path / "qwen3", seed=6)
    hub.add_repo("someone/qwen3-reranker", _files(folder))
    cache = str(tmp_path / "cache")
    assert main(["download", "someone/qwen3-reranker", "--cache-dir", cache]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "custom:someone/qwen3-reranker"
    assert Path(out["model_file"]).name == "model.safetensors"
    assert Path(out["model_file"]).read_bytes() == (folder / "model.safetensors").read_bytes()
    assert out["max_length"] == 2048
    assert hub.count("GET", "someone/qwen3-reranker", "model.safetensors") == 1
    assert hub.count("GET", "someone/qwen3-reranker", "onnx/model.onnx") == 0
    with Reranker({"type": "custom", "model_id": "someone/qwen3-reranker", "max_length": 160,
                   "cache_dir": cache}) as rr:
        results = rr.rerank(QUERY, DOCS, raw_scores=True)
    assert len(results) == len(DOCS)
    assert hub.count("GET", "someone/qwen3-reranker", "model.safetensors") == 1
