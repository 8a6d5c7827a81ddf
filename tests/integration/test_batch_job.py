"""The Ray Data batch job end to end, on the session's local Ray and tiny model folders.

A hand-made BEIR-layout fixture (corpus, queries, qrels, a first-stage run) is written here,
with bad rows planted at known lines. The job's ranking is checked against the in-process
library on the same model, its evaluation against figures worked out by hand, and resume
against a job killed after its first shard.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.batch.job import BatchJobSpec, run_batch_job
from reranker import Reranker
from reranker.cli import main as batch_cli
from reranker.errors import ConfigError
from reranker.ir import beir_text, read_trec_run
from tests.integration.ray_fixtures import REPO_ROOT, RayCluster

pytestmark = pytest.mark.integration

CORPUS = [
    {"_id": "d1", "title": "Solar power", "text": "Solar panels turn sunlight into electricity "
     "with photovoltaic cells."},
    {"_id": "d2", "title": "", "text": "A solar eclipse happens when the moon hides the sun."},
    {"_id": "d3", "title": "Inverters", "text": "An inverter turns the direct current of solar "
     "panels into alternating current for the grid."},
    {"_id": "d4", "title": "Coffee", "text": "Drinking coffee in moderation may improve focus "
     "and lower the risk of some diseases."},
    {"_id": "d5", "title": "", "text": "Coffee beans are roasted seeds of the coffee plant."},
    {"_id": "d6", "title": "Tea", "text": "Green tea contains less caffeine than coffee."},
    {"_id": "d7", "title": "Marathon", "text": "A marathon training plan builds weekly mileage "
     "over sixteen weeks with one long run each weekend."},
    {"_id": "d8", "title": "", "text": "The first marathon commemorates a run from Marathon "
     "to Athens."},
    {"_id": "d9", "title": "Python", "text": "A list comprehension builds a list from an "
     "iterable in one expression: [x * x for x in numbers]."},
    {"_id": "d10", "title": "Snakes", "text": "Pythons are large snakes that squeeze prey."},
    {"_id": "d11", "title": "Rome", "text": "The Roman Empire rose after the republic and "
     "ruled the Mediterranean for centuries."},
    {"_id": "d12", "title": "", "text": "Römische Geschichte: das Kaiserreich 27 v. Chr. "
     "bis 476 n. Chr. — 羅馬帝國."},
    {"_id": "d_empty", "title": "", "text": "   "},
]
QUERIES = [
    {"_id": "q1", "text": "how do solar panels make electricity"},
    {"_id": "q2", "text": "is drinking coffee good for you"},
    {"_id": "q3", "text": "marathon training plan"},
    {"_id": "q4", "text": "python list comprehension"},
    {"_id": "q5", "text": "history of the roman empire"},
]
# qid, docid, first-stage score; lines of the run file in this order (ranks follow).
RUN = [
    ("q1", "d2", 9.0), ("q1", "d1", 8.0), ("q1", "d3", 7.0), ("q1", "d_empty", 6.0),
    ("q2", "d6", 5.0), ("q2", "d404", 4.8), ("q2", "d4", 4.0),
    ("q3", "d8", 3.0), ("q3", "d7", 2.0), ("q3", "d1", 1.0),
    ("q4", "d10", 7.5), ("q4", "d9", 7.0), ("q4", "d5", 1.0), ("q4", "d6", 0.5),
    ("q5", "d12", 2.0), ("q5", "d11", 1.5),
    ("q9", "d1", 1.0),
]
QRELS = {"q1": {"d1": 2, "d3": 1}, "q2": {"d4": 1}, "q3": {"d7": 1}, "q4": {"d9": 1},
         "q5": {"d11": 1, "d12": 1}}
DEPTH = 3  # q1's d_empty and q4's d6 are 4th: cut by depth, not rejected


def _write_run(path: Path) -> dict[tuple[str, str], int]:
    """Write RUN with a malformed line after q2's lines; returns each pair's line number."""
    lines, where = [], {}
    rank: dict[str, int] = {}
    for qid, did, score in RUN:
        rank[qid] = rank.get(qid, 0) + 1
        lines.append(f"{qid} Q0 {did} {rank[qid]} {score} bm25")
        where[(qid, did)] = len(lines)
        if (qid, did) == ("q2", "d404"):
            lines.append("q2 Q0 d99 not-a-rank 1.0 bm25")
    path.write_text("\n".join(lines) + "\n")
    return where


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("beir")
    corpus = [json.dumps(d, ensure_ascii=False) for d in CORPUS]
    corpus.insert(5, '{"_id": "d_broken", "text": ')  # line 6
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    (root / "qrels.tsv").write_text(
        "".join(f"{q} 0 {d} {r}\n" for q, docs in QRELS.items() for d, r in docs.items())
    )
    lines = _write_run(root / "run.trec")
    return {"root": root, "lines": lines, "run": root / "run.trec",
            "queries": root / "queries.jsonl", "corpus": root / "corpus.jsonl",
            "qrels": root / "qrels.tsv"}


def _ir_spec(beir: dict[str, Any], model: Any, output: Path, **kw: Any) -> BatchJobSpec:
    return BatchJobSpec(model=model, output=output, run=beir["run"], queries=beir["queries"],
                        corpus=beir["corpus"], depth=DEPTH, shard_size=2, batch_size=2,
                        progress_interval_s=0.2, **kw)


def _trec_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def _expected_candidates() -> dict[str, list[str]]:
    """Per query, the top DEPTH of the run (by score) less the unusable ones, in that order."""
    texts = {d["_id"]: beir_text(d) for d in CORPUS}
    grouped: dict[str, list[tuple[float, str]]] = {}
    for qid, did, score in RUN:
        grouped.setdefault(qid, []).append((-score, did))
    return {
        qid: [d for _, d in sorted(docs)[:DEPTH] if texts.get(d)]
        for qid, docs in grouped.items() if qid in QRELS
    }


@pytest.fixture(scope="module")
def ir_job(beir: dict[str, Any], bert_model: Path, ray_cluster: RayCluster,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("ir-job")
    seen: list[Any] = []
    spec = _ir_spec(beir, str(bert_model), output)
    summary = run_batch_job(spec, progress=seen.append)
    return {"spec": spec, "summary": summary, "output": output, "progress": seen}


def test_ir_job_writes_a_well_formed_run(ir_job: dict[str, Any]) -> None:
    summary = ir_job["summary"]
    rows = _trec_lines(ir_job["output"] / "run.trec")
    assert all(len(r) == 6 and r[1] == "Q0" and r[5] == "reranker" for r in rows)
    by_query: dict[str, list[list[str]]] = {}
    for r in rows:
        by_query.setdefault(r[0], []).append(r)
    assert list(by_query) == ["q1", "q2", "q3", "q4", "q5"]  # run order, shard by shard
    for qrows in by_query.values():
        assert [int(r[3]) for r in qrows] == list(range(1, len(qrows) + 1))
        scores = [float(r[4]) for r in qrows]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 < s < 1.0 for s in scores)
    assert {q: sorted(r[2] for r in qrows) for q, qrows in by_query.items()} == {
        q: sorted(d) for q, d in _expected_candidates().items()
    }
    assert (summary.queries, summary.pairs, summary.failures) == (5, 13, 0)
    assert summary.shards == 3 and summary.shards_written == 3
    assert summary.pairs_per_s > 0 and ir_job["progress"], "no progress was reported"
    results = [json.loads(x) for x in (ir_job["output"] / "results.jsonl").read_text().split("\n")
               if x]
    assert [(r["query_id"], r["doc_id"], r["rank"]) for r in results] == [
        (r[0], r[2], int(r[3])) for r in rows
    ]


def test_ir_job_ranking_equals_the_in_process_library(ir_job: dict[str, Any],
                                                      bert_model: Path) -> None:
    texts = {d["_id"]: beir_text(d) for d in CORPUS}
    queries = {q["_id"]: q["text"] for q in QUERIES}
    got: dict[str, list[tuple[str, float]]] = {}
    for r in _trec_lines(ir_job["output"] / "run.trec"):
        got.setdefault(r[0], []).append((r[2], float(r[4])))
    with Reranker(str(bert_model)) as rr:
        for qid, docids in _expected_candidates().items():
            ranked = rr.rerank(queries[qid], [texts[d] for d in docids])
            assert [d for d, _ in got[qid]] == [docids[r.index] for r in ranked], qid
            for (_, score), r in zip(got[qid], ranked, strict=True):
                assert score == pytest.approx(r.score, abs=1e-6)


def test_ir_job_rejects_bad_rows_with_line_numbers(ir_job: dict[str, Any],
                                                   beir: dict[str, Any]) -> None:
    rejects = [json.loads(x) for x in
               (ir_job["output"] / "rejects.jsonl").read_text().splitlines()]
    found = {(Path(r["file"]).name, r["line"], r.get("doc_id")): r["reason"] for r in rejects}
    lines = beir["lines"]
    assert "invalid JSON" in found[("corpus.jsonl", 6, None)]
    assert "rank must be an integer" in found[("run.trec", lines[("q2", "d404")] + 1, "d99")]
    assert found[("run.trec", lines[("q2", "d404")], "d404")] == "docid not in the corpus"
    assert found[("run.trec", lines[("q9", "d1")], "d1")] == "query id not in the queries file"
    assert len(rejects) == ir_job["summary"].rejects == 4
    assert ir_job["summary"].totals["rejects"] == 4


def test_empty_document_in_the_run_is_rejected(beir: dict[str, Any], bert_model: Path,
                                               ray_cluster: RayCluster, tmp_path: Path) -> None:
    spec = _ir_spec(beir, str(bert_model), tmp_path / "deep").model_copy(update={"depth": 4})
    run_batch_job(spec)
    rejects = [json.loads(x) for x in (tmp_path / "deep" / "rejects.jsonl").read_text().split(
        "\n") if x]
    empty = [r for r in rejects if r.get("doc_id") == "d_empty"]
    assert len(empty) == 1 and empty[0]["line"] == beir["lines"][("q1", "d_empty")]
    assert "empty text" in empty[0]["reason"] and "corpus.jsonl line 14" in empty[0]["reason"]


def _ndcg10(ranking: list[str], rels: dict[str, int]) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(rels.values(), reverse=True)
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:10]))


def test_eval_reports_first_stage_and_reranked_side_by_side(
    ir_job: dict[str, Any], beir: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    reranked = ir_job["output"] / "run.trec"
    code = batch_cli(["eval", "--qrels", str(beir["qrels"]), "--run", str(beir["run"]),
                      "--run", str(reranked), "--format", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    first, second = report["runs"]
    # First stage, by hand. q1: d2 d1 d3 d_empty (rels 0 2 1 0); q2: d6 d404 d4 (d4 at 3); q3:
    # d8 d7 d1 (d7 at 2); q4: d10 d9 d5 d6 (d9 at 2); q5: d12 d11 (both relevant).
    l2 = math.log2
    ndcg = [(2 / l2(3) + 1 / l2(4)) / (2 + 1 / l2(3)), (1 / l2(4)), 1 / l2(3), 1 / l2(3), 1.0]
    assert first["nDCG@10"] == pytest.approx(sum(ndcg) / 5, abs=1e-4)
    assert first["MRR@10"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2 + 1 / 2 + 1) / 5, abs=1e-4)
    assert first["Recall@100"] == pytest.approx(1.0) and first["queries"] == 5
    # Reranked: the same formulas over the job's own ranking.
    run, _ = read_trec_run(reranked)
    order = {q: sorted(d, key=lambda x: -d[x]) for q, d in run.items()}
    expect = sum(_ndcg10(order[q], QRELS[q]) for q in QRELS) / 5
    assert second["nDCG@10"] == pytest.approx(expect, abs=1e-4)
    first_hit = [next(i for i, d in enumerate(order[q], 1) if QRELS[q].get(d)) for q in QRELS]
    assert second["MRR@10"] == pytest.approx(sum(1 / k for k in first_hit) / 5, abs=1e-4)
    assert second["Recall@100"] == pytest.approx(1.0)


def test_rerunning_a_finished_job_recomputes_nothing(ir_job: dict[str, Any]) -> None:
    before = (ir_job["output"] / "run.trec").read_bytes()
    summary = run_batch_job(ir_job["spec"])
    assert (summary.shards_written, summary.shards_resumed, summary.pairs) == (0, 3, 0)
    assert summary.totals["pairs"] == 13
    assert (ir_job["output"] / "run.trec").read_bytes() == before


def test_another_job_in_the_same_folder_is_refused(ir_job: dict[str, Any]) -> None:
    spec = ir_job["spec"].model_copy(update={"shard_size": 5})
    with pytest.raises(ConfigError, match="shard_size"):
        run_batch_job(spec)


def _ranked(path: Path) -> dict[str, list[tuple[str, float]]]:
    got: dict[str, list[tuple[str, float]]] = {}
    for r in _trec_lines(path):
        got.setdefault(r[0], []).append((r[2], float(r[4])))
    return got


def test_an_ungrouped_run_reranks_every_candidate(
    ir_job: dict[str, Any], beir: dict[str, Any], bert_model: Path, ray_cluster: RayCluster,
    tmp_path: Path,
) -> None:
    """The run's lines shuffled, as in a run sorted by docid or concatenated from shards: every
    candidate is reranked as in the grouped run (which lost all revisited lines to rejects)."""
    lines = beir["run"].read_text().splitlines()
    order = list(range(len(lines)))
    random.Random(5).shuffle(order)
    shuffled = tmp_path / "shuffled.trec"
    shuffled.write_text("\n".join(lines[i] for i in order) + "\n")
    out = tmp_path / "out"
    summary = run_batch_job(_ir_spec({**beir, "run": shuffled}, str(bert_model), out))
    grouped = ir_job["summary"]
    assert grouped.run_order == "grouped" and summary.run_order == "regrouped"
    assert json.loads((out / "summary.json").read_text())["run_order"] == "regrouped"
    assert (summary.queries, summary.pairs, summary.failures, summary.rejects) == (
        grouped.queries, grouped.pairs, 0, grouped.rejects) == (5, 13, 0, 4)
    got, want = _ranked(out / "run.trec"), _ranked(ir_job["output"] / "run.trec")
    assert sorted(got) == sorted(want)
    for qid, ranked in want.items():
        assert [d for d, _ in got[qid]] == [d for d, _ in ranked], qid
        assert [s for _, s in got[qid]] == pytest.approx([s for _, s in ranked], abs=1e-6)

    def rejects(folder: Path, line_of: Any) -> set[tuple[str, int, str]]:
        rows = [json.loads(x) for x in (folder / "rejects.jsonl").read_text().splitlines()]
        return {(Path(r["file"]).name.replace("shuffled", "run"),
                 line_of(r["line"]) if r["file"].endswith(".trec") else r["line"], r["reason"])
                for r in rows}

    # The same rejects, named by their lines in the shuffled file.
    assert rejects(out, lambda n: order[n - 1] + 1) == rejects(ir_job["output"], lambda n: n)


def test_candidate_file_with_a_repeated_query_and_a_deep_line(
    bert_model: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    rows = [
        json.dumps({"query_id": "c1", "query": "solar", "documents": ["Solar panels.", "Tea."]}),
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"query_id": "c1", "query": "solar", "documents": ["Coffee.", "Tea."]}),
        json.dumps({"query_id": "c2", "query": "coffee", "documents": ["Coffee beans."]}),
    ]
    path = tmp_path / "cands.jsonl"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    summary = run_batch_job(BatchJobSpec(model=str(bert_model), output=out, candidates=(path,),
                                         shard_size=10))
    assert (summary.queries, summary.pairs, summary.failures, summary.rejects) == (2, 3, 0, 2)
    pairs = [(r[0], r[2]) for r in _trec_lines(out / "run.trec")]
    assert sorted(pairs) == [("c1", "0"), ("c1", "1"), ("c2", "0")]
    rejects = sorted((r["line"], r["reason"].split(" (")[0]) for r in (
        json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()))
    assert rejects == [(2, "invalid JSON: nested too deeply"), (3, "query_id repeated")]


def test_candidate_files_jsonl_and_parquet(bert_model: Path, ray_cluster: RayCluster,
                                          tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"query_id": "c1", "query": "solar electricity",
         "documents": ["Solar panels make electricity.", {"id": "x9", "text": "Eclipses."},
                       "Inverters convert current."]},
        None,  # a blank line
        "{not json",
        {"query_id": "c2", "query": "   ", "documents": ["a"]},
        {"query_id": "c3", "query": "coffee", "documents": [
            "", {"id": "k", "title": "Coffee", "text": "Roasted beans."}, 42, "Tea leaves."]},
    ]
    path = tmp_path / "cands.jsonl"
    path.write_text("\n".join("" if r is None else r if isinstance(r, str) else json.dumps(r)
                              for r in rows) + "\n")
    pq_rows = [{"query_id": "p1", "query": "roman empire",
                "documents": [{"id": "r1", "text": "The Roman Empire."},
                              {"id": "r2", "text": "Snakes."}, {"id": "r3", "text": ""}]}]
    pq.write_table(pa.Table.from_pylist(pq_rows), tmp_path / "cands.parquet")
    out = tmp_path / "out"
    spec = BatchJobSpec(model=str(bert_model), output=out, output_format="parquet", top_k=2,
                        candidates=(path, tmp_path / "cands.parquet"), shard_size=2,
                        batch_size=2, concurrency=2)
    summary = run_batch_job(spec)
    assert summary.shards == 4 and (summary.queries, summary.failures) == (3, 0)
    table = pq.read_table(out / "results.parquet").to_pylist()
    got: dict[str, list[Any]] = {}
    for r in table:
        got.setdefault(r["query_id"], []).append(r)
    assert list(got) == ["c1", "c3", "p1"]
    docs = {"c1": (["0", "x9", "2"], ["Solar panels make electricity.", "Eclipses.",
                                      "Inverters convert current."]),
            "c3": (["k", "3"], ["Coffee Roasted beans.", "Tea leaves."]),
            "p1": (["r1", "r2"], ["The Roman Empire.", "Snakes."])}
    queries = {"c1": "solar electricity", "c3": "coffee", "p1": "roman empire"}
    with Reranker(str(bert_model)) as rr:
        for qid, (ids, texts) in docs.items():
            ranked = rr.rerank(queries[qid], texts, top_k=2)
            assert [r["doc_id"] for r in got[qid]] == [ids[x.index] for x in ranked]
            assert [r["input_rank"] for r in got[qid]] == [x.index + 1 for x in ranked]
            assert [r["score"] for r in got[qid]] == pytest.approx([x.score for x in ranked],
                                                                   abs=1e-6)
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    where = sorted((Path(r["file"]).name, r["line"], r["reason"]) for r in rejects)
    assert [(f, n) for f, n, _ in where] == [
        ("cands.jsonl", 3), ("cands.jsonl", 4), ("cands.jsonl", 5), ("cands.jsonl", 5),
        ("cands.parquet", 1)]
    assert "invalid JSON" in where[0][2] and "empty 'query'" in where[1][2]
    assert {where[2][2], where[3][2]} == {"documents[0] has empty text",
                                          "documents[2] is not a string or object"}
    assert summary.rejects == 5


def test_progress_is_reported_inside_a_shard(bert_model: Path, ray_cluster: RayCluster,
                                            tmp_path: Path) -> None:
    # One shard of 40 queries: progress used to come only when the shard was complete.
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(
        json.dumps({"query_id": f"q{i}", "query": f"query number {i}",
                    "documents": [f"document {j} for query {i}" for j in range(6)]}) + "\n"
        for i in range(40)))
    spec = BatchJobSpec(model=str(bert_model), output=tmp_path / "out", candidates=(path,),
                        shard_size=40, batch_size=4, progress_interval_s=1e-6)
    seen: list[Any] = []
    summary = run_batch_job(spec, progress=seen.append)
    assert summary.shards_written == 1 and summary.pairs == 240
    inside = [p for p in seen if p.shards_done == 0 and 0 < p.rows < 40]
    assert len(inside) >= 2, [str(p) for p in seen]
    assert all(p.rows_total == 40 for p in seen)
    assert [p.rows for p in seen] == sorted(p.rows for p in seen)
    assert all(p.eta_s is not None for p in inside)
    last = seen[-1]
    assert (last.rows, last.shards_done, last.pairs) == (40, 1, summary.pairs)
    # The last report and the summary give the same rate, over the same seconds.
    assert last.pairs_per_s == summary.pairs_per_s
    assert last.elapsed_s == summary.pipeline_seconds


def test_backend_failures_are_counted_and_rejected(ray_cluster: RayCluster,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"query_id": f"q{i}", "query": q, "documents": [
        "alpha beta", "beta gamma"]}) for i, q in enumerate(["beta", "boom", "gamma"])) + "\n")
    model = {"type": "plugin", "name": "tests.integration.batch_plugins:SlowWordOverlap",
             "options": {"fail_on": "boom"}}
    summary = run_batch_job(BatchJobSpec(model=model, output=tmp_path / "out",
                                         candidates=(path,), shard_size=10))
    assert (summary.queries, summary.failures, summary.rejects) == (2, 1, 1)
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert reject["line"] == 2 and reject["query_id"] == "q1"
    assert reject["reason"].startswith("rerank failed: BackendError")
    assert [r[0] for r in _trec_lines(tmp_path / "out" / "run.trec")] == ["q0"] * 2 + ["q2"] * 2


def _manifest(output: Path) -> list[dict[str, Any]]:
    path = output / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def test_resume_after_a_killed_run(beir: dict[str, Any], ray_cluster: RayCluster,
                                   tmp_path: Path) -> None:
    import ray

    output = tmp_path / "out"
    model = json.dumps({"type": "plugin", "name": "tests.integration.batch_plugins:"
                        "SlowWordOverlap", "options": {"delay_s": 0.4}})
    cmd = [sys.executable, "-m", "reranker.cli", "batch", "--model", model, "-o",
           str(output), "--run", str(beir["run"]), "--queries", str(beir["queries"]),
           "--corpus", str(beir["corpus"]), "--depth", "3", "--shard-size", "1",
           "--batch-size", "1", "--address", ray.get_runtime_context().gcs_address, "--quiet"]
    env = dict(os.environ)  # ray_cluster put the repository on PYTHONPATH for the workers
    first = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not [e for e in _manifest(output) if e["event"] == "shard"]:
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "no shard was committed in time"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = {e["shard"]: e for e in _manifest(output) if e["event"] == "shard"}
    assert 1 <= len(killed) < 5, "the first run was not interrupted"
    mtimes = {p.name: p.stat().st_mtime_ns for p in (output / "shards").iterdir()
              if p.name.startswith(tuple(f"{s:05d}." for s in killed))}

    second = subprocess.run([*cmd, "--summary-json"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    entries = [e for e in _manifest(output) if e["event"] == "shard"]
    assert sorted(e["shard"] for e in entries) == [0, 1, 2, 3, 4], "a shard was recomputed"
    assert all(e["attempt"] == 1 for e in entries if e["shard"] in killed)
    assert summary["shards_resumed"] == len(killed)
    assert summary["shards_written"] == 5 - len(killed)
    assert summary["totals"]["pairs"] == 13 and summary["attempt"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in (output / "shards").iterdir()
            if p.name in mtimes} == mtimes
    # The final run is complete and equals an uninterrupted in-process ranking.
    texts = {d["_id"]: beir_text(d) for d in CORPUS}
    queries = {q["_id"]: q["text"] for q in QUERIES}
    expected = []
    with Reranker({**json.loads(model), "options": {}}) as rr:
        for qid, docids in _expected_candidates().items():
            ranked = rr.rerank(queries[qid], [texts[d] for d in docids])
            expected += [(qid, docids[r.index], str(k)) for k, r in enumerate(ranked, 1)]
    got = [(r[0], r[2], r[3]) for r in _trec_lines(output / "run.trec")]
    assert got == expected


def test_a_decoder_model_runs_with_its_configured_instruction(
        ray_cluster: RayCluster, tmp_path: Path) -> None:
    """The tiny Qwen3 stand-in through the Ray Data job: queries merged into one batch call,
    each ranked as the library ranks it with the config's instruction."""
    from reranker.testing.families.qwen3_models import build_qwen3_reranker

    folder = build_qwen3_reranker(tmp_path / "qwen3", seed=8)
    model = {"type": "custom", "model_id": str(folder), "max_length": 160,
             "cache_dir": str(tmp_path / "cache"),
             "instruction": "Given a question, retrieve passages about energy"}
    queries = {"e1": ("solar electricity", ["Solar panels make electricity.", "A fish.",
                                            "Inverters convert current.", ""]),
               "e2": ("coffee", ["Roasted beans.", "Tea leaves.", "Green tea."])}
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps({"query_id": q, "query": text, "documents": docs}) + "\n"
                            for q, (text, docs) in queries.items()))
    out = tmp_path / "out"
    summary = run_batch_job(BatchJobSpec(model=model, output=out, candidates=(path,),
                                         raw_scores=True, batch_size=4))
    assert (summary.queries, summary.failures) == (2, 0)
    got: dict[str, list[tuple[str, float]]] = {}
    for row in _trec_lines(out / "run.trec"):
        got.setdefault(row[0], []).append((row[2], float(row[4])))
    with Reranker(model) as rr:
        for qid, (text, docs) in queries.items():
            kept = [d for d in docs if d]  # the job rejects empty documents
            ranked = rr.rerank(text, kept, raw_scores=True)
            ids = [str(docs.index(kept[r.index])) for r in ranked]
            assert [d for d, _ in got[qid]] == ids
            assert [s for _, s in got[qid]] == pytest.approx([r.score for r in ranked],
                                                             abs=1e-4)
            plain = rr.rerank(text, kept, raw_scores=True, instruction="Given a web search "
                              "query, retrieve relevant passages that answer the query")
            assert [r.score for r in plain] != pytest.approx([r.score for r in ranked],
                                                             abs=1e-4)
