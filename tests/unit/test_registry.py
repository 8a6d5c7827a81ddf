"""The one registry: variants, providers, display names, and errors that list the valid names."""

from __future__ import annotations

import typing

import pytest

from reranker import registry
from reranker.config import BackendConfig, parse_backend_config
from reranker.errors import ConfigError
from reranker.types import TRUNCATION_FIELDS


def test_variants_are_the_config_union() -> None:
    union = typing.get_args(typing.get_args(BackendConfig)[0])
    assert {cls.model_fields["type"].default: cls for cls in union} == {
        v.name: v.config_class for v in registry.VARIANTS.values()}
    assert registry.variant_names() == ("preset", "custom", "llm", "plugin")
    assert [registry.variant(n).runs_locally for n in registry.variant_names()] == [
        True, True, False, False]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="expected one of: preset, custom, llm, plugin"):
        registry.variant("onnx")
    with pytest.raises(ConfigError, match="provider.*expected one of: bedrock, cohere, .*voyage"):
        parse_backend_config({"type": "llm", "provider": "openai", "model": "m"})
    with pytest.raises(ConfigError, match="unknown provider 'openai'.*nvidia_nim"):
        parse_backend_config("openai:gpt-4")


@pytest.mark.parametrize(("shorthand", "display", "local"), [
    ("fast", "preset:fast", True),
    ("owner/repo@v2", "custom:owner/repo@v2", True),
    ("./folder", "custom:./folder", True),
    ("cohere:rerank-v3.5", "cohere:rerank-v3.5", False),
    ("plugin:mine", "plugin:mine", False),
])
def test_configs_say_their_display_name_and_where_they_run(
    shorthand: str, display: str, local: bool
) -> None:
    cfg = parse_backend_config(shorthand)
    assert cfg.display_name == display
    assert cfg.runs_locally is local


@pytest.mark.parametrize(("shorthand", "fields"), [
    ("fast", set(TRUNCATION_FIELDS)),
    ("cohere:m", {"max_document_tokens"}),
    ("jina:m", set()),
    ("voyage:m", set()),
    ("nvidia_nim:m", set()),
    ("plugin:mine", set()),
])
def test_declared_truncation_fields_without_building(shorthand: str, fields: set[str]) -> None:
    assert registry.truncation_fields_of(parse_backend_config(shorthand)) == fields


def test_provider_names_are_liter_llms_rerank_providers() -> None:
    import liter_llm

    assert set(registry.provider_names()) == {
        p.name for p in liter_llm.all_providers() if "rerank" in (p.endpoints or ())}


def test_only_provider_configs_are_billable() -> None:
    billable = {name: registry.variant(name).config_class.billable
                for name in registry.variant_names()}
    assert billable == {"preset": False, "custom": False, "llm": True, "plugin": False}


def test_serve_deployments_have_one_entry_per_variant() -> None:
    pytest.importorskip("ray")
    from deployments.serve.app import deployment_name
    from deployments.serve.args import DeploymentsArgs

    assert set(DeploymentsArgs.model_fields) - {"ingress"} == set(registry.variant_names())
    assert [deployment_name(v) for v in registry.variant_names()] == [
        "PresetScorer", "CustomScorer", "LlmScorer", "PluginScorer"]
    with pytest.raises(ConfigError, match="unknown variant"):
        DeploymentsArgs().variant("gpu")
