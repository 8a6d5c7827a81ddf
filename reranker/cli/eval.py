"""``reranker eval``: nDCG@10, MRR@10, Recall@100 of TREC runs against qrels, and the
``min_score`` that reaches a precision or recall target (``--threshold-for``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_eval_parser"]


def _cmd_eval(args: argparse.Namespace) -> int:
    from reranker.evaluation import DEFAULT_MEASURES, evaluate_runs, format_report
    from reranker.ir import read_trec_qrels, read_trec_run
    from reranker.thresholds import parse_threshold_target, pick_threshold

    targets = [parse_threshold_target(t) for t in args.threshold_for or ()]
    report = evaluate_runs(args.qrels, args.run, args.measure or DEFAULT_MEASURES)
    picks: list[dict[str, Any]] = []
    if targets:
        qrels, _ = read_trec_qrels(args.qrels)
        for run_score in report.runs:
            run, _ = read_trec_run(run_score.path)
            for metric, target in targets:
                pick = pick_threshold(qrels, run, metric, target)
                picks.append({"run": run_score.name, **pick.to_dict()})
    if args.format == "json":
        out = report.to_dict()
        if targets:
            out["thresholds"] = picks
        print(json.dumps(out, indent=2))
        return 0
    print(format_report(report, args.format))
    for p in picks:
        print(f"{p['run']}: min_score {p['threshold']:.6g} for {p['metric']} >= {p['target']:g} "
              f"(precision {p['precision']:.4f}, recall {p['recall']:.4f}, keeps {p['kept']} "
              f"of {p['pairs']} pairs)")
    return 0


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``reranker eval`` on an ``add_subparsers()`` object."""
    p = subparsers.add_parser(
        "eval", help="nDCG@10, MRR@10, Recall@100 of TREC runs, side by side",
        description="Evaluate TREC runs against qrels with ir-measures (trec_eval's code).",
    )
    p.add_argument("--qrels", required=True, type=Path, help="TREC qrels file")
    p.add_argument("--run", required=True, action="append", type=Path,
                   help="a TREC run; repeat to compare runs")
    p.add_argument("--measure", action="append",
                   help="a measure such as nDCG@10, MRR@10, Recall@100, P@5 (repeatable)")
    p.add_argument("--threshold-for", action="append", metavar="METRIC=TARGET",
                   help="also pick the min_score at which precision or recall reaches TARGET "
                   "on each run (e.g. precision=0.9; repeatable). The run's scores must be the "
                   "model's probabilities")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_cmd_eval)
    return p
