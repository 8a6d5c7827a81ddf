"""A model the Serve multiplex LRU evicts finishes its in-flight runs before it is closed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from deployments.serve.scorer import LoadedModel
from reranker import Reranker
from reranker.backends import ScoreItem
from reranker.testing.textsamples import DOCUMENTS, QUERY


def test_eviction_waits_for_the_last_run_then_closes(bert_model: Path) -> None:
    """Regression: eviction closed the backend under a running request (``cannot schedule new
    futures after shutdown``). Eviction here is what Serve does: ``__del__`` in another thread
    while a batch is inside the model's ONNX runs."""
    backend = Reranker({"type": "custom", "model_id": str(bert_model), "parallel_runs": 2,
                        "threads": 2, "max_tokens_per_batch": 8}).backend
    expected = backend.score(QUERY, DOCUMENTS)
    loaded = LoadedModel("m", backend)
    inside, evicted = threading.Event(), threading.Event()
    closes: list[int] = []
    run = backend.model.run  # type: ignore[attr-defined]

    def run_and_let_eviction_in(ids: list[list[int]], type_ids: list[list[int]]) -> np.ndarray:
        inside.set()
        assert evicted.wait(10)
        return run(ids, type_ids)  # after the eviction: the pool must still take work

    close = backend.close

    def counting_close() -> None:
        closes.append(loaded.runs_in_flight)
        close()

    backend.model.run = run_and_let_eviction_in  # type: ignore[attr-defined]
    backend.close = counting_close  # type: ignore[method-assign]

    async def request() -> list[object]:
        assert loaded.acquire()
        try:
            return await backend.ascore_batch([ScoreItem(QUERY, DOCUMENTS)])
        finally:
            loaded.release()

    def evict() -> None:
        assert inside.wait(10)
        loaded.__del__()  # what Serve's LRU calls, from an executor thread
        assert closes == [] and not loaded.closed  # the run is still going
        evicted.set()

    evictor = threading.Thread(target=evict)
    evictor.start()
    out = asyncio.run(request())
    evictor.join()
    np.testing.assert_allclose(out[0], expected, atol=1e-6)  # type: ignore[arg-type]
    assert closes == [0] and loaded.closed  # closed once, by the last run out
    assert not loaded.acquire()  # an evicted model takes no new runs: the scorer reloads
    loaded.close()
    assert closes == [0]


def test_idle_model_closes_at_once_and_only_once(bert_model: Path) -> None:
    backend = Reranker({"type": "custom", "model_id": str(bert_model)}).backend
    loaded = LoadedModel("m", backend)
    assert loaded.acquire()
    loaded.release()
    loaded.close()
    assert loaded.closed and loaded.runs_in_flight == 0
    loaded.close()
    loaded.__del__()
