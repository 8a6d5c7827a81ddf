"""IR file formats: TREC runs and qrels, BEIR corpus and queries, with bad-row accounting.

Readers never stop at a bad line: they yield (or return) a :class:`BadRow` naming the file, the
1-based line number and the reason, and go on. Callers decide whether to count, log or write
them to a rejects file. Writers go through :func:`atomic_write`, so a reader never sees a
half-written file.

Formats:

* TREC run: ``qid Q0 docid rank score tag`` (whitespace separated, six fields).
* TREC qrels: ``qid iteration docid relevance`` (four fields, integer relevance).
* BEIR corpus: JSON lines ``{"_id", "title", "text"}``; the text of a document is its title and
  text joined by a space, as BEIR's cross-encoder reranking does.
* BEIR queries: JSON lines ``{"_id", "text"}``.

A TREC run whose lines are not grouped by query (sorted by docid, concatenated from shards) is
streamed by :func:`iter_run_groups` only when grouped; :func:`regroup_run` first rewrites it on
disk, by query, in bounded memory (see there).

Candidate-set files (one query and its documents per row) are in :mod:`reranker.candidates`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "JSON_ERRORS",
    "BadRow",
    "RegroupedRun",
    "RunLine",
    "RunGroup",
    "atomic_write",
    "beir_text",
    "format_trec_line",
    "iter_beir_jsonl",
    "iter_beir_records",
    "iter_run_groups",
    "iter_trec_run",
    "json_error",
    "read_beir_queries",
    "read_trec_qrels",
    "read_trec_run",
    "regroup_run",
    "run_is_grouped",
    "write_trec_qrels",
    "write_trec_run",
]

_SNIPPET = 200
# A regrouped run is bucketed by query id into files of about this size, each then grouped in
# memory; at most _MAX_BUCKETS files are open at once.
_BUCKET_BYTES = 64 << 20
_MAX_BUCKETS = 256
# What json.loads raises: ValueError for bad JSON, RecursionError for nesting deeper than the
# interpreter's stack (a line of 100,000 "[" is enough).
JSON_ERRORS = (ValueError, RecursionError)


@dataclass(frozen=True)
class BadRow:
    """A line that could not be used, and why. ``line`` is 1-based; ``None`` when unknown."""

    file: str
    line: int | None
    reason: str
    text: str = ""
    query_id: str | None = None
    doc_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready mapping, without empty fields."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class RunLine:
    """One parsed TREC run line."""

    query_id: str
    doc_id: str
    rank: int
    score: float
    line: int


@dataclass(frozen=True)
class RunGroup:
    """The candidates of one query, best first-stage score first, cut to the requested depth."""

    query_id: str
    lines: tuple[RunLine, ...]
    dropped: int = 0
    """Valid lines beyond the depth, not kept (not bad rows)."""


@dataclass(frozen=True)
class RegroupedRun:
    """A TREC run rewritten on disk with each query's lines together (:func:`regroup_run`).

    ``source`` is the original file: bad rows name it and its line numbers, which the copy
    keeps (each of its lines is ``<original line number> <original line>``).
    """

    source: str
    path: Path


RunSource = str | Path | RegroupedRun


def _snippet(text: str) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def iter_trec_run(path: RunSource) -> Iterator[RunLine | BadRow]:
    """Stream a TREC run: each line as a :class:`RunLine`, or a :class:`BadRow` if malformed.

    Blank lines are skipped silently. A line is bad when it has not six fields, or its rank is
    not an integer, or its score is not a finite number.
    """
    name = _name(path)
    for line in _split_lines(path, 6, "qid Q0 docid rank score tag"):
        if isinstance(line, BadRow):
            yield line
            continue
        no, raw, (qid, _, docid, rank_text, score_text, _) = line
        try:
            rank = int(rank_text)
            score = float(score_text)
        except ValueError:
            yield BadRow(name, no, "rank must be an integer and score a number",
                         _snippet(raw), qid, docid)
            continue
        if score != score or score in (float("inf"), float("-inf")):
            yield BadRow(name, no, "score is not finite", _snippet(raw), qid, docid)
            continue
        yield RunLine(qid, docid, rank, score, no)


def _name(path: RunSource) -> str:
    return path.source if isinstance(path, RegroupedRun) else str(path)


def _numbered_lines(path: RunSource) -> Iterator[tuple[int, str]]:
    if not isinstance(path, RegroupedRun):
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield from enumerate(fh, 1)
        return
    with open(path.path, encoding="utf-8") as fh:
        for raw in fh:
            no, _, line = raw.partition(" ")
            yield int(no), line


def _split_lines(
    path: RunSource, fields: int, layout: str
) -> Iterator[tuple[int, str, list[str]] | BadRow]:
    """``(line number, line, fields)`` of each non-blank line; a wrong field count is a BadRow."""
    name = _name(path)
    for no, raw in _numbered_lines(path):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != fields:
            yield BadRow(name, no, f"expected {fields} fields ({layout}), got {len(parts)}",
                         _snippet(raw))
            continue
        yield no, raw, parts


def iter_run_groups(path: RunSource, depth: int | None = None) -> Iterator[RunGroup | BadRow]:
    """Stream a TREC run as one :class:`RunGroup` per query, in file order.

    The lines of a query must be contiguous, as every common tool writes them; memory is one
    query's lines plus the set of query ids already seen. Within a query, candidates are ordered
    by score (highest first; equal scores by rank, then file order) and the first ``depth`` kept.

    Bad rows: malformed lines, lines of a query that appears again after other queries, and a
    repeated docid within a query (the first is kept). They are yielded as they are found. A run
    that is not grouped (:func:`run_is_grouped`) is read whole through :func:`regroup_run`.
    """
    name = _name(path)
    seen: set[str] = set()
    current: str | None = None
    lines: list[RunLine] = []
    docids: set[str] = set()

    def flush() -> RunGroup:
        ordered = sorted(lines, key=lambda r: (-r.score, r.rank, r.line))
        kept = ordered if depth is None else ordered[:depth]
        return RunGroup(current or "", tuple(kept), len(ordered) - len(kept))

    for item in iter_trec_run(path):
        if isinstance(item, BadRow):
            yield item
            continue
        if item.query_id != current:
            if current is not None:
                yield flush()
            if item.query_id in seen:
                yield BadRow(name, item.line, "run is not grouped by query: this query id "
                             "appeared before other queries", "", item.query_id, item.doc_id)
                current, lines, docids = None, [], set()
                continue
            current, lines, docids = item.query_id, [], set()
            seen.add(item.query_id)
        if item.doc_id in docids:
            yield BadRow(name, item.line, "docid repeated within the query", "",
                         item.query_id, item.doc_id)
            continue
        docids.add(item.doc_id)
        lines.append(item)
    if current is not None:
        yield flush()


def run_is_grouped(path: RunSource) -> bool:
    """Whether each query's lines are contiguous (one streaming pass; memory: the query ids)."""
    seen: set[str] = set()
    current: str | None = None
    for item in iter_trec_run(path):
        if isinstance(item, BadRow) or item.query_id == current:
            continue
        if item.query_id in seen:
            return False
        current = item.query_id
        seen.add(current)
    return True


