"""Hot-path regression guard: this tree against a git ref, side by side, on the same requests.

Both sides run in their own worker processes (``benchmarks/_regress_worker.py``), the ref's from
a ``git archive`` of it, on the same stand-in model and requests. Requests alternate between the
sides (current first, then the ref first on the next), so load from other work on the machine
hits both alike; only one side runs at a time. Per hot path it prints pairs/s of each side
(median and best request), the ratio current / ref of both, the ratio of CPU seconds, and the
largest score difference between the sides (a hot-path change should not move scores).

Paths (``--paths``, comma-separated; default all):

* ``float32``: ``custom`` on the stand-in's ``onnx/model.onnx``, default settings;
* ``int8``: the same with ``optimization: int8`` (the fastest-path recipe);
* ``hub-int8``: the Hub-style ``onnx/model_quantized.onnx``, default settings;
* ``serve``: ``POST /v1/rerank`` through the real Ray Serve app (int8), one client;
* ``decoder``: a small Qwen3-Reranker-shaped decoder (4 layers, hidden 256), float32.

    python benchmarks/regress.py base-s25                   # about 4 minutes on 2 cores
    python benchmarks/regress.py base-s25 --paths int8 --rounds 5
    python benchmarks/regress.py 8a9d9f6 --against faf769d  # two refs, no working tree

The stand-in is the ``fast`` preset's (MiniLM-L6 shape, random weights; see
``benchmarks/standins.py``); requests are 100 documents of 40-300 words (decoder: 30 of
60-100 words). The CPU (``lscpu`` model name and flags) and the load are recorded with the
figures in ``--out`` (default ``benchmarks/results/regress.json``). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts, standin_folder  # noqa: E402

PATHS = ("float32", "int8", "hub-int8", "serve", "decoder")
DECODER_SHAPE = dict(num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=4, head_dim=32)


def _tree(ref: str, work: Path) -> tuple[Path, str]:
    """A ``git archive`` of ``ref`` under ``work`` (reused per commit) and its short hash."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=9", f"{ref}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    folder = work / "trees" / sha
    if not (folder / "reranker" / "__init__.py").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder, sha


def _decoder_folder(work: Path) -> Path:
    folder = work / "regress-decoder"
    if not (folder / "model.safetensors").is_file():
        from reranker.testing.families.qwen3 import make_checkpoint

        make_checkpoint(folder, **DECODER_SHAPE)
    return folder


class Side:
    """One tree's worker for one path."""

    def __init__(self, label: str, tree: Path, path: str, folder: Path, cache: Path,
                 log: Path) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(tree)}
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "_regress_worker.py"), path,
                 str(folder), str(cache)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                cwd=str(tree),
            )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"ready": False, "error": f"worker exited with {self.proc.wait()}"}
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, query: str, documents: list[str]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"query": query, "documents": documents}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "seconds" not in reply:
            raise RuntimeError(f"{self.label} worker failed: {reply}")
        return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _requests(path: str, count: int) -> list[tuple[str, list[str]]]:
    from reranker.sample_requests import benchmark_requests

    if path == "decoder":
        reqs = benchmark_requests(count, documents_per_request=30, min_words=60, max_words=100,
                                  seed=3)
    else:
        reqs = benchmark_requests(count, seed=0)
    return [(r.query, list(r.documents)) for r in reqs]


