"""The one architecture table: families, resolution (rule, exact repo id, ambiguity), the
supported-models table, and every family's test kit against the library's scores."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from reranker.backends import build_backend
from reranker.config import CustomConfig, parse_backend_config
from reranker.errors import ModelLoadError
from reranker.models import architectures
from reranker.models.architectures import (
    families,
    is_decoder_config,
    position_offset,
    resolve,
    supported_models_markdown,
)
from reranker.testing.families import all_families

EXPECTED = {"bert", "electra", "xlm_roberta", "modernbert", "qwen3"}


def test_families_cover_the_existing_architectures() -> None:
    names = {f.name for f in families()}
    assert names == EXPECTED
    for f in families():
        assert f.kind in ("encoder", "decoder")
        assert f.architectures and f.rule and f.max_length and f.memory
        assert f.padding_side == ("left" if f.kind == "decoder" else "right")
        assert (f.prompt is not None) == (f.kind == "decoder")
    archs = [a for f in families() for a in f.architectures]
    assert len(archs) == len(set(archs)), "one architecture, one family (or a rule decides)"


def test_supported_models_markdown_has_one_row_per_family() -> None:
    table = supported_models_markdown().splitlines()
    assert table[0].startswith("| Family |") and table[1].startswith("|---")
    rows = table[2:]
    assert len(rows) == len(families())
    for f, row in zip(families(), rows, strict=True):
        assert f"`{f.name}`" in row and f.rule.replace("|", "\\|") in row
        assert all(f"`{a}`" in row for a in f.architectures)


@pytest.mark.parametrize(("config", "name"), [
    ({"architectures": ["BertForSequenceClassification"]}, "bert"),
    ({"architectures": ["RobertaForSequenceClassification"]}, "xlm_roberta"),
    ({"model_type": "xlm-roberta"}, "xlm_roberta"),
    ({"architectures": ["Qwen3ForSequenceClassification"]}, "qwen3"),
])
def test_resolve_by_architecture_or_model_type(config: dict[str, object], name: str) -> None:
    assert resolve(config).name == name


def test_unknown_architecture_is_one_error_listing_the_supported() -> None:
    with pytest.raises(ModelLoadError) as err:
        resolve({"architectures": ["DebertaV2ForSequenceClassificationX"]}, source="here")
    text = str(err.value)
    assert "DebertaV2ForSequenceClassificationX" in text and "here" in text
    assert all(a in text for f in families() for a in f.architectures)


def test_names_are_never_matched_by_substring() -> None:
    # "Bert" in the name, a BERT-ish model type in the repo id: neither picks a family.
    for config in ({"architectures": ["MyBertForSequenceClassification"]},
                   {"model_type": "bert-generation"}):
        with pytest.raises(ModelLoadError):
            resolve(config, repo_id="cross-encoder/ms-marco-MiniLM-L-6-v2-fork")
    assert architectures.repo_family("Qwen/Qwen3-Reranker-0.6B-fork") is None


def test_a_rule_must_fit_the_architecture() -> None:
    with pytest.raises(ModelLoadError, match="rules for it: bert"):
        resolve({"architectures": ["BertForSequenceClassification"]}, rule="qwen3")
    assert resolve({"architectures": ["BertForSequenceClassification"]}, rule="bert").name == (
        "bert")


def test_an_ambiguous_architecture_needs_a_rule_or_a_known_repo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    qwen3 = architectures.family_named("qwen3")
    other = dataclasses.replace(qwen3, name="other-yes-no", repos=("acme/other-reranker",))
    monkeypatch.setattr(architectures, "_FAMILIES", (*families(), other))
    config = {"architectures": ["Qwen3ForCausalLM"]}
    with pytest.raises(ModelLoadError) as err:
        resolve(config, repo_id="someone/fine-tune")
    assert "qwen3" in str(err.value) and "other-yes-no" in str(err.value)
    assert "'rule'" in str(err.value)
    assert resolve(config, repo_id="acme/other-reranker").name == "other-yes-no"
    assert resolve(config, repo_id="Qwen/Qwen3-Reranker-4B").name == "qwen3"
    assert resolve(config, rule="other-yes-no").name == "other-yes-no"


def test_custom_rule_field_is_checked_against_the_table() -> None:
    assert CustomConfig(model_id="x", rule="qwen3").rule == "qwen3"
    with pytest.raises(ValidationError, match="unknown rule 'nope'; rules: bert"):
        CustomConfig(model_id="x", rule="nope")


def test_routing_and_window_rules_come_from_the_table() -> None:
    assert is_decoder_config({"architectures": ["Qwen3ForCausalLM"]})
    assert is_decoder_config({"architectures": ["GPTNeoXForCausalLM"]})  # refused later
    assert not is_decoder_config({"architectures": ["BertForSequenceClassification"]})
    assert is_decoder_config({}, "Qwen/Qwen3-Reranker-0.6B")
    assert position_offset({"model_type": "xlm-roberta", "pad_token_id": 1}) == 2
    assert position_offset({"model_type": "bert", "pad_token_id": 0}) == 0


def test_the_kit_has_a_module_per_family() -> None:
    kits = all_families()
    assert sorted(k.NAME for k in kits) == sorted(f.name for f in families())
    for kit in kits:
        assert callable(kit.make_checkpoint) and callable(kit.reference_scores)


_SHAPES = {"qwen3": {"max_length": 256}}
_DOCS = ["a cat sat on the mat", "water is wet", "日本語の文書 and a cat", ""]


@pytest.mark.parametrize("kit", all_families(), ids=lambda k: k.NAME)
def test_every_family_scores_like_its_reference(kit: object, tmp_path: Path) -> None:
    """The kit's checkpoint, built from safetensors, scores as the kit's float64 reference:
    a padded mixed-length batch with non-ASCII text and an empty document."""
    folder = kit.make_checkpoint(tmp_path / "model")  # type: ignore[attr-defined]
    config = json.loads((folder / "config.json").read_text())
    assert resolve(config).name == kit.NAME  # type: ignore[attr-defined]
    max_length = _SHAPES.get(kit.NAME, {}).get("max_length", 128)  # type: ignore[attr-defined]
    backend = build_backend(parse_backend_config({
        "type": "custom", "model_id": str(folder), "model_format": "safetensors",
        "max_length": max_length, "cache_dir": str(tmp_path / "cache")}))
    try:
        got = backend.score("is the cat here?", _DOCS)
    finally:
        backend.close()
    want = kit.reference_scores(folder, "is the cat here?", _DOCS,  # type: ignore[attr-defined]
                                max_length=max_length)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=1e-4)
