"""Batch input never fails a shard or loses candidates silently: lines json cannot read are
bad rows, a repeated query_id is rejected (not reranked twice), and a TREC run that is not
grouped by query is regrouped on disk so every candidate is reranked."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest

import reranker.ir as ir
from deployments.batch.plan import plan_candidate_shards, plan_ir
from reranker.candidates import CandidateRow, iter_candidates
from reranker.ir import (
    BadRow,
    RunGroup,
    iter_beir_jsonl,
    iter_run_groups,
    read_beir_queries,
    regroup_run,
    run_is_grouped,
)

DEEP = "[" * 200_000 + "]" * 200_000  # deeper than the interpreter's stack


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(qid: str, *docs: str) -> str:
    return json.dumps({"query_id": qid, "query": f"query {qid}", "documents": list(docs)})


def test_deeply_nested_lines_are_bad_rows(tmp_path: Path) -> None:
    cands = _lines(tmp_path / "c.jsonl", [_row("q1", "a"), DEEP, '{"query_id": ' + DEEP + "}",
                                          _row("q2", "b")])
    got = list(iter_candidates(cands))
    assert [row.query_id for row, _ in got if row] == ["q1", "q2"]
    bad = [b for _, rows in got for b in rows]
    assert [(b.line, b.reason) for b in bad] == [(2, "invalid JSON: nested too deeply"),
                                                (3, "invalid JSON: nested too deeply")]
    assert len(bad[0].text) <= 200
    # Planning parses the rows too, and goes on.
    plan = plan_candidate_shards([cands], 10)
    assert [(p.first_line, p.rows) for p in plan.shards] == [(1, 4)] and not plan.rejects
    corpus = _lines(tmp_path / "corpus.jsonl", [json.dumps({"_id": "d1", "text": "x"}), DEEP,
                                                json.dumps({"_id": "d2", "text": "y"})])
    items = list(iter_beir_jsonl(corpus))
    assert [i[0] for i in items if not isinstance(i, BadRow)] == ["d1", "d2"]
    assert [(b.line, b.reason) for b in items if isinstance(b, BadRow)] == [
        (2, "invalid JSON: nested too deeply")]
    queries, bad_q = read_beir_queries(corpus)
    assert list(queries) == ["d1", "d2"] and bad_q[0].line == 2


def test_a_repeated_query_id_is_rejected_and_left_out_of_the_shards(tmp_path: Path) -> None:
    a = _lines(tmp_path / "a.jsonl", [
        _row("q1", "one"), _row("q2", "two"), _row("q1", "again"), _row("q3", "three"),
        json.dumps({"query_id": "q4", "query": "", "documents": ["x"]}),  # unusable: no query
        _row("q4", "four"), _row("q5", "five"),
    ])
    b = _lines(tmp_path / "b.jsonl", [_row("q2", "other file"), _row("q6", "six")])
    plan = plan_candidate_shards([a, b], 2)
    assert [(r.file, r.line, r.query_id) for r in plan.rejects] == [
        (str(a), 3, "q1"), (str(b), 1, "q2")]
    assert "first at" in plan.rejects[0].reason and f"{a} line 1" in plan.rejects[0].reason
    rows: list[CandidateRow] = []
    bad: list[BadRow] = []
    for part in plan.shards:
        for row, rejects in iter_candidates(part):
            rows += [row] if row else []
            bad += rejects
    # Every other row is read exactly once; the first usable q4 row is the second one.
    assert [(r.query_id, r.line) for r in rows] == [
        ("q1", 1), ("q2", 2), ("q3", 4), ("q4", 6), ("q5", 7), ("q6", 2)]
    assert [(b.line, b.reason) for b in bad] == [(5, "missing or empty 'query'")]
    assert all(p.rows <= 2 for p in plan.shards)


def test_a_repeated_query_id_in_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    records = [json.loads(_row(q, "doc")) for q in ["q1", "q2", "q1", "q3"]]
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=2)
    plan = plan_candidate_shards([path], 10)
    assert [(r.line, r.query_id) for r in plan.rejects] == [(3, "q1")]
    got = [row.query_id for part in plan.shards for row, _ in iter_candidates(part) if row]
    assert got == ["q1", "q2", "q3"]


def _run_lines(queries: int, per_query: int) -> list[str]:
    return [f"q{q} Q0 d{q}_{r} {r + 1} {100 - r} bm25"
            for q in range(queries) for r in range(per_query)]


@pytest.mark.parametrize("bucket_bytes", [64 << 20, 200])
def test_an_ungrouped_run_is_regrouped_with_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket_bytes: int
) -> None:
    monkeypatch.setattr(ir, "_BUCKET_BYTES", bucket_bytes)  # 200: many buckets
    lines = _run_lines(12, 10)
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    shuffled.insert(5, "q3 Q0 broken")
    shuffled.insert(9, shuffled[20])  # a (query, docid) line that comes again at line 22
    path = _lines(tmp_path / "run.trec", shuffled)
    assert run_is_grouped(_lines(tmp_path / "grouped.trec", lines))
    assert not run_is_grouped(path)
    # Read as it is, the revisits are lost (what the job did before).
    lost = [i for i in iter_run_groups(path) if isinstance(i, BadRow)]
    assert sum("not grouped" in b.reason for b in lost) > 50
    regrouped = regroup_run(path, tmp_path / "work")
    assert run_is_grouped(regrouped)
    items = list(iter_run_groups(regrouped, depth=4))
    groups = [g for g in items if isinstance(g, RunGroup)]
    assert sorted(g.query_id for g in groups) == sorted(f"q{q}" for q in range(12))
    for g in groups:
        q = g.query_id[1:]
        assert [x.doc_id for x in g.lines] == [f"d{q}_{r}" for r in range(4)]
        assert g.dropped == 6
        for x in g.lines:  # the original file's line numbers
            assert shuffled[x.line - 1].split()[2] == x.doc_id
    bad = [b for b in items if isinstance(b, BadRow)]
    assert sorted((b.line, b.reason.split(" (")[0]) for b in bad) == [
        (6, "expected 6 fields"), (22, "docid repeated within the query")]
    assert {b.file for b in bad} == {str(path)}
    # The copy is deterministic.
    again = regroup_run(path, tmp_path / "work2")
    assert again.path.read_text() == regrouped.path.read_text()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["run.grouped.txt"]


def _regroup_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("reranker-regroup-*"))


def test_ir_plan_reads_an_ungrouped_run_whole(tmp_path: Path) -> None:
    lines = _run_lines(6, 5)
    corpus = _lines(tmp_path / "corpus.jsonl", [
        json.dumps({"_id": line.split()[2], "text": f"text of {line.split()[2]}"})
        for line in lines])
    queries = _lines(tmp_path / "queries.jsonl", [
        json.dumps({"_id": f"q{q}", "text": f"query {q}"}) for q in range(6)])
    shuffled = lines[:]
    random.Random(3).shuffle(shuffled)
    grouped_plan = plan_ir(_lines(tmp_path / "g.trec", lines), queries, corpus, depth=None,
                           shard_size=4)
    before = _regroup_dirs()
    plan = plan_ir(_lines(tmp_path / "s.trec", shuffled), queries, corpus, depth=None,
                   shard_size=4)
    assert len(_regroup_dirs() - before) == 1  # the grouped copy, until the shards are cut
    assert grouped_plan.run_order == "grouped" and plan.run_order == "regrouped"
    rows = [r for _, table in plan.shards for r in table.to_pylist()]
    assert not plan.rejects
    assert sorted((r["query_id"], sorted(r["doc_ids"])) for r in rows) == sorted(
        (r["query_id"], sorted(r["doc_ids"]))
        for _, table in grouped_plan.shards for r in table.to_pylist())
    assert sum(len(r["doc_ids"]) for r in rows) == 30
    assert all(shuffled[r["line"] - 1].split()[0] == r["query_id"] for r in rows)
    assert _regroup_dirs() - before == set()
