"""Decoder prefix reuse: pairs/s with a request's shared prompt prefix run once, and without.

A Qwen3-Reranker stand-in with the 0.6B model's widths (hidden 1024, 16 query and 8 key/value
heads of 128, SwiGLU 3072; ``--layers`` of its 28, default 4: the ratio does not depend on
depth, each layer costing the same share on both sides) scores one request of 100 documents
of about ``--tokens`` tokens each (default 100 and 400), float32 (``--int8`` adds the int8
recipe). The two sides (``prefix_reuse`` on and off on the same backend) alternate pass by
pass; scores are compared between them. The machine (``lscpu`` model name and flags) is
recorded with the figures in ``benchmarks/results/decoder_prefix.json``.

    python benchmarks/decoder_prefix.py                 # about 5 minutes on 2 cores
    python benchmarks/decoder_prefix.py --tokens 100 --rounds 3 --layers 8

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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts  # noqa: E402

WIDTHS_0_6B = dict(hidden_size=1024, num_heads=16, num_kv_heads=8, head_dim=128)
RESULTS = ROOT / "benchmarks" / "results" / "decoder_prefix.json"


def _documents(tokenizer: Any, count: int, tokens: int) -> list[str]:
    """``count`` documents of about ``tokens`` tokens of English text each (word spans cut
    to the target by bisection on their word count)."""
    from reranker.sample_requests import benchmark_requests

    words = " ".join(d for r in benchmark_requests(8, seed=5) for d in r.documents).split()

    def length(start: int, n: int) -> int:
        text = " ".join((words * 2)[start : start + n])
        return len(tokenizer.encode(" " + text, add_special_tokens=False).ids)

    docs, start = [], 0
    for _ in range(count):
        lo, hi = 1, 4 * tokens
        while lo < hi:
            mid = (lo + hi) // 2
            if length(start, mid) < tokens:
                lo = mid + 1
            else:
                hi = mid
        docs.append(" ".join((words * 2)[start : start + lo]))
        start = (start + lo) % len(words)
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="100,400", help="document lengths, comma-separated")
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also the int8 recipe")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "decoder-prefix")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    from reranker.backends import build_backend
    from reranker.backends.prefix_reuse import shared_prefix_length
    from reranker.config import parse_backend_config
    from reranker.testing.families.qwen3 import make_checkpoint

    folder = args.work_dir / f"qwen3-0.6b-widths-{args.layers}l"
    if not (folder / "model.safetensors").is_file():
        make_checkpoint(folder, num_layers=args.layers, **WIDTHS_0_6B)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    query = "what causes the tides along the coast"
    report: dict[str, Any] = {"machine": machine_facts(), "layers": args.layers,
                              "widths": WIDTHS_0_6B, "documents": args.documents, "runs": []}
    for optimization in ["none", "int8"] if args.int8 else ["none"]:
        backend = build_backend(parse_backend_config({
            "type": "custom", "model_id": str(folder), "max_length": 1024,
            "optimization": optimization, "cache_dir": str(args.work_dir / "cache")}))
        for tokens in [int(t) for t in args.tokens.split(",")]:
            docs = _documents(tok, args.documents, tokens)
            rows = backend.encode(query, docs).ids
            rates: dict[bool, list[float]] = {True: [], False: []}
            cpu: dict[bool, list[float]] = {True: [], False: []}
            scores: dict[bool, np.ndarray] = {}
            backend.score(query, docs[:4])  # warm-up
            for rnd in range(args.rounds):
                for reuse in (True, False) if rnd % 2 == 0 else (False, True):
                    backend.prefix_reuse = reuse
                    started, cpu0 = time.perf_counter(), time.process_time()
                    scores[reuse] = backend.score(query, docs)
                    rates[reuse].append(len(docs) / (time.perf_counter() - started))
                    cpu[reuse].append((time.process_time() - cpu0) / len(docs))
            row = {
                "optimization": optimization,
                "document_tokens": round(float(np.mean([len(tok.encode(" " + d).ids)
                                                        for d in docs])), 1),
                "prompt_tokens": round(float(np.mean([len(r) for r in rows])), 1),
                "shared_prefix_tokens": shared_prefix_length(rows),
                "reuse_pairs_per_s": {"median": round(statistics.median(rates[True]), 2),
                                      "best": round(max(rates[True]), 2)},
                "whole_pairs_per_s": {"median": round(statistics.median(rates[False]), 2),
                                      "best": round(max(rates[False]), 2)},
                "max_score_diff": float(f"{np.abs(scores[True] - scores[False]).max():.3g}"),
            }
            row["ratio_median"] = round(row["reuse_pairs_per_s"]["median"]
                                        / row["whole_pairs_per_s"]["median"], 3)
            row["ratio_best"] = round(row["reuse_pairs_per_s"]["best"]
                                      / row["whole_pairs_per_s"]["best"], 3)
            # CPU seconds per pair (both run threads): what load on the machine moves least.
            row["cpu_ms_per_pair"] = {k: round(1000 * statistics.median(cpu[r]), 1)
                                      for k, r in (("reuse", True), ("whole", False))}
            row["ratio_cpu"] = round(row["cpu_ms_per_pair"]["whole"]
                                     / row["cpu_ms_per_pair"]["reuse"], 3)
            report["runs"].append(row)
            print(json.dumps(row), file=sys.stderr)
        backend.close()
    report["machine"]["load_avg_after"] = machine_facts()["load_avg"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