def regroup_run(path: str | Path, work_dir: str | Path) -> RegroupedRun:
    """Rewrite a TREC run under ``work_dir`` with each query's lines together, in file order.

    The lines are bucketed by a hash of their query id into files of about 64 MiB, then each
    bucket is grouped in memory and appended to the copy: memory is one bucket, disk twice the
    run. Queries come out in bucket order, then in order of first appearance: fixed by the input,
    not the file order. Lines are copied, not parsed, so bad lines are reported (with their
    original numbers) when the copy is read.

    Example:
        >>> groups = iter_run_groups(regroup_run("shuffled.trec", "/tmp/w"))  # doctest: +SKIP
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    count = min(_MAX_BUCKETS, max(1, -(-os.path.getsize(path) // _BUCKET_BYTES)))
    buckets = [work / f"bucket-{i:04d}.txt" for i in range(count)]
    with ExitStack() as stack:
        outs = [stack.enter_context(open(b, "w", encoding="utf-8")) for b in buckets]
        for no, raw in _numbered_lines(path):
            parts = raw.split(None, 1)
            if parts:
                key = zlib.crc32(parts[0].encode("utf-8", "surrogatepass")) % count
                outs[key].write(f"{no} {raw.rstrip(chr(10))}\n")
    grouped = work / "run.grouped.txt"
    with open(grouped, "w", encoding="utf-8") as dest:
        for bucket in buckets:
            by_query: dict[str, list[str]] = {}
            with open(bucket, encoding="utf-8") as fh:
                for line in fh:
                    by_query.setdefault(line.split(None, 2)[1], []).append(line)
            for lines in by_query.values():
                dest.writelines(lines)
            bucket.unlink()
    return RegroupedRun(str(path), grouped)


def read_trec_run(path: str | Path) -> tuple[dict[str, dict[str, float]], list[BadRow]]:
    """Read a whole run as ``{qid: {docid: score}}`` (for evaluation), with its bad rows.

    A docid repeated within a query keeps its first score; the repeat is a bad row.
    """
    run: dict[str, dict[str, float]] = {}
    bad: list[BadRow] = []
    for item in iter_trec_run(path):
        if isinstance(item, BadRow):
            bad.append(item)
            continue
        docs = run.setdefault(item.query_id, {})
        if item.doc_id in docs:
            bad.append(BadRow(str(path), item.line, "docid repeated within the query", "",
                              item.query_id, item.doc_id))
            continue
        docs[item.doc_id] = item.score
    return run, bad


def read_trec_qrels(path: str | Path) -> tuple[dict[str, dict[str, int]], list[BadRow]]:
    """Read TREC qrels (``qid iteration docid relevance``) as ``{qid: {docid: relevance}}``."""
    qrels: dict[str, dict[str, int]] = {}
    bad: list[BadRow] = []
    name = str(path)
    for line in _split_lines(path, 4, "qid iteration docid relevance"):
        if isinstance(line, BadRow):
            bad.append(line)
            continue
        no, raw, (qid, _, docid, rel_text) = line
        try:
            rel = int(rel_text)
        except ValueError:
            bad.append(BadRow(name, no, "relevance must be an integer", _snippet(raw),
                              qid, docid))
            continue
        qrels.setdefault(qid, {})[docid] = rel
    return qrels, bad


def beir_text(record: Mapping[str, Any]) -> str:
    """The text a cross-encoder reads for a BEIR record: ``title`` and ``text`` joined."""
    title = record.get("title") or ""
    text = record.get("text") or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise ValueError("title and text must be strings")
    return f"{title} {text}".strip() if title.strip() else text.strip()


def iter_beir_jsonl(path: str | Path) -> Iterator[tuple[str, str, int] | BadRow]:
    """Stream a BEIR corpus or queries file as ``(id, text, line)``, or :class:`BadRow`.

    Bad rows: invalid JSON (nesting too deep included), not an object, no string ``_id``,
    non-string fields, empty text.
    """
    for item in iter_beir_records(path):
        yield item if isinstance(item, BadRow) else item[:3]


def iter_beir_records(path: str | Path, *, images: bool = False
                      ) -> Iterator[tuple[str, str, int, str | None] | BadRow]:
    """:func:`iter_beir_jsonl` with each record's ``image`` (``images=True``: a path resolved
    against the file's folder, or a ``data:`` URI; a record with an image may have no text)."""
    name = str(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except JSON_ERRORS as exc:
                yield BadRow(name, no, f"invalid JSON: {json_error(exc)}", _snippet(raw))
                continue
            if not isinstance(record, dict):
                yield BadRow(name, no, "not a JSON object", _snippet(raw))
                continue
            rid = record.get("_id")
            if isinstance(rid, int) and not isinstance(rid, bool):
                rid = str(rid)
            if not isinstance(rid, str) or not rid:
                yield BadRow(name, no, "missing or non-string '_id'", _snippet(raw))
                continue
            try:
                text = beir_text(record)
            except ValueError as exc:
                yield BadRow(name, no, str(exc), _snippet(raw), doc_id=rid)
                continue
            image = record.get("image") if images else None
            if image is not None and (not isinstance(image, str) or not image.strip()):
                yield BadRow(name, no, "'image' must be a path or a data: URI", _snippet(raw),
                             doc_id=rid)
                continue
            if image is not None and not image.startswith("data:"):
                image = str(Path(name).parent / image)
            if not text and image is None:
                yield BadRow(name, no, "empty text", _snippet(raw), doc_id=rid)
                continue
            yield rid, text, no, image


def read_beir_queries(path: str | Path) -> tuple[dict[str, str], list[BadRow]]:
    """Read a BEIR queries file as ``{query_id: text}``; a repeated id keeps the first."""
    queries: dict[str, str] = {}
    bad: list[BadRow] = []
    for item in iter_beir_jsonl(path):
        if isinstance(item, BadRow):
            bad.append(BadRow(item.file, item.line, item.reason, item.text, query_id=item.doc_id))
            continue
        qid, text, no = item
        if qid in queries:
            bad.append(BadRow(str(path), no, "query id repeated", "", query_id=qid))
            continue
        queries[qid] = text
    return queries, bad


def json_error(exc: BaseException) -> str:
    """What was wrong with a line ``json.loads`` refused (one of :data:`JSON_ERRORS`)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc.args[0]) if exc.args else type(exc).__name__


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, renamed into place on success.

    Readers see either the old file or the complete new one, never a partial write; on error
    the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_trec_line(query_id: str, doc_id: str, rank: int, score: float, tag: str) -> str:
    """One TREC run line; the score is written with ``repr`` so it reads back exactly."""
    return f"{query_id} Q0 {doc_id} {rank} {score!r} {tag}\n"


def write_trec_run(
    path: str | Path,
    run: Mapping[str, Sequence[tuple[str, float]]] | Iterable[tuple[str, Sequence[Any]]],
    tag: str = "reranker",
) -> None:
    """Write ``{qid: [(docid, score), ...]}`` as a TREC run, ranks numbered in list order.

    Example:
        >>> write_trec_run("run.trec", {"q1": [("d3", 2.5), ("d1", 0.5)]})   # doctest: +SKIP
    """
    items = run.items() if isinstance(run, Mapping) else run
    with atomic_write(path) as fh:
        for qid, docs in items:
            for rank, (docid, score) in enumerate(docs, 1):
                fh.write(format_trec_line(qid, docid, rank, float(score), tag))


def write_trec_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Write ``{qid: {docid: relevance}}`` as TREC qrels."""
    with atomic_write(path) as fh:
        for qid, docs in qrels.items():
            for docid, rel in docs.items():
                fh.write(f"{qid} 0 {docid} {int(rel)}\n")
