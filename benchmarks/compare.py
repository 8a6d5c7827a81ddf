"""reranker against its peers, in one run, on the same weights and the same requests.

One worker process per system (clean peak RSS; ``benchmarks/_systems.py``), all loading the
stand-in of the ``fast`` preset (MiniLM-L6 architecture, random weights, a vocabulary counted
from Python's own documentation), or with ``--model-dir`` a model folder you downloaded (real
weights: the agreement columns then show what int8 does to a trained model). Requests are
RAG-style: a query and 100 candidates of 40 to 300 words cut from the documentation that ships
with Python, fixed seed. Systems take turns
request by request, so load from other work on the machine hits all of them alike; only one
system runs at a time.

Reported per system: pairs/s, p50/p95 latency of a 100-document request, peak RSS, padded/real
tokens, ratios to sentence-transformers, agreement with reranker's float32 scores (top-10
overlap, max score difference), throughput against candidate count and document length, and
FLOPs per pair with achieved/peak. Written to ``--out``: ``results.json``, ``table.md``,
``throughput.png``.

    pip install .[bench]
    python benchmarks/compare.py                      # about 10 minutes on 2 cores
    python benchmarks/compare.py --requests 3 --rounds 1 --systems reranker-fp32,reranker-int8
    python benchmarks/compare.py --model-dir ./ms-marco-MiniLM-L-6-v2   # real weights

A ``--model-dir`` folder holds ``onnx/model.onnx``, ``tokenizer.json`` and ``config.json``
(a snapshot of ``Xenova/ms-marco-MiniLM-L-6-v2`` does); ``onnx/model_quantized.onnx`` for the
Hub-style int8 rows and PyTorch weights (``model.safetensors``) for sentence-transformers.
Systems whose files are missing are skipped and listed under the table. Worker logs go to
``--work-dir``.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    DEFAULT_WORK_DIR,
    machine_facts,
    standin_folder,
    top10_agreement,
)
from benchmarks._report import flops_per_pair, peak_gflops, write_outputs  # noqa: E402
from benchmarks._systems import SYSTEMS  # noqa: E402

BASELINE = "sentence-transformers"
REFERENCE = "reranker-fp32"
COUNTS = (10, 25, 50, 100)
LENGTHS = ((40, 80), (80, 160), (160, 300))


class Worker:
    """A system in its own process, driven over JSON lines."""

    def __init__(self, system: str, folder: Path, cache: Path, log: Path) -> None:
        self.system = system
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "_systems.py"), system, str(folder),
                 str(cache)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"ready": False, "error": f"worker exited with {self.proc.wait()}"}
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from: {', '.join(SYSTEMS)}")
    parser.add_argument("--requests", type=int, default=5, help="100-document requests")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the requests")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a downloaded model folder instead of the stand-in (real weights)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    from reranker.sample_requests import benchmark_requests
    from reranker.tokenization import PairTokenizer

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.model_dir is not None:
        folder = args.model_dir.resolve()
        if not (folder / "onnx" / "model.onnx").is_file():
            parser.error(f"{folder} has no onnx/model.onnx")
    else:
        folder = standin_folder("fast", args.work_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    requests = benchmark_requests(args.requests, seed=0)
    sweeps = {
        f"count={n}": (n, r)
        for n, r in zip(COUNTS, benchmark_requests(len(COUNTS), seed=1), strict=True)
    }
    for lo, hi in LENGTHS:
        req = benchmark_requests(1, documents_per_request=50, min_words=lo, max_words=hi,
                                 seed=2)[0]
        sweeps[f"words={lo}-{hi}"] = (50, req)
    tok = PairTokenizer(folder / "tokenizer.json", 512)
    pair_lengths = [[len(r) for r in tok.encode(q.query, q.documents).ids] for q in requests]
    real_tokens = [sum(lengths) for lengths in pair_lengths]
    words = [sum(len(d.split()) for d in q.documents) for q in requests]

    load_before = machine_facts()["load_avg"]
    workers: dict[str, Worker] = {}
    skipped: dict[str, str] = {}
    for system in systems:
        w = Worker(system, folder, args.work_dir / "hf-cache", args.work_dir / f"{system}.log")
        if w.hello.get("ready"):
            workers[system] = w
            w.ask({"query": requests[0].query, "documents": list(requests[0].documents[:8])})
        else:
            skipped[system] = str(w.hello.get("error"))
            print(f"skipped {system}: {skipped[system]}", file=sys.stderr)

    latency: dict[str, list[float]] = {s: [] for s in workers}
    padded: dict[str, list[int]] = {s: [] for s in workers}
    scores: dict[str, list[np.ndarray]] = {s: [] for s in workers}
    sweep_rate: dict[str, dict[str, list[float]]] = {s: {k: [] for k in sweeps} for s in workers}
    started = time.perf_counter()
    for rnd in range(args.rounds):
        for req in requests:
            for system, w in workers.items():
                reply = w.ask({"query": req.query, "documents": list(req.documents)})
                latency[system].append(reply["seconds"])
                padded[system].append(reply["padded"])
                if rnd == 0:
                    scores[system].append(np.asarray(reply["scores"], dtype=np.float64))
        for name, (n, req) in sweeps.items():
            docs = list(req.documents[:n])
            for system, w in workers.items():
                reply = w.ask({"query": req.query, "documents": docs})
                sweep_rate[system][name].append(n / reply["seconds"])
    elapsed = time.perf_counter() - started
    rss = {s: w.ask({"op": "rss"})["peak_rss_mb"] for s, w in workers.items()}
    for w in workers.values():
        w.close()

    mean_tokens = sum(real_tokens) / sum(len(r.documents) for r in requests)
    facts = {**machine_facts(), "load_avg_before": load_before}
    rows = []
    for system in workers:
        lat = sorted(latency[system])
        p50 = statistics.median(lat)
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        ref = scores.get(REFERENCE)
        agree = {}
        if ref:
            agree = {
                "top10_overlap": round(float(np.mean(
                    [top10_agreement(a, b) for a, b in zip(scores[system], ref, strict=True)])), 3),
                "max_score_diff": round(float(max(
                    np.abs(a - b).max() for a, b in zip(scores[system], ref, strict=True))), 5),
            }
        rows.append({
            "system": system,
            "description": SYSTEMS[system],
            "pairs_per_s": round(len(requests[0].documents) / p50, 1),
            "p50_s": round(p50, 3),
            "p95_s": round(p95, 3),
            "peak_rss_mb": round(rss[system]),
            "padded_over_real": round(
                sum(padded[system]) / (args.rounds * sum(real_tokens)), 3),
            **agree,
            "sweeps_pairs_per_s": {k: round(statistics.median(v), 1)
                                   for k, v in sweep_rate[system].items()},
        })
    base = next((r for r in rows if r["system"] == BASELINE), None)
    for r in rows:
        if base:
            r["x_pairs_per_s_vs_st"] = round(r["pairs_per_s"] / base["pairs_per_s"], 2)
            r["x_p50_vs_st"] = round(base["p50_s"] / r["p50_s"], 2)
            r["x_rss_vs_st"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 2)
    flops = flops_per_pair(folder, [n for lengths in pair_lengths for n in lengths])
    peaks = peak_gflops(facts)
    for r in rows:
        achieved = r["pairs_per_s"] * flops / 1e9
        peak = peaks["int8"] if r["system"].endswith("int8") else peaks["fp32"]
        r["achieved_gflops"] = round(achieved, 1)
        r["fraction_of_peak"] = round(achieved / peak, 3) if peak else None
    report = {
        "machine": facts,
        "model": {"folder": str(folder),
                  "weights": "downloaded" if args.model_dir is not None else "stand-in",
                  "preset_architecture": "fast" if args.model_dir is None else None,
                  "mean_tokens_per_pair": round(mean_tokens, 1),
                  "tokens_per_word": round(sum(real_tokens) / sum(words), 3),
                  "gflops_per_pair": round(flops / 1e9, 2), "peak_gflops": peaks},
        "requests": {"count": args.requests, "documents": len(requests[0].documents),
                     "rounds": args.rounds, "words": "40-300", "seconds": round(elapsed, 1)},
        "skipped": skipped,
        "systems": rows,
    }
    write_outputs(report, args.out)
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
