"""Backend config: the discriminated union and the string shorthand."""

from __future__ import annotations

import pytest

from reranker import (
    ConfigError,
    CustomConfig,
    LlmConfig,
    ModelNotFoundError,
    PluginConfig,
    PresetConfig,
    parse_backend_config,
)
from reranker.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", ["fast", "balanced", "quality", "multilingual"])
def test_preset_names_are_presets(name: str) -> None:
    cfg = parse_backend_config(name)
    assert isinstance(cfg, PresetConfig) and cfg.name == name


def test_exactly_the_presets_with_their_repos() -> None:
    assert {n: p.repo_id for n, p in PRESETS.items()} == {
        "fast": "Xenova/ms-marco-MiniLM-L-6-v2",
        "balanced": "Xenova/bge-reranker-base",
        "quality": "Xenova/bge-reranker-large",
        "multilingual": "onnx-community/bge-reranker-v2-m3-ONNX",
        "instruct": "Qwen/Qwen3-Reranker-0.6B",
        "visual": "Qwen/Qwen3-VL-Reranker-2B",
    }
    assert PRESETS["fast"].model_file == "onnx/model_quantized.onnx"
    assert PRESETS["multilingual"].max_length == 8192
    assert PRESETS["quality"].additional_files == ("onnx/model.onnx_data",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cohere:rerank-v3.5", LlmConfig(provider="cohere", model="rerank-v3.5")),
        ("jina:jina-reranker-v2-base-multilingual",
         LlmConfig(provider="jina", model="jina-reranker-v2-base-multilingual")),
        ("voyage:rerank-2", LlmConfig(provider="voyage", model="rerank-2")),
        ("plugin:mine", PluginConfig(name="mine")),
        ("plugin:pkg.mod:Scorer", PluginConfig(name="pkg.mod:Scorer")),
        ("./models/x", CustomConfig(model_id="./models/x")),
        ("/abs/model", CustomConfig(model_id="/abs/model")),
        ("~/m", CustomConfig(model_id="~/m")),
        ("BAAI/bge-reranker-base", CustomConfig(model_id="BAAI/bge-reranker-base")),
        ("BAAI/bge-reranker-base@v1.0",
         CustomConfig(model_id="BAAI/bge-reranker-base", revision="v1.0")),
    ],
)
def test_shorthand(text: str, expected: object) -> None:
    assert parse_backend_config(text) == expected


@pytest.mark.parametrize("text", ["", "nonsense", "a/b/c", "cohere:", "plugin:", "x/y@"])
def test_bad_shorthand_lists_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="preset name"):
        parse_backend_config(text)


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(ModelNotFoundError, match="fast, balanced, quality, multilingual"):
        parse_backend_config({"type": "preset", "name": "fastest"})
    with pytest.raises(ModelNotFoundError):
        get_preset("nope")


def test_mapping_config_validated_with_field_names() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        parse_backend_config({"type": "preset", "name": "fast", "batch_size": 0})
    with pytest.raises(ConfigError, match="type"):
        parse_backend_config({"type": "bogus"})
    with pytest.raises(ConfigError, match="typo_field: Extra inputs"):
        parse_backend_config({"type": "custom", "model_id": "a/b", "typo_field": 1})
    with pytest.raises(ConfigError, match="string or a mapping"):
        parse_backend_config(42)


def test_configs_are_frozen_and_round_trip() -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": "a/b", "additional_files": ["x"]})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type varies
        cfg.model_id = "c/d"  # type: ignore[misc]
    assert parse_backend_config(cfg.model_dump()) == cfg
    assert parse_backend_config(cfg) is cfg
