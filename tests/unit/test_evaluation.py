"""nDCG@10, MRR@10 and Recall@100 against figures worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reranker.errors import InvalidInputError
from reranker.evaluation import evaluate_run, evaluate_runs, format_report
from reranker.ir import write_trec_qrels, write_trec_run

pytest.importorskip("ir_measures")

L2 = math.log2
QRELS = {"q1": {"a": 2, "b": 1, "z": 1}, "q2": {"c": 1}, "q3": {"x": 0}}


def _ranked(*docs: str) -> dict[str, float]:
    return {d: float(len(docs) - i) for i, d in enumerate(docs)}


def test_hand_computed_case() -> None:
    # q1: b a y (gains 1 2 0; z never retrieved); q2: y c; q3 has no relevant document.
    run = {"q1": _ranked("b", "a", "y"), "q2": _ranked("y", "c"), "q3": _ranked("x")}
    got = evaluate_run(QRELS, run)
    ndcg_q1 = (1 + 2 / L2(3)) / (2 + 1 / L2(3) + 1 / L2(4))
    ndcg_q2 = (1 / L2(3)) / 1
    assert got["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2 + 0) / 3, abs=1e-9)
    assert got["MRR@10"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-9)
    assert got["Recall@100"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-9)


def test_cutoffs_apply() -> None:
    docs = [f"n{i}" for i in range(10)] + ["c"]  # relevant document at rank 11
    got = evaluate_run(QRELS, {"q2": _ranked(*docs)}, ["MRR@10", "nDCG@10", "Recall@100",
                                                       "Recall@5"])
    # Means over the three qrels queries; q1 and q3 are not in the run.
    assert got == {"MRR@10": 0.0, "nDCG@10": 0.0, "Recall@100": 1 / 3, "Recall@5": 0.0}


def test_unanswered_queries_score_zero_and_unjudged_ones_are_ignored() -> None:
    assert evaluate_run(QRELS, {"q9": _ranked("a")}, ["MRR@10"]) == {"MRR@10": 0.0}
    assert evaluate_run(QRELS, {"q2": _ranked("c"), "q9": _ranked("a")}, ["MRR@10"]) == {
        "MRR@10": pytest.approx(1 / 3)}


def test_unknown_measure_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="unknown measure"):
        evaluate_run(QRELS, {}, ["Bogus@3"])


def test_runs_side_by_side_from_files(tmp_path: Path) -> None:
    write_trec_qrels(tmp_path / "qrels", QRELS)
    write_trec_run(tmp_path / "first.trec", {"q1": [("y", 3), ("b", 2), ("a", 1)],
                                             "q2": [("c", 1)]})
    write_trec_run(tmp_path / "second.trec", {"q1": [("a", 3), ("b", 2), ("y", 1)],
                                              "q2": [("c", 1)]})
    with open(tmp_path / "second.trec", "a") as fh:
        fh.write("q2 Q0 broken\n")
    report = evaluate_runs(tmp_path / "qrels", [tmp_path / "first.trec",
                                                tmp_path / "second.trec"])
    first, second = report.runs
    assert first.values["MRR@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # q3: not answered
    assert second.values["MRR@10"] == pytest.approx(2 / 3)
    assert second.values["nDCG@10"] > first.values["nDCG@10"]
    assert (first.queries, second.queries, len(second.bad_rows)) == (2, 2, 1)
    table = format_report(report)
    head, row1, row2 = table.splitlines()[:3]
    assert head.split() == ["run", "nDCG@10", "MRR@10", "Recall@100", "queries"]
    assert row1.split()[0] == "first.trec" and row2.split()[2] == "0.6667"
    assert "second.trec: 1 bad lines skipped (first: line 5" in table
    data = json.loads(format_report(report, "json"))
    assert data["runs"][1]["MRR@10"] == pytest.approx(2 / 3) and data["qrels_queries"] == 3


def test_same_file_names_are_told_apart(tmp_path: Path) -> None:
    write_trec_qrels(tmp_path / "qrels", QRELS)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_trec_run(tmp_path / sub / "run.trec", {"q2": [("c", 1.0)]})
    report = evaluate_runs(tmp_path / "qrels", [tmp_path / "a" / "run.trec",
                                                tmp_path / "b" / "run.trec"])
    assert [r.name for r in report.runs] == [str(tmp_path / s / "run.trec") for s in "ab"]
    with pytest.raises(InvalidInputError):
        evaluate_runs(tmp_path / "qrels", [])


def test_eval_command_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reranker.cli import main

    write_trec_qrels(tmp_path / "qrels", {"q1": {"a": 1}})
    write_trec_run(tmp_path / "r.trec", {"q1": [("b", 2.0), ("a", 1.0)]})
    assert main(["eval", "--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "r.trec"),
                 "--measure", "MRR@10", "--measure", "P@1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "MRR@10", "P@1", "queries"]
    assert lines[1].split() == ["r.trec", "0.5000", "0.0000", "1"]
    assert main(["eval", "--qrels", str(tmp_path / "missing"), "--run", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
