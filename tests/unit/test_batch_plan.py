"""Batch-job planning and the output folder, without Ray: shards, the text join, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.batch.plan import plan_candidate_shards, plan_ir
from deployments.batch.store import OutputStore
from reranker.errors import ConfigError
from reranker.ir import BadRow


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ir_files(tmp_path: Path) -> dict[str, Path]:
    corpus = [{"_id": f"d{i}", "text": f"text {i}"} for i in range(8)]
    corpus.append({"_id": "blank", "text": ""})
    run = [f"q{q} Q0 d{(q + r) % 8} {r + 1} {10 - r} t" for q in range(5) for r in range(3)]
    run[4] = "q1 Q0 missing 2 9 t"
    run.append("qX Q0 d1 1 1 t")
    run.append("q9 Q0 blank 1 1 t")
    return {
        "corpus": _lines(tmp_path / "corpus.jsonl", [json.dumps(c) for c in corpus]),
        "queries": _lines(tmp_path / "queries.jsonl", [
            json.dumps({"_id": f"q{i}", "text": f"query {i}"}) for i in [*range(5), 9]]),
        "run": _lines(tmp_path / "run.trec", run),
    }


def test_ir_plan_shards_in_run_order_and_joins_texts(ir_files: dict[str, Path]) -> None:
    plan = plan_ir(ir_files["run"], ir_files["queries"], ir_files["corpus"], depth=2,
                   shard_size=2)
    shards = list(plan.shards)
    assert [s for s, _ in shards] == [0, 1, 2] and plan.shard_count == 3
    rows = [r for _, t in shards for r in t.to_pylist()]
    assert [(r["shard"], r["seq"], r["shard_rows"], r["query_id"]) for r in rows] == [
        (0, 0, 2, "q0"), (0, 1, 2, "q1"), (1, 0, 2, "q2"), (1, 1, 2, "q3"), (2, 0, 1, "q4")]
    texts = plan.corpus.column("text").to_pylist()
    for r in rows:
        assert [texts[i] for i in r["doc_rows"]] == [f"text {d[1:]}" for d in r["doc_ids"]]
    assert rows[1]["doc_ids"] == ["d1"] and rows[1]["line"] == 4  # 'missing' rejected
    # Only the documents the run needs (at depth 2) are kept in the corpus table.
    assert sorted(plan.corpus.column("_id").to_pylist()) == ["d0", "d1", "d2", "d3", "d4",
                                                             "d5"]
    reasons = sorted((b.line, b.reason.split(":")[0]) for b in plan.rejects)
    assert reasons == [(5, "docid not in the corpus"), (16, "query id not in the queries file"),
                       (17, "document unusable")]


def test_ir_plan_is_deterministic(ir_files: dict[str, Path]) -> None:
    def tables() -> list[list[dict[str, object]]]:
        plan = plan_ir(ir_files["run"], ir_files["queries"], ir_files["corpus"], depth=3,
                       shard_size=3)
        return [t.to_pylist() for _, t in plan.shards]

    assert tables() == tables()


def test_candidate_shards_span_files(tmp_path: Path) -> None:
    a = _lines(tmp_path / "a.jsonl", ["{}"] * 5)
    b = _lines(tmp_path / "b.jsonl", ["{}"] * 2)
    parts = plan_candidate_shards([a, b], 2).shards
    assert [(Path(p.path).name, p.first_line, p.rows) for p in parts] == [
        ("a.jsonl", 1, 2), ("a.jsonl", 3, 2), ("a.jsonl", 5, 1), ("b.jsonl", 1, 2)]


def _result(qid: str, docs: list[str], error: str = "") -> dict[str, object]:
    return {"query_id": qid, "doc_ids": docs, "scores": [1.0 / (i + 1) for i in range(len(docs))],
            "input_ranks": list(range(len(docs), 0, -1)), "pairs": len(docs), "error": error,
            "rejects": ['{"line": 3}'] if error else []}


def test_store_commits_resumes_and_finishes(tmp_path: Path) -> None:
    job = {"model": "m", "shard_size": 2}
    store = OutputStore(tmp_path / "out")
    assert store.open(job) == {} and store.attempt == 1
    store.commit_shard(1, [_result("q3", ["c"])])
    store.commit_shard(0, [_result("q1", ["a", "b"]), _result("q2", [], error="boom")])
    store.write_plan_rejects([])
    (tmp_path / "out" / "shards" / ".00002.trec.x.tmp").write_text("half")
    with open(tmp_path / "out" / "manifest.jsonl", "a") as fh:
        fh.write('{"event": "shard", "shard": 2, "fi')  # torn by a kill

    again = OutputStore(tmp_path / "out")
    done = again.open(job)
    assert sorted(done) == [0, 1] and again.attempt == 2
    assert (done[0]["queries"], done[0]["pairs"], done[0]["failures"]) == (1, 2, 1)
    assert not list((tmp_path / "out" / "shards").glob(".*.tmp"))
    files = again.finish([1, 0], {"queries": 2})
    assert Path(files["run"]).read_text().splitlines() == [
        "q1 Q0 a 1 1.0 reranker", "q1 Q0 b 2 0.5 reranker", "q3 Q0 c 1 1.0 reranker"]
    results = [json.loads(x) for x in Path(files["results"]).read_text().splitlines()]
    assert results[1] == {"query_id": "q1", "doc_id": "b", "rank": 2, "score": 0.5,
                          "input_rank": 1}
    assert Path(files["rejects"]).read_text() == '{"line": 3}\n'
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["queries"] == 2


def test_store_treats_a_shard_with_missing_files_as_not_done(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    store.open({"a": 1})
    store.commit_shard(0, [_result("q", ["d"])])
    (tmp_path / "shards" / "00000.trec").unlink()
    assert OutputStore(tmp_path).open({"a": 1}) == {}


def test_a_torn_manifest_line_does_not_swallow_the_next_start(tmp_path: Path) -> None:
    # Regression (issue 21 item 10): the start event was appended onto the torn line, so it
    # could not be read back and the next run reused the same attempt number.
    job = {"model": "m"}
    store = OutputStore(tmp_path)
    store.open(job)
    store.commit_shard(0, [_result("q", ["d"])])
    with open(tmp_path / "manifest.jsonl", "a") as fh:
        fh.write('{"event": "shard", "shard": 1, "fi')  # a kill mid-append
    attempts = []
    for _ in range(3):
        again = OutputStore(tmp_path)
        assert sorted(again.open(job)) == [0]
        attempts.append(again.attempt)
    assert attempts == [2, 3, 4]
    again.commit_shard(1, [_result("q2", ["e"])])
    assert sorted(OutputStore(tmp_path).open(job)) == [0, 1]
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    starts = [json.loads(x)["attempt"] for x in lines[2:] if x.startswith('{"event": "start"')]
    assert starts == [2, 3, 4, 5]


def test_store_refuses_another_job_unless_overwrite(tmp_path: Path) -> None:
    OutputStore(tmp_path).open({"model": "a", "shard_size": 2})
    with pytest.raises(ConfigError, match="differs in: model"):
        OutputStore(tmp_path).open({"model": "b", "shard_size": 2})
    store = OutputStore(tmp_path)
    assert store.open({"model": "b", "shard_size": 2}, overwrite=True) == {}
    assert store.attempt == 1


def test_store_parquet_results(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = OutputStore(tmp_path, output_format="parquet", tag="t")
    store.open({})
    store.commit_shard(0, [_result("q1", ["a", "b"])])
    store.commit_shard(1, [])
    store.write_plan_rejects([])
    files = store.finish([0, 1], {})
    table = pq.read_table(files["results"])
    assert table.column_names == ["query_id", "doc_id", "rank", "score", "input_rank"]
    assert table.column("doc_id").to_pylist() == ["a", "b"]


def test_plan_rejects_are_written_by_file_then_line(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    store.open({})
    rows = [BadRow("run", 7, "b"), BadRow("run", 6, "a"), BadRow("corpus", 9, "c")]
    assert store.write_plan_rejects(rows) == 3
    written = [json.loads(x) for x in (tmp_path / "rejects.plan.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in written] == [("corpus", 9), ("run", 6), ("run", 7)]


def test_batch_command_rejects_bad_arguments_before_starting_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reranker.cli import main

    assert main(["batch", "-o", str(tmp_path), "--run", "r.trec"]) == 2
    assert "give candidate files, or all of run, queries and corpus" in capsys.readouterr().err
    assert main(["batch", "-o", str(tmp_path), "--candidates", "c.jsonl", "--run", "r"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["batch", "-m", "nonsense model", "-o", str(tmp_path),
                 "--candidates", "c.jsonl"]) == 2
    assert "cannot read model" in capsys.readouterr().err
