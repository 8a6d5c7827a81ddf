"""What each speed lever of the local ONNX path gives, measured in one interleaved run.

Every variant is a ``Reranker`` over the same stand-in model (``fast`` preset architecture)
and scores the same 100-document requests; variants take turns request by request, so a
machine that is busy with other work slows all of them alike. Reported per variant: median
wall time per request, pairs/s, CPU seconds per request (less sensitive to other load), and
the padded/real token ratio, and agreement with the first (float32) variant on the measured
requests: top-10 overlap and max score difference. Then the share of tokenization in a
request and the score cache's effect on a repeated request.

    python benchmarks/levers.py [--requests 3] [--rounds 2] [--work-dir DIR]
    python benchmarks/levers.py --only "int8,static"     # the first variant and these

Static (calibrated) int8 variants are built by ``benchmarks/_static_quant.py``.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    DEFAULT_WORK_DIR,
    machine_facts,
    standin_folder,
    top10_agreement,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "v0.1 defaults: 1 run x all threads, 32 rows / 8192 tokens": {
        "parallel_runs": 1, "batch_size": 32, "max_tokens_per_batch": 8192},
    "1 run x all threads, <=512-token batches": {"parallel_runs": 1},
    "1 run per core, 32 rows / 8192 tokens": {"batch_size": 32, "max_tokens_per_batch": 8192},
    "1 run per core, <=1024-token batches": {"max_tokens_per_batch": 1024},
    "1 run per core, one pair per run": {"batch_size": 1},
    "1 run per core, <=512-token batches (new default)": {},
    "+ fused graph (fp32)": {"optimization": "fused"},
    "+ Hub-style int8 file (unfused, per-tensor)": {"model_file": "onnx/model_quantized.onnx"},
    "+ int8 (fused, per-channel)": {"optimization": "int8"},
    "static int8 QDQ (fused, per-channel, calibrated)": {"static": "QDQ"},
    "static int8 QOperator (unfused, per-tensor, calibrated)": {"static": "QOperator"},
}


def _backend(folder: Path, options: dict[str, Any], cache: Path) -> Any:
    from reranker import Reranker

    if "static" in options:
        from benchmarks._static_quant import static_int8

        options = {"model_file": static_int8(folder, cache, options["static"])}
    config = {"type": "custom", "model_id": str(folder), "cache_dir": str(cache), **options}
    return Reranker(config).backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--only", default="",
                        help="comma-separated substrings: measure the first variant and these")
    args = parser.parse_args(argv)

    from reranker.sample_requests import benchmark_requests

    folder = standin_folder("fast", args.work_dir)
    requests = benchmark_requests(args.requests)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    chosen = {name: opts for i, (name, opts) in enumerate(VARIANTS.items())
              if i == 0 or not wanted or any(w in name for w in wanted)}
    backends = {
        name: _backend(folder, opts, args.work_dir / "hf-cache") for name, opts in chosen.items()
    }
    for b in backends.values():  # warm-up
        b.score(requests[0].query, requests[0].documents[:8])
    scores: dict[str, list[Any]] = {name: [] for name in backends}
    wall: dict[str, list[float]] = {name: [] for name in backends}
    cpu: dict[str, list[float]] = {name: [] for name in backends}
    padding: dict[str, list[float]] = {name: [] for name in backends}
    load_before = machine_facts()["load_avg"]
    for rnd in range(args.rounds):
        for req in requests:
            for name, backend in backends.items():
                t0, c0 = time.perf_counter(), time.process_time()
                raw = backend.score(req.query, req.documents)
                if rnd == 0:
                    scores[name].append(raw.astype("float64"))
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                stats = backend.model.stats
                padding[name].append(stats.padded_tokens / stats.real_tokens)
    rows = []
    base = scores[next(iter(backends))]
    for name in backends:
        p50 = statistics.median(wall[name])
        rows.append({
            "variant": name,
            "p50_s": round(p50, 3),
            "pairs_per_s": round(len(requests[0].documents) / p50, 1),
            "cpu_s_per_request": round(statistics.median(cpu[name]), 3),
            "padded_over_real": round(statistics.mean(padding[name]), 3),
            "max_score_diff_vs_first": round(
                max(float(abs(a - b).max()) for a, b in zip(scores[name], base, strict=True)), 4),
            "top10_vs_first": round(sum(
                top10_agreement(a, b) for a, b in zip(scores[name], base, strict=True)
            ) / len(base), 3),
        })

    tok = backends[next(iter(backends))].tokenizer
    t0 = time.perf_counter()
    for req in requests:
        tok.encode(req.query, req.documents)
    tokenize_s = (time.perf_counter() - t0) / len(requests)

    cached = _backend(folder, {"score_cache_size": 10_000}, args.work_dir / "hf-cache")
    req = requests[0]
    t0 = time.perf_counter()
    cached.score(req.query, req.documents)
    cold = time.perf_counter() - t0
    half = list(req.documents[:50]) + list(requests[1].documents[:50])
    t0 = time.perf_counter()
    cached.score(req.query, half)
    warm = time.perf_counter() - t0
    report = {
        "machine": {**machine_facts(), "load_avg_before": load_before},
        "variants": rows,
        "tokenize_s_per_request": round(tokenize_s, 4),
        "score_cache": {"cold_s": round(cold, 3), "half_repeated_s": round(warm, 3),
                        "hit_rate": round(cached.score_cache.stats.hit_rate, 3)},
    }
    print(f"{'variant':<58} {'p50 s':>7} {'pairs/s':>8} {'cpu s':>7} {'pad':>6} {'diff':>7} "
          f"{'top10':>6}")
    for r in rows:
        print(f"{r['variant']:<58} {r['p50_s']:>7} {r['pairs_per_s']:>8} "
              f"{r['cpu_s_per_request']:>7} {r['padded_over_real']:>6} "
              f"{r['max_score_diff_vs_first']:>7} {r['top10_vs_first']:>6}")
    print(f"tokenization: {tokenize_s * 1000:.1f} ms per 100-document request")
    print(f"score cache: cold {cold:.2f} s, half repeated {warm:.2f} s, "
          f"hit rate {report['score_cache']['hit_rate']}")
    print(f"machine: {json.dumps(report['machine'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
