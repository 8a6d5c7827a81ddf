"""The Ray Data rerank actor, called directly: all queries of a batch in one batch call, each
ranked exactly as ``Reranker.rerank`` ranks it; a failing query becomes a reject alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from deployments.batch.plan import CANDIDATE_ROW_SCHEMA
from deployments.batch.worker import RerankActor
from reranker import Reranker
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY


def _row(seq: int, query: str, texts: list[str]) -> dict[str, Any]:
    return {"shard": 0, "seq": seq, "shard_rows": 4, "query_id": f"q{seq}", "query": query,
            "file": "c.jsonl", "line": seq + 1, "doc_ids": [f"d{i}" for i in range(len(texts))],
            "rejects": [], "texts": texts}


def test_actor_scores_every_query_of_a_batch_in_one_pass(bert_model: Path) -> None:
    model = {"type": "custom", "model_id": str(bert_model)}
    actor = RerankActor(model, top_k=3)
    runs: list[int] = []
    inner = actor.reranker.backend.model.run  # type: ignore[attr-defined]

    def counting(ids: list[list[int]], type_ids: list[list[int]]) -> np.ndarray:
        runs.append(len(ids))
        return inner(ids, type_ids)

    actor.reranker.backend.model.run = counting  # type: ignore[attr-defined]
    rows = [_row(0, QUERY, DOCUMENTS[:4]), _row(1, "   ", DOCUMENTS[:2]),
            _row(2, "another query", [LONG_DOCUMENT, *DOCUMENTS[4:6]]), _row(3, QUERY, [])]
    out = actor(pa.Table.from_pylist(rows, schema=CANDIDATE_ROW_SCHEMA)).to_pylist()
    assert runs == [4 + 3]  # both valid queries' pairs in one ONNX call
    with Reranker(model) as rr:
        for got, row in zip(out, rows, strict=True):
            if row["seq"] in (0, 2):
                want = rr.rerank(row["query"], row["texts"], top_k=3, return_documents=False)
                assert got["doc_ids"] == [row["doc_ids"][r.index] for r in want]
                assert got["scores"] == [r.score for r in want]
                assert got["input_ranks"] == [r.index + 1 for r in want]
                assert got["pairs"] == len(row["texts"]) and got["error"] == ""
    assert out[1]["error"].startswith("InvalidInputError") and out[1]["doc_ids"] == []
    assert "rerank failed" in out[1]["rejects"][0]
    assert out[3]["error"] == "" and out[3]["pairs"] == 0 and out[3]["rejects"] == []
