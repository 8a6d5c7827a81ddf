"""``reranker bench``: its arguments and output; the measuring is ``reranker.bench``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from reranker.bench import BenchResult, run_bench
from reranker.cli.arguments import model_arg, read_text_file

__all__ = ["add_bench_parser"]


def _requests(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    if args.documents_file:
        if not args.query:
            from reranker.errors import InvalidInputError

            raise InvalidInputError("--documents-file needs --query", param="query")
        lines = read_text_file(args.documents_file, "--documents-file").splitlines()
        docs = [line for line in lines if line.strip()][: args.documents]
        return [(args.query, docs)] * args.requests
    from reranker.sample_requests import benchmark_requests

    lo, _, hi = args.words.partition("-")
    made = benchmark_requests(
        args.requests, documents_per_request=args.documents, min_words=int(lo),
        max_words=int(hi or lo), seed=args.seed,
    )
    return [(r.query, list(r.documents)) for r in made]


def _print_table(results: Sequence[BenchResult]) -> None:
    width = max(len("model"), *(len(r.model) for r in results)) + 2
    print(f"{'model':<{width}}{'variant':<9}{'load s':>8}{'pairs/s':>9}{'p50 s':>8}{'p95 s':>8}"
          f"{'+RSS MB':>9}  agreement with first variant")
    for r in results:
        variant = str(r.config.get("optimization", "none"))
        agree = (f"top-10 {r.agreement['top10_overlap']:.2f}, max {r.score_scale} diff "
                 f"{r.agreement['max_score_diff']:.3f}") if r.agreement else ""
        rss = "" if r.rss_added_mb is None else f"{r.rss_added_mb:.0f}"
        print(f"{r.model:<{width}}{variant:<9}{r.load_s:>8.2f}{r.pairs_per_s:>9.1f}"
              f"{r.p50_s:>8.3f}{r.p95_s:>8.3f}{rss:>9}  {agree}")


def _cmd_bench(args: argparse.Namespace) -> int:
    models = [model_arg(m) for m in (args.model or ["fast"])]
    optimizations = [o.strip() for o in args.optimization.split(",")] if args.optimization else []
    results = run_bench(models, _requests(args), optimizations=optimizations)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        _print_table(results)
    sys.stdout.flush()
    return 0


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``reranker`` command's subparsers."""
    p = subparsers.add_parser(
        "bench", help="measure models on this machine (pairs/s, latency, memory)",
        description=textwrap.fill(
        "Measure models on this machine: load time, pairs/s, p50/p95 latency per "
        "request and the memory each model adds. With --optimization, variants after the first "
        "report their agreement with it: the overlap of their top 10, and the largest score "
        "difference on the backend's raw scale (logits for local models, labelled 'raw logit'; "
        "probabilities for providers). Requests are cut from English documentation that ships "
        "with Python (fixed seed) unless you pass --query and --documents-file."),
        epilog="examples:\n"
        "  reranker bench --model fast --optimization fused,int8,none --requests 3\n"
        "  reranker bench --model balanced --optimization none,int8 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", "-m", action="append",
                   help="model to measure (repeatable; default: fast)")
    p.add_argument("--optimization", help="comma-separated variants of local models, e.g. "
                   "'none,int8'; later ones report agreement with the first")
    p.add_argument("--requests", type=int, default=5, help="requests per model")
    p.add_argument("--documents", type=int, default=100, help="documents per request")
    p.add_argument("--words", default="40-300", help="document length range, in words")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--query", help="your own query (with --documents-file)")
    p.add_argument("--documents-file", help="your own documents, one per line")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_bench)
    return p
