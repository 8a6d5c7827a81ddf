"""What runs on Ray Data workers: reading candidate shards, and the rerank actor.

:class:`RerankActor` is a callable class for ``Dataset.map_batches``: Ray Data starts a pool of
them and each loads its model once, in ``__init__``, through :class:`reranker.Reranker`. All
queries of a Ray Data batch go to the backend's batch entry point in one call (a local model
runs their pairs through one length-grouped ONNX pass), and each query's scores are ranked by
``reranker.scoring``, as the in-process library ranks them, so the job's ranking is the
library's ranking. A query the backend fails on (a :class:`~reranker.errors.RerankerError`) is
returned with its error and becomes a reject; the batch and the job go on.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa

from deployments.batch.plan import CANDIDATE_ROW_SCHEMA
from reranker.api import Reranker
from reranker.backends import ScoreItem
from reranker.backends.base import ItemScores
from reranker.candidates import FileRange, iter_candidates
from reranker.config import parse_backend_config
from reranker.errors import RerankerError
from reranker.ir import BadRow
from reranker.scoring import build_results, check_scores
from reranker.types import document_texts, validate_query

__all__ = ["RESULT_SCHEMA", "RerankActor", "read_candidate_shard"]

RESULT_SCHEMA = pa.schema([
    ("shard", pa.int64()), ("seq", pa.int64()), ("shard_rows", pa.int64()),
    ("query_id", pa.string()), ("doc_ids", pa.list_(pa.string())),
    ("scores", pa.list_(pa.float64())), ("input_ranks", pa.list_(pa.int32())),
    ("pairs", pa.int64()), ("error", pa.string()), ("rejects", pa.list_(pa.string())),
    ("started_at", pa.float64()), ("finished_at", pa.float64()),
])
"""One reranked query, as the driver receives it (``*_at``: wall clock of its scoring)."""


def _reject(row: BadRow) -> str:
    return json.dumps(row.to_dict(), ensure_ascii=False)


def read_candidate_shard(batch: dict[str, np.ndarray]) -> pa.Table:
    """Parse the candidate-file shards described in ``batch`` into rows to rerank.

    Every non-blank line becomes a row, an unusable one with no documents and its rejects, so
    that the driver sees each shard's full row count (``shard_rows``).
    """
    out: list[dict[str, Any]] = []
    for i in range(len(batch["shard"])):
        part = FileRange(str(batch["path"][i]), int(batch["start"][i]), int(batch["end"][i]),
                         int(batch["first_line"][i]), int(batch["rows"][i]))
        shard = int(batch["shard"][i])
        rows = []
        for seq, (row, bad) in enumerate(iter_candidates(part)):
            rows.append({
                "shard": shard, "seq": seq, "query_id": row.query_id if row else "",
                "query": row.query if row else "", "file": part.path,
                "line": row.line if row else bad[0].line,
                "doc_ids": list(row.doc_ids) if row else [],
                "texts": list(row.texts) if row else [], "rejects": [_reject(b) for b in bad],
                "images": list(row.images) if row else [],
            })
        for r in rows:
            r["shard_rows"] = len(rows)
        out.extend(rows)
    return pa.Table.from_pylist(out, schema=CANDIDATE_ROW_SCHEMA)


class RerankActor:
    """Reranks batches of queries with one model per actor.

    Args:
        model: a backend config as a JSON-ready mapping (``BackendConfig.model_dump()``).
        corpus: ``[ObjectRef]`` of the IR layout's corpus table, or ``None`` when the rows
            carry their texts. Wrapped in a list so Ray passes the reference, not the table.
        top_k: keep the best ``top_k`` documents per query; ``None`` keeps all.
        raw_scores: write raw scores (logits) instead of probabilities.
    """

    def __init__(self, model: dict[str, Any], corpus: list[Any] | None = None,
                 top_k: int | None = None, raw_scores: bool = False) -> None:
        self.reranker = Reranker(parse_backend_config(model))
        self.top_k = top_k
        self.raw_scores = raw_scores
        self.texts: pa.ChunkedArray | None = None
        self.images: pa.ChunkedArray | None = None
        if corpus:
            import ray

            # Zero-copy: the table's buffers stay in the node's shared object store.
            table = ray.get(corpus[0])
            self.texts = table.column("text")
            if "image" in table.column_names:  # a corpus with image documents
                self.images = table.column("image")

    def _texts(self, row: dict[str, Any]) -> list[str]:
        if "texts" in row:
            return list(row["texts"])
        assert self.texts is not None, "IR-layout rows need the corpus table"
        return self.texts.take(pa.array(row["doc_rows"], pa.int64())).to_pylist()

    def _documents(self, row: dict[str, Any]) -> list[Any]:
        """The row's documents: texts, or ``{"text", "image"}`` where a document has an image
        (refused, naming it, when the model reads text only)."""
        texts = self._texts(row)
        images = row.get("images") or []
        if not images and self.images is not None and "doc_rows" in row:
            images = self.images.take(pa.array(row["doc_rows"], pa.int64())).to_pylist()
        if not any(i is not None for i in images):
            return document_texts(texts)
        from reranker.models.vision.inputs import rerank_inputs

        docs = [t if i is None else {"text": t or None, "image": i}
                for t, i in zip(texts, images, strict=True)]
        backend = self.reranker.backend
        return rerank_inputs(row["query"], docs, "text", backend=backend.name,
                             takes_images=bool(getattr(backend, "takes_images", False)))[1]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        out = [{
            "shard": row["shard"], "seq": row["seq"], "shard_rows": row["shard_rows"],
            "query_id": row["query_id"], "doc_ids": [], "scores": [], "input_ranks": [],
            "pairs": 0, "error": "", "rejects": list(row["rejects"]),
            "started_at": None, "finished_at": None,
        } for row in rows]
        todo: list[int] = []
        items: list[ScoreItem] = []
        failures: dict[int, RerankerError] = {}
        for i, row in enumerate(rows):
            if not row["doc_ids"]:
                continue
            try:  # the library's own input checks, as Reranker.rerank makes them
                items.append(ScoreItem(validate_query(row["query"]), self._documents(row)))
                todo.append(i)
            except RerankerError as exc:
                failures[i] = exc
        backend = self.reranker.backend
        started = time.time()
        scored = backend.score_batch(items) if items else []
        finished = time.time()
        outcomes: dict[int, ItemScores] = {**failures, **dict(zip(todo, scored, strict=True))}
        for i in sorted(outcomes):
            row, result, raw = rows[i], out[i], outcomes[i]
            result["started_at"], result["finished_at"] = started, finished
            try:
                if isinstance(raw, RerankerError):
                    raise raw
                scores = check_scores(raw, len(row["doc_ids"]), source=f"backend {backend.name!r}")
                ranked = build_results(
                    scores, None, scores_are_probabilities=backend.scores_are_probabilities,
                    top_k=self.top_k, raw_scores=self.raw_scores, return_documents=False,
                )
            except RerankerError as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
                failed = BadRow(row["file"], row["line"], f"rerank failed: {result['error']}",
                                query_id=row["query_id"])
                result["rejects"].append(_reject(failed))
                continue
            result["pairs"] = len(row["doc_ids"])
            result["doc_ids"] = [row["doc_ids"][r.index] for r in ranked]
            result["scores"] = [r.score for r in ranked]
            result["input_ranks"] = [r.index + 1 for r in ranked]
        return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)
