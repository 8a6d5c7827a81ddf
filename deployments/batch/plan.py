"""Planning a batch job: cutting the input into deterministic shards, and the text join.

Two input layouts:

* **Candidate files** (JSONL / Parquet rows with their texts): a shard is a range of
  ``shard_size`` lines (rows) of one file. Planning parses each row once for its ``query_id``:
  a row repeating the ``query_id`` of an earlier usable row is a reject and is left out of the
  shards (a shard ends before it); the rows are parsed again, with their texts, where the shard
  is processed (``deployments.batch.worker.read_candidate_shard``).
* **IR layout** (TREC run + BEIR queries + corpus): the run is read twice, streaming. Pass one
  collects the docids the job needs (the top ``depth`` of each query); the corpus is then
  streamed once and only those documents are kept, as one Arrow table (``_id``, ``text``). Pass
  two cuts the queries, in run order, into shards of ``shard_size`` queries; a shard row holds the
  query text, the candidate docids and their row numbers in the corpus table, but no document
  text. The corpus table goes to Ray's object store once, and workers read texts from it.
  A run whose lines are not grouped by query (sorted by docid, concatenated shards) is first
  rewritten grouped, by :func:`reranker.ir.regroup_run`, into a temporary folder (under
  ``$TMPDIR``) removed once the shards are cut; ``IrPlan.run_order`` says which happened.

The shard of a query depends only on the inputs and ``shard_size``, so a rerun of the same job
sees the same shards and can skip those already written. Nothing here imports Ray.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from reranker.candidates import FileRange, split_candidate_file
from reranker.ir import (
    BadRow,
    RegroupedRun,
    RunGroup,
    iter_beir_records,
    iter_run_groups,
    read_beir_queries,
    regroup_run,
    run_is_grouped,
)

__all__ = [
    "CANDIDATE_ROW_SCHEMA",
    "IR_ROW_SCHEMA",
    "CandidatePlan",
    "IrPlan",
    "plan_candidate_shards",
    "plan_ir",
]

_COMMON = [
    ("shard", pa.int64()), ("seq", pa.int64()), ("shard_rows", pa.int64()),
    ("query_id", pa.string()), ("query", pa.string()), ("file", pa.string()),
    ("line", pa.int64()), ("doc_ids", pa.list_(pa.string())), ("rejects", pa.list_(pa.string())),
]
IR_ROW_SCHEMA = pa.schema([*_COMMON, ("doc_rows", pa.list_(pa.int64()))])
"""A query to rerank, IR layout: texts are rows of the corpus table."""
CANDIDATE_ROW_SCHEMA = pa.schema([*_COMMON, ("texts", pa.list_(pa.large_string())),
                                   ("images", pa.list_(pa.string()))])
"""A query to rerank, candidate layout: texts travel with the row."""

_CHUNK = 65_536


@dataclass
class CandidatePlan:
    """The planned candidate-file job: one :class:`FileRange` per shard, and the rows left out
    (a ``query_id`` already given by an earlier row)."""

    shards: list[FileRange]
    rejects: list[BadRow] = field(default_factory=list)


def plan_candidate_shards(paths: Sequence[str | Path], shard_size: int) -> CandidatePlan:
    """The shards over the files in the order given; see the module docstring."""
    first_rows: dict[str, tuple[str, int]] = {}
    plan = CandidatePlan(shards=[])
    for path in paths:
        plan.shards += split_candidate_file(path, shard_size, first_rows=first_rows,
                                            rejects=plan.rejects)
    return plan


@dataclass
class IrPlan:
    """The planned IR-layout job.

    ``shards`` is a generator: iterate it once, after which ``rejects`` is complete and
    ``shard_count`` is final.
    """

    corpus: pa.Table
    shards: Iterator[tuple[int, pa.Table]]
    rejects: list[BadRow] = field(default_factory=list)
    shard_count: int = 0
    needed_docs: int = 0
    run_order: Literal["grouped", "regrouped"] = "grouped"
    """``"regrouped"``: the run's lines were not grouped by query and were regrouped on disk."""


def _needed_docids(run: str | Path | RegroupedRun, depth: int | None) -> set[str]:
    return {
        line.doc_id
        for group in iter_run_groups(run, depth)
        if isinstance(group, RunGroup)
        for line in group.lines
    }


