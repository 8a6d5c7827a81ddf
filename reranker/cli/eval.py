"""``reranker eval``: nDCG@10, MRR@10, Recall@100 of TREC runs against qrels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_eval_parser"]


def _cmd_eval(args: argparse.Namespace) -> int:
    from reranker.evaluation import DEFAULT_MEASURES, evaluate_runs, format_report

    report = evaluate_runs(args.qrels, args.run, args.measure or DEFAULT_MEASURES)
    print(format_report(report, args.format))
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
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_cmd_eval)
    return p
