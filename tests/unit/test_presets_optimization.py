"""The ``fast`` preset's CPU default is the int8 recipe, run from the float32 export.

``benchmarks/compare.py`` measured the recipe faster than the repository's own int8 file and
closer to float32 in ranking (README, Performance); these tests pin what a config of each
preset resolves to and which file it downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reranker.backends import local
from reranker.config import PresetConfig, parse_backend_config
from reranker.presets import PRESETS


def _optimization(config: Any) -> str:
    cfg = parse_backend_config(config)
    assert isinstance(cfg, PresetConfig)
    return cfg.optimization


def test_fast_defaults_to_the_int8_recipe() -> None:
    assert PRESETS["fast"].optimization == "int8"
    assert _optimization("fast") == "int8"
    assert _optimization({"type": "preset", "name": "fast"}) == "int8"
    assert PresetConfig(name="fast").optimization == "int8"


@pytest.mark.parametrize("name", ["balanced", "quality", "multilingual"])
def test_other_presets_keep_no_optimization(name: str) -> None:
    assert _optimization(name) == "none"


@pytest.mark.parametrize("chosen", ["none", "fused", "int8"])
def test_an_explicit_optimization_wins(chosen: str) -> None:
    assert _optimization({"type": "preset", "name": "fast", "optimization": chosen}) == chosen


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_no_int8_default_off_the_cpu(device: str) -> None:
    # int8 (dynamic quantization) runs on CPU only; a GPU-capable config keeps 'none'.
    assert _optimization({"type": "preset", "name": "fast", "device": device}) == "none"


def test_dumped_config_parses_back_the_same() -> None:
    # The Ray app and `reranker bench` pass configs around as dumps.
    for config in ("fast", {"type": "preset", "name": "fast", "optimization": "none"}):
        cfg = parse_backend_config(config)
        assert parse_backend_config(cfg.model_dump()) == cfg


def _requested_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: Any) -> list[str]:
    asked: list[str] = []

    def fake_fetch(model_id: str, files: list[str], **_: Any) -> Path:
        assert model_id == PRESETS["fast"].repo_id
        asked.extend(files)
        return tmp_path

    monkeypatch.setattr(local, "fetch_model_files", fake_fetch)
    cfg = parse_backend_config(config)
    assert isinstance(cfg, PresetConfig)
    files = local.fetch_local_model(cfg)
    assert files.model_file == tmp_path / asked[0]
    return asked


def test_default_fast_downloads_the_float32_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _requested_files(monkeypatch, tmp_path, "fast")[0] == "onnx/model.onnx"


def test_fast_without_optimization_downloads_the_hub_int8_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = {"type": "preset", "name": "fast", "optimization": "none"}
    assert _requested_files(monkeypatch, tmp_path, config)[0] == "onnx/model_quantized.onnx"


def test_presets_json_reports_the_file_each_default_config_fetches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `reranker presets --json` said fast ran onnx/model_quantized.onnx; a default config of it
    # fetches the float32 export and quantizes that at first use.
    import json

    from reranker.cli.main import main

    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    fast = rows["fast"]
    assert fast["optimization"] == "int8"
    assert fast["model_file"] == _requested_files(monkeypatch, tmp_path, "fast")[0]
    assert fast["model_file"] == "onnx/model.onnx"
    assert fast["runs"] == "onnx/model.onnx, fused and int8-quantized at first use (then cached)"
    none = {"type": "preset", "name": "fast", "optimization": "none"}
    assert fast["model_file_by_optimization"]["none"] == _requested_files(
        monkeypatch, tmp_path, none)[0]
    for name in ("balanced", "quality", "multilingual"):
        assert rows[name]["model_file"] == PRESETS[name].model_file
        assert rows[name]["runs"] == f"{PRESETS[name].model_file} as is"