def _load_corpus(
    corpus: str | Path, needed: set[str], rejects: list[BadRow]
) -> tuple[pa.Table, dict[str, int], dict[str, BadRow]]:
    """The needed documents as an Arrow table, their row numbers, and the unusable ones.

    Records with an ``image`` (vision rerankers) add an ``image`` column: the path, resolved
    against the corpus file's folder, or the data URI; null for text-only records."""
    rows: dict[str, int] = {}
    unusable: dict[str, BadRow] = {}
    chunks_id: list[pa.Array] = []
    chunks_text: list[pa.Array] = []
    ids: list[str] = []
    texts: list[str] = []
    images: list[str | None] = []
    for item in iter_beir_records(corpus, images=True):
        if isinstance(item, BadRow):
            if item.doc_id is None:
                rejects.append(item)  # no id: we cannot tell whether the job needed it
            elif item.doc_id in needed:
                unusable.setdefault(item.doc_id, item)
            continue
        docid, text, _, image = item
        if docid not in needed or docid in rows:
            continue
        rows[docid] = len(rows)
        ids.append(docid)
        texts.append(text)
        images.append(image)
        if len(ids) == _CHUNK:
            chunks_id.append(pa.array(ids, pa.string()))
            chunks_text.append(pa.array(texts, pa.large_string()))
            ids, texts = [], []
    chunks_id.append(pa.array(ids, pa.string()))
    chunks_text.append(pa.array(texts, pa.large_string()))
    columns = {"_id": pa.chunked_array(chunks_id), "text": pa.chunked_array(chunks_text)}
    if any(i is not None for i in images):
        columns["image"] = pa.chunked_array([pa.array(images, pa.string())])
    return pa.table(columns).combine_chunks(), rows, unusable


def plan_ir(
    run: str | Path,
    queries: str | Path,
    corpus: str | Path,
    *,
    depth: int | None,
    shard_size: int,
) -> IrPlan:
    """Plan an IR-layout job (see the module docstring).

    Bad rows: malformed run, queries and corpus lines; run lines whose query is not in the
    queries file, whose docid is not in the corpus, or whose document has no text.
    """
    source: str | Path | RegroupedRun = run
    work: str | None = None
    if not run_is_grouped(run):
        work = tempfile.mkdtemp(prefix="reranker-regroup-")
    try:
        if work is not None:
            source = regroup_run(run, work)
        needed = _needed_docids(source, depth)
        query_texts, rejects = read_beir_queries(queries)
        table, rows, unusable = _load_corpus(corpus, needed, rejects)
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    plan = IrPlan(corpus=table, shards=iter(()), rejects=rejects, needed_docs=len(needed),
                  run_order="grouped" if work is None else "regrouped")
    plan.shards = _ir_shards(source, depth, shard_size, query_texts, rows, unusable, plan, work)
    if work is not None:  # also when the shards are never read to the end
        weakref.finalize(plan, shutil.rmtree, work, True)
    return plan


def _ir_shards(
    run: str | Path | RegroupedRun, depth: int | None, shard_size: int, queries: dict[str, str],
    rows: dict[str, int], unusable: dict[str, BadRow], plan: IrPlan, work: str | None,
) -> Iterator[tuple[int, pa.Table]]:
    try:
        yield from _ir_shard_tables(run, depth, shard_size, queries, rows, unusable, plan)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _ir_shard_tables(
    run: str | Path | RegroupedRun, depth: int | None, shard_size: int, queries: dict[str, str],
    rows: dict[str, int], unusable: dict[str, BadRow], plan: IrPlan,
) -> Iterator[tuple[int, pa.Table]]:
    name = run.source if isinstance(run, RegroupedRun) else str(run)
    batch: list[dict[str, Any]] = []
    shard = 0
    for group in iter_run_groups(run, depth):
        if isinstance(group, BadRow):
            plan.rejects.append(group)
            continue
        query = queries.get(group.query_id)
        doc_ids: list[str] = []
        doc_rows: list[int] = []
        for line in group.lines:
            if query is None:
                reason = "query id not in the queries file"
            elif line.doc_id in rows:
                doc_ids.append(line.doc_id)
                doc_rows.append(rows[line.doc_id])
                continue
            elif line.doc_id in unusable:
                bad = unusable[line.doc_id]
                reason = f"document unusable: {bad.reason} ({bad.file} line {bad.line})"
            else:
                reason = "docid not in the corpus"
            plan.rejects.append(BadRow(name, line.line, reason, "", group.query_id, line.doc_id))
        if not doc_ids:
            continue
        batch.append({"shard": shard, "seq": len(batch), "query_id": group.query_id,
                      "query": query, "file": name, "line": group.lines[0].line, "doc_ids": doc_ids,
                      "rejects": [], "doc_rows": doc_rows})
        if len(batch) == shard_size:
            yield shard, _table(batch)
            shard, batch = shard + 1, []
            plan.shard_count = shard
    if batch:
        yield shard, _table(batch)
        plan.shard_count = shard + 1


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    for row in rows:
        row["shard_rows"] = len(rows)
    return pa.Table.from_pylist(rows, schema=IR_ROW_SCHEMA)
