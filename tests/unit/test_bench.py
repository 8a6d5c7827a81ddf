"""``reranker bench`` logic (reranker.bench), on the tiny test models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from reranker.bench import run_bench
from reranker.cli.bench import add_bench_parser
from reranker.testing.textsamples import DOCUMENTS, QUERY


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reranker")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_run_bench_reports_figures_and_agreement(bert_model: Path, tmp_path: Path) -> None:
    model = {"type": "custom", "model_id": str(bert_model), "cache_dir": str(tmp_path)}
    requests = [(QUERY, DOCUMENTS), ("another query", DOCUMENTS[:3])]
    results = run_bench([model], requests, optimizations=["none", "fused"])
    assert [r.config.get("optimization", "none") for r in results] == ["none", "fused"]
    for r in results:
        assert r.requests == 2 and r.documents == len(DOCUMENTS) + 3
        assert r.pairs_per_s > 0 and 0 < r.p50_s <= r.p95_s and r.load_s > 0
    assert results[0].agreement == {}
    assert results[1].agreement["top10_overlap"] == 1.0
    assert results[1].agreement["max_score_diff"] < 1e-4
    # Local backends return logits, so the difference is on that scale, and says so.
    assert [r.score_scale for r in results] == ["raw logit", "raw logit"]


def test_cli_command_with_own_documents(
    bert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCUMENTS) + "\n")
    args = _parser().parse_args(
        ["bench", "-m", str(bert_model), "--query", QUERY, "--documents-file", str(docs),
         "--requests", "2", "--json"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1 and out[0]["documents"] == 2 * len([d for d in DOCUMENTS if d])
    assert out[0]["model"].startswith("custom:")


def test_cli_table_with_builtin_requests(
    bert_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(
        ["bench", "-m", str(bert_model), "--requests", "1", "--documents", "5", "--words",
         "40-60"]
    )
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "variant", "load"]
    assert "custom:" in lines[1] and "none" in lines[1]


def test_documents_file_needs_a_query(bert_model: Path, tmp_path: Path) -> None:
    from reranker import InvalidInputError

    (tmp_path / "d.txt").write_text("one\n")
    args = _parser().parse_args(["bench", "-m", str(bert_model), "--documents-file",
                                 str(tmp_path / "d.txt")])
    with pytest.raises(InvalidInputError, match="--query"):
        args.func(args)


def test_table_labels_the_score_difference_scale(
    bert_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(
        ["bench", "-m", str(bert_model), "--optimization", "none,fused", "--requests", "1",
         "--documents", "5", "--words", "40-60"]
    )
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "max raw logit diff" in lines[2] and "diff" not in lines[1]


def test_help_is_plain_text_and_states_the_scale(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["bench", "--help"])
    text = capsys.readouterr().out
    for markup in ("``", "::", ":func:", ":mod:", ":data:"):
        assert markup not in text
    assert "logits for local models" in " ".join(text.split())
    assert "reranker bench --model fast --optimization fused,int8,none" in text


def test_missing_documents_file_is_one_input_error(bert_model: Path, tmp_path: Path) -> None:
    from reranker import InvalidInputError

    missing = tmp_path / "nope.txt"
    args = _parser().parse_args(["bench", "-m", str(bert_model), "--query", "q",
                                 "--documents-file", str(missing)])
    with pytest.raises(InvalidInputError) as info:
        args.func(args)
    assert str(info.value) == f"--documents-file {str(missing)!r}: no such file"
    assert info.value.param == "documents_file"