def measure(path: str, sides: dict[str, Path], work: Path, requests: int, rounds: int
            ) -> dict[str, Any]:
    """Run ``path`` on every side, alternating, and summarise pairs/s and the ratios."""
    folder = _decoder_folder(work) if path == "decoder" else standin_folder("fast", work)
    workers: dict[str, Side] = {}
    for label, tree in sides.items():
        cache = work / "cache" / tree.name
        side = Side(label, tree, path, folder, cache, work / f"regress-{path}-{label}.log")
        if not side.hello.get("ready"):
            for w in workers.values():
                w.close()
            side.close()
            return {"path": path, "skipped": f"{label}: {side.hello.get('error')}"}
        workers[label] = side
    reqs = _requests(path, requests)
    for w in workers.values():  # warm-up: first runs allocate arenas
        w.ask(reqs[0][0], reqs[0][1][:16])
    rate: dict[str, list[float]] = {k: [] for k in workers}
    cpu: dict[str, list[float]] = {k: [] for k in workers}
    scores: dict[str, list[np.ndarray]] = {k: [] for k in workers}
    labels = list(workers)
    started = time.perf_counter()
    try:
        for rnd in range(rounds):
            for i, (query, docs) in enumerate(reqs):
                order = labels if (rnd + i) % 2 == 0 else labels[::-1]
                for label in order:
                    reply = workers[label].ask(query, docs)
                    rate[label].append(len(docs) / reply["seconds"])
                    cpu[label].append(reply["cpu_s"] / len(docs))
                    if rnd == 0:
                        scores[label].append(np.asarray(reply["scores"]))
    finally:
        for w in workers.values():
            w.close()
    cur, ref = labels
    row: dict[str, Any] = {"path": path, "seconds": round(time.perf_counter() - started, 1),
                           "samples": len(rate[cur])}
    for label in labels:
        row[label] = {"pairs_per_s_median": round(statistics.median(rate[label]), 2),
                      "pairs_per_s_best": round(max(rate[label]), 2),
                      "cpu_ms_per_pair_median": round(1000 * statistics.median(cpu[label]), 2)}
    row["ratio_median"] = round(row[cur]["pairs_per_s_median"] / row[ref]["pairs_per_s_median"],
                                3)
    row["ratio_best"] = round(row[cur]["pairs_per_s_best"] / row[ref]["pairs_per_s_best"], 3)
    if path != "serve":  # the Serve worker's own CPU time is only its HTTP client's
        row["ratio_cpu"] = round(row[ref]["cpu_ms_per_pair_median"]
                                 / max(row[cur]["cpu_ms_per_pair_median"], 1e-9), 3)
    row["max_score_diff"] = float(f"{max(np.abs(a - b).max() for a, b in zip(scores[cur], scores[ref], strict=True)):.3g}")  # noqa: E501
    return row


def _table(report: dict[str, Any]) -> str:
    cur, ref = report["sides"]
    lines = [f"{report['machine']['cpu']}, {report['machine']['cores']} cores, load before "
             f"{report['machine']['load_avg']}",
             f"current: {cur}   ref: {ref}",
             "",
             "| path | current pairs/s (median / best) | ref pairs/s (median / best) | ratio "
             "median | ratio best | CPU ratio | max score diff |",
             "|---|---|---|---|---|---|---|"]
    for row in report["paths"]:
        if "skipped" in row:
            lines.append(f"| {row['path']} | skipped: {row['skipped']} |||||")
            continue
        c, r = row["current"], row["ref"]
        lines.append(
            f"| {row['path']} | {c['pairs_per_s_median']} / {c['pairs_per_s_best']} | "
            f"{r['pairs_per_s_median']} / {r['pairs_per_s_best']} | {row['ratio_median']:.3f} | "
            f"{row['ratio_best']:.3f} | {row.get('ratio_cpu', '-')} | {row['max_score_diff']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="git ref to compare against (base-s25, main, a commit)")
    parser.add_argument("--against", default=None,
                        help="a git ref to measure instead of the working tree")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"comma-separated, from: {', '.join(PATHS)}")
    parser.add_argument("--requests", type=int, default=2, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the requests")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                        / "regress.json")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; valid: {', '.join(PATHS)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    ref_tree, ref_sha = _tree(args.ref, args.work_dir)
    if args.against:
        cur_tree, cur_sha = _tree(args.against, args.work_dir)
        cur_name = f"{args.against} ({cur_sha})"
    else:
        cur_tree, cur_name = ROOT, "working tree"
    sides = {"current": cur_tree, "ref": ref_tree}
    load_before = machine_facts()["load_avg"]
    rows = []
    for path in paths:
        row = measure(path, sides, args.work_dir, args.requests, args.rounds)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    report = {"machine": {**machine_facts(), "load_avg_before": load_before},
              "sides": [cur_name, f"{args.ref} ({ref_sha})"],
              "requests": {"per_round": args.requests, "rounds": args.rounds},
              "paths": rows}
    report["machine"]["load_avg"] = load_before
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
