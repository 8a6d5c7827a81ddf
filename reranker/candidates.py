"""Candidate-set files: one query and its candidate documents per row, as JSONL or Parquet.

A row is ``{"query_id": ..., "query": ..., "documents": [...]}`` where each document is a string
or an object ``{"id", "text"}`` (an optional ``title`` is joined before the text, as in BEIR). A
string document, or an object without ``id``, is named by its position in the list (``"0"``,
``"1"``, ...).

Files are read in ranges (bytes of a JSONL file, rows of a Parquet file) so that a batch job can
split them into shards and read each shard where it is processed. Bad rows and bad documents
are returned as :class:`~reranker.ir.BadRow` with the 1-based line (JSONL) or row (Parquet)
number; a row keeps its good documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reranker.ir import BadRow, beir_text

__all__ = [
    "CandidateRow",
    "FileRange",
    "candidate_file_format",
    "iter_candidates",
    "parse_candidate_record",
    "split_candidate_file",
]

_SCAN_CHUNK = 1 << 22


@dataclass(frozen=True)
class CandidateRow:
    """A usable row: the query and its documents (ids and texts, in input order)."""

    query_id: str
    query: str
    doc_ids: tuple[str, ...]
    texts: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class FileRange:
    """A slice of a candidate file: bytes ``[start, end)`` of JSONL, rows of Parquet.

    ``first_line`` is the 1-based number of the first line (or row) in the slice; ``rows`` the
    physical lines (or rows) it spans.
    """

    path: str
    start: int
    end: int
    first_line: int
    rows: int


def candidate_file_format(path: str | Path) -> str:
    """``"parquet"`` for ``.parquet`` / ``.pq`` files, else ``"jsonl"``."""
    return "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") else "jsonl"


def _doc_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and not any(c.isspace() for c in value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_candidate_record(
    record: Any, file: str, line: int
) -> tuple[CandidateRow | None, list[BadRow]]:
    """Validate one row; returns the usable row (or ``None``) and its bad rows.

    Document ids must be non-empty and contain no whitespace (they go into TREC runs).
    """
    if not isinstance(record, Mapping):
        return None, [BadRow(file, line, "row is not an object")]
    qid = _doc_id(record.get("query_id"))
    if qid is None:
        return None, [BadRow(file, line, "missing 'query_id' (a string without spaces)")]
    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        return None, [BadRow(file, line, "missing or empty 'query'", query_id=qid)]
    documents = record.get("documents")
    if isinstance(documents, (str, bytes)) or not isinstance(documents, (list, tuple)):
        return None, [BadRow(file, line, "'documents' must be a list", query_id=qid)]
    bad: list[BadRow] = []
    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            did, text = str(i), doc.strip()
        elif isinstance(doc, Mapping):
            given = _doc_id(doc["id"]) if doc.get("id") is not None else str(i)
            if given is None:
                bad.append(BadRow(file, line, f"documents[{i}] has a bad 'id'", query_id=qid))
                continue
            did = given
            try:
                text = beir_text(doc)
            except ValueError:
                text = ""
        else:
            bad.append(BadRow(file, line, f"documents[{i}] is not a string or object",
                              query_id=qid))
            continue
        if not text:
            bad.append(BadRow(file, line, f"documents[{i}] has empty text", query_id=qid,
                              doc_id=did))
            continue
        if did in seen:
            bad.append(BadRow(file, line, f"documents[{i}] repeats id {did!r}", query_id=qid,
                              doc_id=did))
            continue
        seen.add(did)
        ids.append(did)
        texts.append(text)
    if not ids:
        bad.append(BadRow(file, line, "no usable documents", query_id=qid))
        return None, bad
    return CandidateRow(qid, query, tuple(ids), tuple(texts), line), bad


def split_candidate_file(path: str | Path, rows_per_range: int) -> list[FileRange]:
    """Cut a candidate file into ranges of ``rows_per_range`` lines (or Parquet rows).

    JSONL is scanned for line ends without being parsed, so this is fast and uses little memory.
    """
    if rows_per_range < 1:
        raise ValueError("rows_per_range must be >= 1")
    name = str(path)
    if candidate_file_format(path) == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
        return [
            FileRange(name, s, min(s + rows_per_range, total), s + 1,
                      min(s + rows_per_range, total) - s)
            for s in range(0, total, rows_per_range)
        ]
    ranges: list[FileRange] = []
    start, offset, lines, first = 0, 0, 0, 1
    with open(path, "rb") as fh:
        for raw in fh:
            offset += len(raw)
            lines += 1
            if lines == rows_per_range:
                ranges.append(FileRange(name, start, offset, first, lines))
                start, first, lines = offset, first + lines, 0
    if lines:
        ranges.append(FileRange(name, start, offset, first, lines))
    return ranges


def iter_candidates(
    part: FileRange | str | Path,
) -> Iterator[tuple[CandidateRow | None, list[BadRow]]]:
    """Read a candidate file (or one :class:`FileRange` of it) row by row.

    Yields ``(row, bad_rows)`` for each non-blank line or Parquet row; ``row`` is ``None`` when
    the whole row is unusable.
    """
    if not isinstance(part, FileRange):
        part = FileRange(str(part), 0, -1, 1, -1)
    if candidate_file_format(part.path) == "parquet":
        yield from _iter_parquet(part)
        return
    with open(part.path, "rb") as fh:
        fh.seek(part.start)
        no = part.first_line - 1
        while part.end < 0 or fh.tell() < part.end:
            raw = fh.readline()
            if not raw:
                break
            no += 1
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                snippet = text.rstrip("\r\n")[:200]
                yield None, [BadRow(part.path, no, f"invalid JSON: {exc.args[0]}", snippet)]
                continue
            yield parse_candidate_record(record, part.path, no)


def _iter_parquet(part: FileRange) -> Iterator[tuple[CandidateRow | None, list[BadRow]]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part.path)
    end = pf.metadata.num_rows if part.end < 0 else part.end
    first = 0
    for group in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        lo, hi = max(part.start, first), min(end, first + size)
        if lo < hi:
            table = pf.read_row_group(group).slice(lo - first, hi - lo)
            for i, record in enumerate(table.to_pylist()):
                yield parse_candidate_record(record, part.path, lo + i + 1)
        first += size
        if first >= end:
            break
