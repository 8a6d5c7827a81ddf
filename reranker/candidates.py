"""Candidate-set files: one query and its candidate documents per row, as JSONL or Parquet.

A row is ``{"query_id": ..., "query": ..., "documents": [...]}`` where each document is a string
or an object ``{"id", "text"}`` (an optional ``title`` is joined before the text, as in BEIR). A
string document, or an object without ``id``, is named by its position in the list (``"0"``,
``"1"``, ...).

Files are read in ranges (bytes of a JSONL file, rows of a Parquet file) so that a batch job can
split them into shards and read each shard where it is processed. Bad rows and bad documents
are returned as :class:`~reranker.ir.BadRow` with the 1-based line (JSONL) or row (Parquet)
number; a row keeps its good documents. A line ``json`` cannot read (nesting too deep included)
is a bad row, never an exception.

A ``query_id`` is reranked once: when the files are split into ranges, a row whose ``query_id``
an earlier usable row (in this file or an earlier one) already has is a bad row, left out of
every range. Merging the two would change what was asked (two candidate lists, maybe
overlapping), and two rankings of one query would write duplicate (query, document) lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reranker.ir import JSON_ERRORS, BadRow, beir_text, json_error

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
    #: Per document, its ``image`` (a path, resolved against the file's folder, or a data
    #: URI) or ``None``; empty when no document has one (vision rerankers read them).
    images: tuple[str | None, ...] = ()


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
    images: list[str | None] = []
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        image: str | None = None
        if isinstance(doc, str):
            did, text = str(i), doc.strip()
        elif isinstance(doc, Mapping):
            image = _image_of(doc.get("image"), file)
            if doc.get("image") is not None and image is None:
                bad.append(BadRow(file, line, f"documents[{i}].image must be a path or a "
                                  "data: URI", query_id=qid))
                continue
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
        if not text and image is None:
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
        images.append(image)
    if not ids:
        bad.append(BadRow(file, line, "no usable documents", query_id=qid))
        return None, bad
    kept = tuple(images) if any(i is not None for i in images) else ()
    return CandidateRow(qid, query, tuple(ids), tuple(texts), line, kept), bad


def _image_of(value: Any, file: str) -> str | None:
    """A document's ``image``: a data URI as it is, a path resolved against ``file``'s
    folder; ``None`` for no image or one that is not a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        return None
    if value.startswith("data:"):
        return value
    return str(Path(file).parent / value)


def split_candidate_file(
    path: str | Path,
    rows_per_range: int,
    *,
    first_rows: dict[str, tuple[str, int]] | None = None,
    rejects: list[BadRow] | None = None,
) -> list[FileRange]:
    """Cut a candidate file into ranges of ``rows_per_range`` lines (or Parquet rows).

    Without ``first_rows``, JSONL is scanned for line ends without being parsed (fast, little
    memory). With it, every row is parsed once: a usable row's ``query_id`` is recorded there
    (``query_id -> (file, line)``, shared across the files of a job) and a later row with the
    same id is left out of every range and appended to ``rejects``; ranges end before it, so
    they may hold fewer rows.
    """
    if rows_per_range < 1:
        raise ValueError("rows_per_range must be >= 1")
    name = str(path)
    if first_rows is None and candidate_file_format(path) == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
        return [
            FileRange(name, s, min(s + rows_per_range, total), s + 1,
                      min(s + rows_per_range, total) - s)
            for s in range(0, total, rows_per_range)
        ]
    ranges: list[FileRange] = []
    start = end = first = rows = 0
    for no, lo, hi, qid in _scan(path, parse=first_rows is not None):
        if qid is not None and first_rows is not None:
            if qid in first_rows:
                was = first_rows[qid]
                if rejects is not None:
                    rejects.append(BadRow(name, no, f"query_id repeated (first at {was[0]} "
                                          f"line {was[1]}); only the first row is reranked",
                                          query_id=qid))
                if rows:
                    ranges.append(FileRange(name, start, end, first, rows))
                    rows = 0
                continue
            first_rows[qid] = (name, no)
        if not rows:
            start, first = lo, no
        rows, end = rows + 1, hi
        if rows == rows_per_range:
            ranges.append(FileRange(name, start, end, first, rows))
            rows = 0
    if rows:
        ranges.append(FileRange(name, start, end, first, rows))
    return ranges


def _scan(path: str | Path, parse: bool) -> Iterator[tuple[int, int, int, str | None]]:
    """``(line, start, end, query_id)`` of each line (bytes) or Parquet row (row numbers);
    the query id of a usable row when ``parse``, else ``None``."""
    if candidate_file_format(path) == "parquet":
        for i, (row, _) in enumerate(_iter_parquet(FileRange(str(path), 0, -1, 1, -1))):
            yield i + 1, i, i + 1, row.query_id if row else None
        return
    offset = 0
    with open(path, "rb") as fh:
        for no, raw in enumerate(fh, 1):
            qid = None
            if parse and raw.strip():
                row, _ = _parse_line(raw, str(path), no)
                qid = row.query_id if row else None
            yield no, offset, offset + len(raw), qid
            offset += len(raw)


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
            if raw.strip():
                yield _parse_line(raw, part.path, no)


def _parse_line(raw: bytes, file: str, no: int) -> tuple[CandidateRow | None, list[BadRow]]:
    text = raw.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except JSON_ERRORS as exc:
        snippet = text.rstrip("\r\n")[:200]
        return None, [BadRow(file, no, f"invalid JSON: {json_error(exc)}", snippet)]
    return parse_candidate_record(record, file, no)


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
