"""Retrieval evaluation: nDCG@10, MRR@10 and Recall@100 of TREC runs, side by side.

The figures are computed by ``ir-measures`` (over ``pytrec_eval``, i.e. trec_eval's own code),
so they match what IR papers report: nDCG with linear gains (trec_eval's ``ndcg_cut``), documents
ranked by score with ties broken by docid as trec_eval does. Means are over every query of the
qrels: a query the run does not answer scores 0 (``trec_eval -c``), so a run that lost queries
cannot look better for it; run queries without judgments are ignored. Our readers do the
parsing (and report bad lines); ir-measures does the arithmetic.

Example::

    report = evaluate_runs("qrels.tsv", ["bm25.trec", "reranked.trec"])
    print(format_report(report))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reranker.errors import ConfigError, InvalidInputError
from reranker.ir import BadRow, read_trec_qrels, read_trec_run

__all__ = [
    "DEFAULT_MEASURES",
    "EvalReport",
    "RunScores",
    "evaluate_run",
    "evaluate_runs",
    "format_report",
]

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "MRR@10", "Recall@100")
# Our display names -> ir-measures names (RR is MRR once averaged; R is recall).
_ALIASES = {"MRR": "RR", "Recall": "R", "recall": "R", "mrr": "RR", "ndcg": "nDCG"}


def _ir_measures() -> Any:
    try:
        import ir_measures
    except ImportError as exc:
        raise ConfigError(
            "evaluation needs ir-measures: pip install 'reranker[eval]' (or ir-measures)"
        ) from exc
    return ir_measures


def _parse_measures(names: Sequence[str]) -> dict[str, Any]:
    irm = _ir_measures()
    parsed: dict[str, Any] = {}
    for name in names:
        head, at, cut = name.partition("@")
        try:
            parsed[name] = irm.parse_measure(_ALIASES.get(head, head) + at + cut)
        except (ValueError, NameError, AttributeError, SyntaxError) as exc:
            raise InvalidInputError(f"unknown measure {name!r}", param="measures") from exc
    return parsed


@dataclass(frozen=True)
class RunScores:
    """The figures of one run: measure name -> mean over evaluated queries."""

    name: str
    path: str
    values: dict[str, float]
    queries: int
    """Qrels queries the run answers; the means are over all qrels queries."""
    run_queries: int
    bad_rows: list[BadRow] = field(default_factory=list)


@dataclass(frozen=True)
class EvalReport:
    """All runs against one qrels file, in the order given."""

    qrels_path: str
    qrels_queries: int
    measures: tuple[str, ...]
    runs: list[RunScores]
    qrels_bad_rows: list[BadRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qrels": self.qrels_path,
            "qrels_queries": self.qrels_queries,
            "measures": list(self.measures),
            "runs": [
                {"name": r.name, "path": r.path, **r.values, "queries": r.queries,
                 "run_queries": r.run_queries, "bad_rows": len(r.bad_rows)}
                for r in self.runs
            ],
            "qrels_bad_rows": len(self.qrels_bad_rows),
        }


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure over the queries of ``qrels`` (unanswered ones score 0).

    Example:
        >>> qrels = {"q1": {"d1": 1}}
        >>> evaluate_run(qrels, {"q1": {"d2": 2.0, "d1": 1.0}}, ["MRR@10"])
        {'MRR@10': 0.5}
    """
    parsed = _parse_measures(measures)
    judged = {q: dict(d) for q, d in qrels.items()}
    scored = {q: dict(d) for q, d in run.items() if q in judged and d}
    if not scored:
        return {name: 0.0 for name in parsed}
    figures = _ir_measures().calc_aggregate(list(parsed.values()), judged, scored)
    return {name: float(figures.get(m, 0.0)) for name, m in parsed.items()}


def _run_names(paths: Sequence[str | Path]) -> list[str]:
    names = [Path(p).name for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def evaluate_runs(
    qrels_path: str | Path,
    run_paths: Sequence[str | Path],
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> EvalReport:
    """Evaluate each TREC run file against one qrels file.

    Bad lines in the files are skipped and reported in the result, never fatal.

    Raises:
        InvalidInputError: no runs, or an unknown measure.
        OSError: a file cannot be read.
    """
    if not run_paths:
        raise InvalidInputError("give at least one run", param="run")
    _parse_measures(measures)
    qrels, qrels_bad = read_trec_qrels(qrels_path)
    rows: list[RunScores] = []
    for name, path in zip(_run_names(run_paths), run_paths, strict=True):
        run, bad = read_trec_run(path)
        values = evaluate_run(qrels, run, measures)
        evaluated = sum(1 for q, d in run.items() if q in qrels and d)
        rows.append(RunScores(name, str(path), values, evaluated, len(run), bad))
    return EvalReport(str(qrels_path), len(qrels), tuple(measures), rows, qrels_bad)


def format_report(report: EvalReport, fmt: str = "table") -> str:
    """The report as an aligned text table (runs as rows) or as JSON."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    width = max([len("run"), *(len(r.name) for r in report.runs)])
    cols = [max(len(m), 7) for m in report.measures]
    pairs = list(zip(report.measures, cols, strict=True))
    head = f"{'run':<{width}}  " + "  ".join(f"{m:>{w}}" for m, w in pairs)
    lines = [head + f"  {'queries':>7}"]
    for r in report.runs:
        cells = "  ".join(f"{r.values[m]:>{w}.4f}" for m, w in pairs)
        lines.append(f"{r.name:<{width}}  {cells}  {r.queries:>7}")
    notes = [f"means over the {report.qrels_queries} qrels queries ({report.qrels_path}); "
             "'queries' counts those a run answers, the others score 0"]
    for r in report.runs:
        if r.bad_rows:
            first = r.bad_rows[0]
            notes.append(f"{r.name}: {len(r.bad_rows)} bad lines skipped (first: line "
                         f"{first.line}: {first.reason})")
    if report.qrels_bad_rows:
        notes.append(f"qrels: {len(report.qrels_bad_rows)} bad lines skipped")
    return "\n".join(lines + notes)
