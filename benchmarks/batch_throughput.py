"""Pairs per second of the Ray Data batch job against the in-process library, on the same data.

Builds a MiniLM-L6-sized cross-encoder (random weights, real shapes: 6 layers, hidden 384,
30522-token vocabulary) and a synthetic BEIR-layout set (corpus, queries, a TREC run), then:

1. in process: ``Reranker(model).rerank`` over every query in a fresh Python process (no Ray),
   model loaded beforehand, with 1 ONNX thread and with ``--cpus`` threads;
2. the batch job on one local Ray limited to ``--cpus`` CPUs: one actor with 1 CPU (the twin
   of the 1-thread library: this isolates the job's overhead), one actor with all CPUs, and
   one actor per CPU with one ONNX thread each.

The measurements are interleaved ``--repeats`` times and medians reported, so that load from
other processes hits both sides alike. For the job it reports the scoring rate (from the first
query scored to the last, on the workers' clocks: what the target compares with the in-process
rate), the pipeline rate (actor start-up and model load included) and the end-to-end rate
(planning included; Ray's own start is reported once, apart). Target: scoring rate within 10%.

    python benchmarks/batch_throughput.py --queries 40 --depth 30 --cpus 2
    python benchmarks/batch_throughput.py --model ./my-onnx-model --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_dataset(folder: Path, queries: int, depth: int, doc_words: int, seed: int) -> None:
    """A BEIR-layout set: ``queries × depth`` candidates drawn from a corpus of word salad."""
    from reranker.testing.wordlist import ENGLISH_WORDS

    rng = random.Random(seed)
    words = list(ENGLISH_WORDS)
    n_docs = max(queries * depth // 2, depth)
    with open(folder / "corpus.jsonl", "w") as fh:
        for i in range(n_docs):
            text = " ".join(rng.choices(words, k=rng.randint(doc_words // 2, doc_words)))
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for q in range(queries):
            fh.write(json.dumps({"_id": f"q{q}", "text": " ".join(rng.choices(words, k=6))})
                     + "\n")
    with open(folder / "run.trec", "w") as fh:
        for q in range(queries):
            for rank, d in enumerate(rng.sample(range(n_docs), depth), 1):
                fh.write(f"q{q} Q0 d{d} {rank} {100 - rank} bm25\n")


def in_process(model: Any, folder: Path, threads: int, depth: int) -> dict[str, float]:
    """The library alone: the same candidates, one ``rerank`` call per query."""
    from reranker import Reranker, parse_backend_config
    from reranker.ir import iter_beir_jsonl, read_beir_queries, read_trec_run

    cfg = parse_backend_config(model)
    if cfg.runs_locally:
        cfg = cfg.model_copy(update={"threads": threads})
    queries, _ = read_beir_queries(folder / "queries.jsonl")
    corpus = {i[0]: i[1] for i in iter_beir_jsonl(folder / "corpus.jsonl")
              if isinstance(i, tuple)}
    run, _ = read_trec_run(folder / "run.trec")
    work = [(queries[q], [corpus[d] for d in sorted(docs, key=lambda d: -docs[d])[:depth]])
            for q, docs in run.items()]
    with Reranker(cfg) as rr:
        rr.rerank(work[0][0], work[0][1][:2])  # warm-up, as the job's actors do on load
        start = time.perf_counter()
        pairs = sum(len(rr.rerank(q, docs, return_documents=False)) for q, docs in work)
        seconds = time.perf_counter() - start
    return {"pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds}


def in_process_fresh(model: Any, folder: Path, threads: int, depth: int) -> dict[str, float]:
    """:func:`in_process` in a new Python process, so that no Ray runs beside the library."""
    cmd = [sys.executable, __file__, "--measure-in-process", str(threads), "--model", str(model),
           "--folder", str(folder), "--depth", str(depth)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def batch_job(model: Any, folder: Path, actors: int, cpus_per_actor: int, depth: int,
              batch_size: int) -> dict[str, float]:
    """The Ray Data job on the local Ray started by :func:`main`."""
    from deployments.batch.job import BatchJobSpec, run_batch_job

    spec = BatchJobSpec(
        model=model, output=folder / f"out-{actors}x{cpus_per_actor}", run=folder / "run.trec",
        queries=folder / "queries.jsonl", corpus=folder / "corpus.jsonl", depth=depth,
        shard_size=10, batch_size=batch_size, concurrency=actors,
        num_cpus_per_actor=cpus_per_actor, overwrite=True,
    )
    s = run_batch_job(spec)
    return {"pairs": s.pairs, "seconds": s.seconds, "pipeline_seconds": s.pipeline_seconds,
            "startup_s": s.startup_s, "pairs_per_s": s.scoring_pairs_per_s,
            "pipeline_pairs_per_s": s.pairs_per_s, "end_to_end_pairs_per_s": s.pairs / s.seconds}


def configurations(cpus: int) -> list[tuple[str, str, int, int]]:
    """(name, kind, actors, threads or CPUs per actor), each job next to its in-process twin."""
    configs = [("in_process_1_thread", "lib", 1, 1), ("job_1_actor_x_1_cpu", "job", 1, 1)]
    if cpus > 1:
        configs += [(f"in_process_{cpus}_threads", "lib", 1, cpus),
                    (f"job_1_actor_x_{cpus}_cpu", "job", 1, cpus),
                    (f"job_{cpus}_actors_x_1_cpu", "job", cpus, 1)]
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="any model config or shorthand (default: built here)")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--doc-words", type=int, default=60)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4, help="queries per actor call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure-in-process", type=int, metavar="THREADS",
                        help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_in_process:
        print(json.dumps(in_process(args.model, args.folder, args.measure_in_process,
                                    args.depth)))
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    configs = configurations(args.cpus)

    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        folder = Path(tmp)
        model: Any = args.model
        if model is None:
            from reranker.testing import build_cross_encoder

            model = str(build_cross_encoder(
                folder / "model", num_layers=6, hidden_size=384, num_heads=12,
                intermediate_size=1536, max_position_embeddings=512, vocab_size=30522,
            ))
        write_dataset(folder, args.queries, args.depth, args.doc_words, args.seed)
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        report: dict[str, Any] = {"queries": args.queries, "depth": args.depth,
                                  "cpus": args.cpus, "ray_start_s": time.perf_counter() - started}
        runs: dict[str, list[dict[str, float]]] = {}
        try:
            for _ in range(args.repeats):
                for name, kind, n, c in configs:
                    runs.setdefault(name, []).append(
                        in_process_fresh(model, folder, c, args.depth) if kind == "lib" else
                        batch_job(model, folder, n, c, args.depth, args.batch_size))
        finally:
            ray.shutdown()
        for name, series in runs.items():
            report[name] = {k: statistics.median(r[k] for r in series) for k in series[0]}
            report[name]["all"] = series
    from benchmarks._common import cpu_line, machine_facts

    report["machine"] = machine_facts()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(cpu_line())
    print(f"{args.queries} queries x {args.depth} candidates, {args.cpus} CPUs, medians of "
          f"{args.repeats}; Ray started in {report['ray_start_s']:.1f}s (not counted below)")
    base = 0.0
    for name, kind, _, _ in configs:
        r = report[name]
        if kind == "lib":
            base = r["pairs_per_s"]
            print(f"{name:<26} {base:8.1f} pairs/s")
            continue
        print(f"{name:<26} {r['pairs_per_s']:8.1f} pairs/s scoring "
              f"({r['pairs_per_s'] / base - 1:+.1%} vs the line above) · pipeline "
              f"{r['pipeline_pairs_per_s']:.1f} (start-up {r['startup_s']:.1f}s) · end to end "
              f"{r['end_to_end_pairs_per_s']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
