"""The output folder of a batch job: shard files, the manifest that makes resume work, finals.

Layout of ``OUTPUT/``::

    job.json                what the job is (inputs, model, options): a rerun must match it
    manifest.jsonl          one line per job start and per committed shard (the commit point)
    shards/NNNNN.trec       the reranked TREC run of shard NNNNN
    shards/NNNNN.results.jsonl|parquet   one row per (query, document): ids, rank, score
    shards/NNNNN.rejects.jsonl           bad rows and failed queries met in that shard
    rejects.plan.jsonl      bad rows found while planning (run, queries, corpus); rewritten
    run.trec, results.jsonl|parquet, rejects.jsonl, summary.json   the finals, once all is done

A shard's files are each written to a temporary name and renamed; then a line is appended to
the manifest. Only shards named in the manifest count as done, so a job killed at any point
reruns exactly the shards it had not committed. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reranker.errors import ConfigError
from reranker.ir import BadRow, atomic_write, format_trec_line

__all__ = ["OutputStore", "QueryResult"]

QueryResult = Mapping[str, Any]
"""One query as the workers return it: ``query_id``, ``doc_ids`` (best first), ``scores``,
``input_ranks``, ``error`` and ``rejects`` (JSON strings)."""

_FINALS = ("run.trec", "results.jsonl", "results.parquet", "rejects.jsonl", "summary.json")


class OutputStore:
    """Reads and writes one job's output folder (see the module docstring)."""

    def __init__(self, folder: str | Path, output_format: str = "jsonl", tag: str = "reranker"):
        self.folder = Path(folder)
        self.shards = self.folder / "shards"
        self.format = output_format
        self.tag = tag
        self.attempt = 0

    # --- opening and resume ----------------------------------------------------------------

    def open(self, job: Mapping[str, Any], *, overwrite: bool = False) -> dict[int, dict[str, Any]]:
        """Claim the folder for ``job``; returns the shards already committed (by shard id).

        Raises:
            ConfigError: the folder holds a different job and ``overwrite`` is false.
        """
        job_file = self.folder / "job.json"
        if overwrite and self.folder.exists():
            for name in ("job.json", "manifest.jsonl", "rejects.plan.jsonl", *_FINALS):
                (self.folder / name).unlink(missing_ok=True)
            shutil.rmtree(self.shards, ignore_errors=True)
        if job_file.exists():
            old = json.loads(job_file.read_text(encoding="utf-8"))
            diff = _differences(old, dict(job))
            if diff:
                raise ConfigError(
                    f"{self.folder} holds another job (it differs in: {'; '.join(diff)}); "
                    "pass --overwrite to start again, or choose another --output"
                )
        else:
            with atomic_write(job_file) as fh:
                json.dump(dict(job), fh, indent=2, sort_keys=True)
        self.shards.mkdir(parents=True, exist_ok=True)
        for stale in self.shards.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        done, starts = self._read_manifest()
        self.attempt = starts + 1
        self._append({"event": "start", "attempt": self.attempt, "time": time.time()})
        return done

    def _read_manifest(self) -> tuple[dict[int, dict[str, Any]], int]:
        path = self.folder / "manifest.jsonl"
        done: dict[int, dict[str, Any]] = {}
        starts = 0
        if not path.exists():
            return done, starts
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill; the shard it named is simply redone
            if entry.get("event") == "start":
                starts += 1
            elif entry.get("event") == "shard" and all(
                (self.shards / name).exists() for name in entry.get("files", [])
            ):
                done[int(entry["shard"])] = entry
        return done, starts

    def _append(self, entry: Mapping[str, Any]) -> None:
        path = self.folder / "manifest.jsonl"
        # A kill mid-append leaves a line without its newline: start on a fresh line, or this
        # entry would be glued to the torn one and lost with it.
        torn = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if torn else "") + json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # --- shards ----------------------------------------------------------------------------

    def _names(self, shard: int) -> tuple[str, str, str]:
        ext = "parquet" if self.format == "parquet" else "jsonl"
        return f"{shard:05d}.trec", f"{shard:05d}.results.{ext}", f"{shard:05d}.rejects.jsonl"

    def commit_shard(self, shard: int, results: Sequence[QueryResult]) -> dict[str, Any]:
        """Write one shard's files atomically, then record it in the manifest."""
        trec, table, rejects = self._names(shard)
        rows = [
            (r["query_id"], doc, rank, score, irank)
            for r in results
            for rank, (doc, score, irank) in enumerate(
                zip(r["doc_ids"], r["scores"], r["input_ranks"], strict=True), 1
            )
        ]
        with atomic_write(self.shards / trec) as fh:
            fh.writelines(format_trec_line(q, d, k, s, self.tag) for q, d, k, s, _ in rows)
        self._write_results(self.shards / table, rows)
        bad = [line for r in results for line in r["rejects"]]
        with atomic_write(self.shards / rejects) as fh:
            fh.writelines(line + "\n" for line in bad)
        entry = {
            "event": "shard", "shard": shard, "attempt": self.attempt, "time": time.time(),
            "queries": sum(1 for r in results if r["doc_ids"]),
            "pairs": len(rows), "scored_pairs": sum(int(r["pairs"]) for r in results),
            "failures": sum(1 for r in results if r["error"]), "rejects": len(bad),
            "files": [trec, table, rejects],
        }
        self._append(entry)
        return entry

    def _write_results(self, path: Path, rows: list[tuple[str, str, int, float, int]]) -> None:
        keys = ("query_id", "doc_id", "rank", "score", "input_rank")
        if self.format != "parquet":
            with atomic_write(path) as fh:
                fh.writelines(json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in rows)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _results_schema()
        cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[]] * len(keys)
        arrays = [pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)]
        table = pa.table(arrays, schema=schema)
        with atomic_write(path, "wb") as fh:
            pq.write_table(table, fh)

    # --- plan rejects and finals -----------------------------------------------------------

    def write_plan_rejects(self, rows: Iterable[BadRow]) -> int:
        """Rewrite ``rejects.plan.jsonl`` (planning is redone on every run); returns the count.

        Rows are written by file, then line.
        """
        n = 0
        with atomic_write(self.folder / "rejects.plan.jsonl") as fh:
            for row in sorted(rows, key=lambda r: (r.file, r.line or 0)):
                fh.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
                n += 1
        return n

    def finish(self, shard_ids: Sequence[int], summary: Mapping[str, Any]) -> dict[str, str]:
        """Concatenate the shards, in shard order, into the final files; write the summary."""
        names = [self._names(s) for s in sorted(shard_ids)]
        ext = "parquet" if self.format == "parquet" else "jsonl"
        out = {"run": self.folder / "run.trec", "rejects": self.folder / "rejects.jsonl",
               "results": self.folder / f"results.{ext}"}
        _concat([self.shards / n[0] for n in names], out["run"])
        _concat([self.folder / "rejects.plan.jsonl", *(self.shards / n[2] for n in names)],
                out["rejects"])
        if self.format == "parquet":
            _concat_parquet([self.shards / n[1] for n in names], out["results"])
        else:
            _concat([self.shards / n[1] for n in names], out["results"])
        files = {k: str(v) for k, v in out.items()}
        with atomic_write(self.folder / "summary.json") as fh:
            json.dump({**summary, "files": files}, fh, indent=2)
        return files


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ, with both values when they are short."""
    found: list[str] = []
    for key in sorted({*old, *new}):
        before, now = old.get(key), new.get(key)
        if before == now:
            continue
        name = f"{prefix}{key}"
        if isinstance(before, Mapping) and isinstance(now, Mapping):
            found += _differences(before, now, f"{name}.")
        elif all(v is None or isinstance(v, (str, int, float, bool)) for v in (before, now)) and (
                len(repr(before)) + len(repr(now)) < 200):
            found.append(f"{name} ({before!r} then, {now!r} now)")
        else:
            found.append(name)
    return found


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def _results_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("rank", pa.int32()),
                      ("score", pa.float64()), ("input_rank", pa.int32())])


def _concat(parts: Sequence[Path], dest: Path) -> None:
    with atomic_write(dest, "wb") as out:
        for part in parts:
            if part.exists():
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)


def _concat_parquet(parts: Sequence[Path], dest: Path) -> None:
    import pyarrow.parquet as pq

    schema = _results_schema()
    with atomic_write(dest, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part, schema=schema))
