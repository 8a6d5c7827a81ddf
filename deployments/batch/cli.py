"""``reranker batch``: rerank candidate files or a TREC run on Ray Data (resumable).

Registered on the ``reranker`` command through the ``reranker.commands`` entry-point group.
Ray is imported only when the command runs, so the rest of the command line stays light.
The model is checked before Ray starts (``deployments.startup.check_models``), and a job that
fails on Ray is reported by its root cause, in one line. Progress and the summary go to stderr;
nothing but results goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deployments.batch.progress import ProgressReporter
from deployments.startup import check_models, root_cause
from reranker.cli.arguments import MODEL_HELP, model_arg
from reranker.errors import BackendError, InvalidInputError

__all__ = ["add_batch_parser"]


def _cmd_batch(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from deployments.batch.job import BatchJobSpec, run_batch_job

    fields = {
        "model": model_arg(args.model), "output": args.output,
        "candidates": tuple(args.candidates or ()), "run": args.run, "queries": args.queries,
        "corpus": args.corpus, "depth": args.depth, "top_k": args.top_k,
        "shard_size": args.shard_size, "batch_size": args.batch_size,
        "concurrency": args.concurrency, "num_cpus_per_actor": args.num_cpus_per_actor,
        "num_gpus_per_actor": args.num_gpus_per_actor, "output_format": args.format,
        "tag": args.tag, "raw_scores": args.raw_scores, "overwrite": args.overwrite,
        "address": args.address, "num_cpus": args.num_cpus,
        "progress_interval_s": args.progress_interval, "ray_progress_bars": args.ray_progress,
    }
    try:
        spec = BatchJobSpec(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidInputError(f"invalid batch job: {problems}") from exc

    if spec.address is None:  # a cluster's nodes may hold files and keys this machine lacks
        check_models([spec.model])

    if not args.ray_progress:
        import logging

        import ray.data  # noqa: F401  (configures its loggers on import; quieten them after)

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    reporter = None if args.quiet else ProgressReporter(sys.stderr)
    if reporter is not None and reporter.live:
        # A bar is redrawn, not appended to: refresh it about every second.
        spec = spec.model_copy(update={"progress_interval_s": min(args.progress_interval, 1.0)})
    try:
        summary = run_batch_job(spec, progress=reporter)
    except BackendError as exc:
        cause = exc.__cause__
        if cause is None or not str(exc).endswith(str(cause)):
            raise
        # The job's message ends with Ray's error, a traceback nested in a traceback: keep the
        # job's own words and the one line that explains the failure.
        head = str(exc)[: len(str(exc)) - len(str(cause))]
        raise BackendError(head + root_cause(cause)) from None
    finally:
        if reporter is not None:
            reporter.close()
    print(f"[batch] {summary}", file=sys.stderr, flush=True)
    if args.summary_json:
        from dataclasses import asdict

        print(json.dumps(asdict(summary), indent=2))
    return 0


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``reranker batch`` on an ``add_subparsers()`` object."""
    p = subparsers.add_parser(
        "batch", help="rerank candidate files or a TREC run on Ray (resumable)",
        description="Rerank first-stage candidates with Ray Data. Rerunning the same command "
        "into the same --output resumes: finished shards are skipped.",
    )
    p.add_argument("--model", "-m", default="fast", help=MODEL_HELP)
    p.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    src = p.add_argument_group("inputs: candidate files, or the IR layout")
    src.add_argument("--candidates", nargs="+", type=Path, metavar="FILE",
                     help="JSONL/Parquet rows {query_id, query, documents}")
    src.add_argument("--run", type=Path, help="first-stage TREC run")
    src.add_argument("--queries", type=Path, help="BEIR queries.jsonl")
    src.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl")
    src.add_argument("--depth", type=int, default=100,
                     help="candidates kept per query from the run (default 100)")
    out = p.add_argument_group("output")
    out.add_argument("--top-k", "-k", type=int, help="results written per query (default all)")
    out.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    out.add_argument("--tag", default="reranker", help="TREC run tag")
    out.add_argument("--raw-scores", action="store_true", help="logits instead of probabilities")
    out.add_argument("--overwrite", action="store_true",
                     help="discard a different job's output instead of refusing")
    out.add_argument("--summary-json", action="store_true", help="print the summary as JSON")
    ray_ = p.add_argument_group("Ray")
    ray_.add_argument("--address", help="existing Ray cluster (default: start a local Ray)")
    ray_.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    ray_.add_argument("--concurrency", type=int, default=1, help="actors, each with one model")
    ray_.add_argument("--num-cpus-per-actor", type=float, default=1.0)
    ray_.add_argument("--num-gpus-per-actor", type=float, default=0.0)
    ray_.add_argument("--batch-size", type=int, default=16, help="queries per actor call")
    ray_.add_argument("--shard-size", type=int, default=1000, help="queries per output shard")
    ray_.add_argument("--progress-interval", type=float, default=5.0,
                      help="seconds between progress lines when stderr is not a terminal "
                      "(on a terminal a live bar is redrawn every second)")
    ray_.add_argument("--ray-progress", action="store_true", help="Ray Data's progress bars")
    ray_.add_argument("--quiet", "-q", action="store_true", help="no progress bar or lines")
    p.set_defaults(func=_cmd_batch)
    return p


