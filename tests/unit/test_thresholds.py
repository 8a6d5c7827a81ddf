"""Picking ``min_score`` on labelled data, and the CLI's ``--min-score`` and spans in JSON.

The synthetic run below is small enough to count by hand; the expected thresholds are checked
by brute force over every candidate cut, an independent computation of the same definition.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reranker.cli.main import main
from reranker.errors import InvalidInputError
from reranker.thresholds import parse_threshold_target, pick_threshold

QRELS = {"q1": {"a": 1, "b": 0, "c": 2}, "q2": {"x": 1, "y": 1}}
# 8 pairs, 4 relevant documents (a, c, x, y); "z" is unjudged (not relevant).
RUN = {
    "q1": {"a": 0.95, "b": 0.90, "c": 0.60, "d": 0.20},
    "q2": {"x": 0.85, "z": 0.70, "y": 0.40, "w": 0.10},
}


def _brute(metric: str, target: float) -> tuple[float, float, float]:
    pairs = [(s, QRELS.get(q, {}).get(d, 0) >= 1) for q, docs in RUN.items()
             for d, s in docs.items()]
    rows = []
    for t in sorted({s for s, _ in pairs}):
        kept = [r for s, r in pairs if s >= t]
        precision, recall = sum(kept) / len(kept), sum(kept) / 4
        rows.append((t, precision, recall))
    ok = [r for r in rows if (r[1] if metric == "precision" else r[2]) >= target]
    return min(ok) if metric == "precision" else max(ok)


@pytest.mark.parametrize(("metric", "target", "expected"), [
    ("precision", 1.0, 0.95),   # only a
    ("precision", 0.75, 0.95),  # a b x is 2 of 3: below 0.75, and so is every lower cut
    ("precision", 0.6, 0.40),   # a b x z c y: 4 of 6 (a b x z c is 3 of 5, exactly 0.6)
    ("precision", 0.5, 0.10),   # all 8: 4 of 8
    ("recall", 0.5, 0.85),      # a, x
    ("recall", 1.0, 0.40),      # every relevant one kept
])
def test_pick_threshold(metric: str, target: float, expected: float) -> None:
    pick = pick_threshold(QRELS, RUN, metric, target)  # type: ignore[arg-type]
    assert pick.threshold == expected
    assert (pick.threshold, pick.precision, pick.recall) == pytest.approx(_brute(metric, target))
    assert pick.pairs == 8 and pick.relevant == 4


def test_unreachable_target_and_bad_input() -> None:
    precise = {"q1": {"b": 0.99, "a": 0.5}}
    with pytest.raises(InvalidInputError, match="best: 0.5000") as err:
        pick_threshold(QRELS, precise, "precision", 0.9)
    assert err.value.param == "threshold_for"
    with pytest.raises(InvalidInputError):
        pick_threshold({"q9": {"a": 1}}, RUN, "recall", 0.5)
    for bad in ("f1=0.9", "precision=x", "recall=1.5", "precision=0"):
        with pytest.raises(InvalidInputError):
            parse_threshold_target(bad)
    assert parse_threshold_target("Recall=0.8") == ("recall", 0.8)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    qrels = tmp_path / "qrels"
    qrels.write_text("".join(f"{q} 0 {d} {r}\n" for q, docs in QRELS.items()
                             for d, r in docs.items()))
    run = tmp_path / "run.trec"
    lines = []
    for q, docs in RUN.items():
        ranked = sorted(docs.items(), key=lambda kv: -kv[1])
        lines += [f"{q} Q0 {d} {i} {s} model\n" for i, (d, s) in enumerate(ranked, 1)]
    run.write_text("".join(lines))
    return qrels, run


def test_cli_threshold_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ir_measures")
    qrels, run = _files(tmp_path)
    assert main(["eval", "--qrels", str(qrels), "--run", str(run), "--format", "json",
                 "--threshold-for", "precision=0.75", "--threshold-for", "recall=1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(t["metric"], t["threshold"]) for t in out["thresholds"]] == [
        ("precision", 0.95), ("recall", 0.40)]
    assert main(["eval", "--qrels", str(qrels), "--run", str(run),
                 "--threshold-for", "precision=0.75"]) == 0
    assert "run.trec: min_score 0.95 for precision >= 0.75" in capsys.readouterr().out
    assert main(["eval", "--qrels", str(qrels), "--run", str(run),
                 "--threshold-for", "f1=0.5"]) == 2
    # Without the option the JSON keeps its shape.
    assert main(["eval", "--qrels", str(qrels), "--run", str(run), "--format", "json"]) == 0
    assert "thresholds" not in json.loads(capsys.readouterr().out)


def test_cli_min_score_and_spans(bert_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reranker import Reranker
    from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

    docs = [LONG_DOCUMENT, *DOCUMENTS[:3]]
    config = {"type": "custom", "model_id": str(bert_model), "max_length": 48,
              "long_documents": "chunk"}
    ref = Reranker(config).rerank(QUERY, docs)
    cut = ref[1].score
    argv = ["rerank", "-q", QUERY, "--model", json.dumps(config), "--format", "json",
            "--min-score", str(cut), "--no-documents", *docs]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in out["results"]] == [r.index for r in ref if r.score >= cut]
    by_index = {r.index: r for r in ref}
    assert all(tuple(r["span"]) == by_index[r["index"]].span for r in out["results"])
