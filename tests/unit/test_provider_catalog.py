"""The provider list comes from liter-llm at run time, and the Providers table from it."""

from __future__ import annotations

import sys
from importlib.metadata import version

import liter_llm
import pytest

from reranker.cli import main
from reranker.config import LlmConfig, parse_backend_config
from reranker.errors import ConfigError
from reranker.providers import catalog

# The rerank providers liter-llm 2.4.0 lists (issue 22); a later release may add more.
ISSUE_22 = {
    "bedrock", "cohere", "dashscope", "deepinfra", "fireworks_ai", "hosted_vllm", "huggingface",
    "jina_ai", "llamacpp", "localai", "nvidia_nim", "qwen_ai_platform", "vllm", "voyage",
}


def test_providers_are_liter_llms_rerank_providers() -> None:
    theirs = {p.name for p in liter_llm.all_providers() if "rerank" in (p.endpoints or ())}
    assert set(catalog.provider_names()) == theirs
    assert ISSUE_22 <= theirs


def test_a_provider_liter_llm_adds_appears_without_code(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = liter_llm.ProviderConfig(
        name="newco", display_name="NewCo", base_url="https://api.newco.test/v1",
        auth=liter_llm.AuthConfig(liter_llm.AuthType("bearer"), "NEWCO_API_KEY"),
        endpoints=["chat", "rerank"])
    real = liter_llm.all_providers
    monkeypatch.setattr(liter_llm, "all_providers", lambda: [*real(), extra])
    catalog.rerank_providers.cache_clear()
    try:
        info = catalog.provider_info("newco")
        assert info.key_env == ("NEWCO_API_KEY",) and info.reads_key
        assert info.default_base_url == "https://api.newco.test/v1"
        assert "| NewCo | `newco:MODEL` | `NEWCO_API_KEY` |" in catalog.providers_markdown()
        assert parse_backend_config("newco:m1").provider == "newco"
    finally:
        catalog.rerank_providers.cache_clear()


def test_table_has_a_row_per_provider_with_its_key_variable() -> None:
    table = catalog.providers_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(catalog.provider_names())
    for p in catalog.rerank_providers():
        row = next(r for r in rows if f"`{p.example}`" in r)
        for env in p.key_env:
            assert f"`{env}`" in row
    assert "`NVIDIA_NIM_API_KEY`" in table and "`COHERE_API_KEY`" in table
    assert f"liter-llm {version('liter-llm')}" in table


def test_cli_prints_the_same_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers"]) == 0
    assert capsys.readouterr().out == catalog.providers_markdown()
    assert main(["providers", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"name": "nvidia_nim"' in out and '"NVIDIA_NIM_API_KEY"' in out


def test_shorthand_takes_any_provider_and_the_jina_alias() -> None:
    cfg = parse_backend_config("nvidia_nim:nvidia/nv-rerankqa-mistral-4b-v3")
    assert isinstance(cfg, LlmConfig)
    assert (cfg.provider, cfg.model) == ("nvidia_nim", "nvidia/nv-rerankqa-mistral-4b-v3")
    assert catalog.canonical_provider("jina") == "jina_ai"
    with pytest.raises(ConfigError, match=r"unknown provider 'openai'.*nvidia_nim"):
        parse_backend_config("openai:gpt")


def test_without_liter_llm_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.rerank_providers.cache_clear()
    monkeypatch.setitem(sys.modules, "liter_llm", None)
    try:
        with pytest.raises(ConfigError, match=r"reranker\[providers\]"):
            parse_backend_config("cohere:rerank-v3.5")
        # Local models do not need it.
        assert parse_backend_config("fast").type == "preset"
    finally:
        monkeypatch.delitem(sys.modules, "liter_llm")
        catalog.rerank_providers.cache_clear()
