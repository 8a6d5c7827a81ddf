"""TREC / BEIR / candidate-file readers and writers: parsing, bad rows with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reranker.candidates import (
    FileRange,
    iter_candidates,
    parse_candidate_record,
    split_candidate_file,
)
from reranker.ir import (
    BadRow,
    RunGroup,
    atomic_write,
    beir_text,
    format_trec_line,
    iter_beir_jsonl,
    iter_run_groups,
    read_beir_queries,
    read_trec_qrels,
    read_trec_run,
    write_trec_qrels,
    write_trec_run,
)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- TREC runs ---------------------------------------------------------------------------------


def test_run_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "run", [
        "q1 Q0 d1 1 2.5 bm25",
        "q1 Q0 d2 1",                   # 4 fields
        "",                             # blank: ignored, still counted as a line
        "q1 Q0 d3 x 1.0 bm25",          # rank not an integer
        "q1 Q0 d4 3 nan bm25",          # not finite
        "q1 Q0 d1 4 0.5 bm25",          # repeated docid
        "q2 Q0 d9 1 -1e3 bm25",
    ])
    run, bad = read_trec_run(path)
    assert run == {"q1": {"d1": 2.5}, "q2": {"d9": -1000.0}}
    assert [(b.line, b.reason.split(" (")[0]) for b in bad] == [
        (2, "expected 6 fields"), (4, "rank must be an integer and score a number"),
        (5, "score is not finite"), (6, "docid repeated within the query")]
    assert bad[0].text == "q1 Q0 d2 1" and bad[3].doc_id == "d1"


def test_run_groups_sort_by_score_cut_at_depth_and_reject_regrouping(tmp_path: Path) -> None:
    path = _write(tmp_path / "run", [
        "q1 Q0 a 1 1.0 t", "q1 Q0 b 2 3.0 t", "q1 Q0 c 3 3.0 t", "q1 Q0 d 4 0.5 t",
        "q2 Q0 x 1 1.0 t",
        "q1 Q0 e 5 9.0 t",  # q1 again, after q2
    ])
    items = list(iter_run_groups(path, depth=3))
    groups = [g for g in items if isinstance(g, RunGroup)]
    assert [(g.query_id, [x.doc_id for x in g.lines], g.dropped) for g in groups] == [
        ("q1", ["b", "c", "a"], 1), ("q2", ["x"], 0)]
    bad = [b for b in items if isinstance(b, BadRow)]
    assert len(bad) == 1 and bad[0].line == 6 and "not grouped" in bad[0].reason


def test_run_ties_keep_rank_then_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "run", ["q Q0 a 2 1.0 t", "q Q0 b 1 1.0 t", "q Q0 c 1 1.0 t"])
    (group,) = list(iter_run_groups(path))
    assert isinstance(group, RunGroup)
    assert [x.doc_id for x in group.lines] == ["b", "c", "a"]


def test_trec_run_round_trips_exact_scores(tmp_path: Path) -> None:
    run = {"q1": [("d3", 0.1 + 0.2), ("d1", 1e-12)], "q2": [("ü", 5.0)]}
    write_trec_run(tmp_path / "r.trec", run, tag="mine")
    back, bad = read_trec_run(tmp_path / "r.trec")
    assert not bad and back == {q: dict(docs) for q, docs in run.items()}
    assert (tmp_path / "r.trec").read_text(encoding="utf-8").splitlines()[0] == (
        "q1 Q0 d3 1 0.30000000000000004 mine")
    assert format_trec_line("q", "d", 7, 2.0, "t") == "q Q0 d 7 2.0 t\n"


def test_qrels_read_write(tmp_path: Path) -> None:
    write_trec_qrels(tmp_path / "qrels", {"q1": {"d1": 2, "d2": 0}})
    with open(tmp_path / "qrels", "a") as fh:
        fh.write("q1 0 d3\nq1 0 d4 high\n")
    qrels, bad = read_trec_qrels(tmp_path / "qrels")
    assert qrels == {"q1": {"d1": 2, "d2": 0}}
    assert [b.line for b in bad] == [3, 4]


# --- BEIR --------------------------------------------------------------------------------------


def test_beir_text_joins_title_and_text() -> None:
    assert beir_text({"title": "Title", "text": "body"}) == "Title body"
    assert beir_text({"title": "", "text": " body "}) == "body"
    assert beir_text({"text": "body"}) == "body"
    with pytest.raises(ValueError):
        beir_text({"title": 3, "text": "x"})


def test_beir_corpus_bad_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "corpus.jsonl", [
        json.dumps({"_id": "d1", "title": "T", "text": "Grüße, 世界"}),
        "{broken",
        json.dumps([1, 2]),
        json.dumps({"text": "no id"}),
        json.dumps({"_id": "d5", "text": "  "}),
        json.dumps({"_id": 6, "text": "int ids are fine"}),
        json.dumps({"_id": "d7", "text": ["not", "text"]}),
    ])
    items = list(iter_beir_jsonl(path))
    good = [i for i in items if not isinstance(i, BadRow)]
    assert good == [("d1", "T Grüße, 世界", 1), ("6", "int ids are fine", 6)]
    bad = {i.line: i for i in items if isinstance(i, BadRow)}
    assert sorted(bad) == [2, 3, 4, 5, 7]
    assert bad[5].reason == "empty text" and bad[5].doc_id == "d5"
    assert bad[2].reason.startswith("invalid JSON")


def test_beir_queries_keep_the_first_of_a_repeated_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", [json.dumps({"_id": "q1", "text": "a"}),
                                         json.dumps({"_id": "q1", "text": "b"}),
                                         json.dumps({"_id": "q2", "text": ""})])
    queries, bad = read_beir_queries(path)
    assert queries == {"q1": "a"}
    assert [(b.line, b.query_id) for b in bad] == [(2, "q1"), (3, "q2")]


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_leaves_old_file_and_no_temp_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


# --- candidate files ---------------------------------------------------------------------------


def test_candidate_record_documents_ids_and_rejects() -> None:
    row, bad = parse_candidate_record({
        "query_id": 7, "query": "q",
        "documents": ["plain", {"id": "x", "title": "T", "text": "t"}, {"text": "no id"},
                      "", None, {"id": "has space", "text": "t"}, {"id": "x", "text": "dup"}],
    }, "f.jsonl", 3)
    assert row is not None
    assert (row.query_id, row.doc_ids, row.texts, row.line) == (
        "7", ("0", "x", "2"), ("plain", "T t", "no id"), 3)
    assert [b.reason for b in bad] == [
        "documents[3] has empty text", "documents[4] is not a string or object",
        "documents[5] has a bad 'id'", "documents[6] repeats id 'x'"]
    assert all(b.line == 3 and b.query_id == "7" for b in bad)


@pytest.mark.parametrize("record, reason", [
    ({"query": "q", "documents": ["a"]}, "missing 'query_id'"),
    ({"query_id": "q1", "query": " ", "documents": ["a"]}, "missing or empty 'query'"),
    ({"query_id": "q1", "query": "q", "documents": "a"}, "'documents' must be a list"),
    ({"query_id": "q1", "query": "q", "documents": []}, "no usable documents"),
    ({"query_id": "q1", "query": "q", "documents": [""]}, "no usable documents"),
    (["not", "a", "row"], "row is not an object"),
])
def test_unusable_candidate_rows(record: object, reason: str) -> None:
    row, bad = parse_candidate_record(record, "f", 9)
    assert row is None and bad[-1].reason.startswith(reason) and bad[-1].line == 9


def test_split_jsonl_into_ranges_reads_every_line_once(tmp_path: Path) -> None:
    lines = [json.dumps({"query_id": f"q{i}", "query": "q", "documents": ["d"]})
             for i in range(7)]
    lines[3] = ""
    lines[5] = "{bad"
    path = _write(tmp_path / "c.jsonl", lines)
    parts = split_candidate_file(path, 3)
    assert [(p.first_line, p.rows) for p in parts] == [(1, 3), (4, 3), (7, 1)]
    assert parts[-1].end == path.stat().st_size
    seen = [(row.line if row else bad[0].line) for p in parts for row, bad in iter_candidates(p)]
    assert seen == [1, 2, 3, 5, 6, 7]
    whole = [(row.line if row else bad[0].line) for row, bad in iter_candidates(path)]
    assert whole == seen


def test_file_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"query_id": "a", "query": "q", "documents": ["d"]}))
    (part,) = split_candidate_file(path, 10)
    assert [r.query_id for r, _ in iter_candidates(part) if r] == ["a"]


def test_parquet_ranges_cross_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"query_id": f"q{i}", "query": "q",
             "documents": [{"id": "a", "text": "x"}, {"id": "b", "text": "" if i == 4 else "y"}]}
            for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=3)
    parts = split_candidate_file(tmp_path / "c.parquet", 4)
    assert [(p.start, p.end, p.first_line) for p in parts] == [(0, 4, 1), (4, 8, 5), (8, 10, 9)]
    got = [(row.query_id, row.line, len(bad)) for p in parts for row, bad in iter_candidates(p)
           if row]
    assert [g[0] for g in got] == [f"q{i}" for i in range(10)]
    assert got[4] == ("q4", 5, 1)
    assert isinstance(parts[0], FileRange)
