"""``reranker models``: the supported-models table, rendered from the architecture table."""

from __future__ import annotations

import dataclasses
import json

import pytest

from reranker.cli.main import main
from reranker.models import architectures
from reranker.models.architectures import families, supported_models_markdown


def test_plain_text_lists_every_family_with_its_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    blocks = out.strip().split("\n\n")
    assert len(blocks) == len(families())
    for family, block in zip(families(), blocks, strict=True):
        lines = block.splitlines()
        assert lines[0].startswith(f"{family.name}  (") and family.kind in lines[0]
        assert f"architectures: {', '.join(family.architectures)}" in block
        assert f"rule:          {family.rule}" in block
        assert f"max length:    {family.max_length}" in block
        assert "|" not in block  # plain text, not Markdown


def test_json_and_markdown_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [f.name for f in families()]
    assert rows[-1]["takes_instruction"] is True and rows[0]["kind"] == "encoder"
    assert main(["models", "--markdown"]) == 0
    assert capsys.readouterr().out == supported_models_markdown()


def test_a_new_table_entry_shows_up_without_touching_the_cli(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    extra = dataclasses.replace(architectures.family_named("bert"), name="newfam",
                                architectures=("NewForSequenceClassification",))
    monkeypatch.setattr(architectures, "_FAMILIES", (*families(), extra))
    assert main(["models"]) == 0
    assert "newfam  (" in capsys.readouterr().out
    assert "`NewForSequenceClassification`" in supported_models_markdown()
