"""What a scorer replica does with its reservation, its limits and a stuck plugin (no Ray)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from deployments.serve.app import with_limits
from deployments.serve.args import LimitsArgs
from deployments.serve.scorer import LoadedModel, ModelScorer, with_reserved_cpus
from reranker.config import parse_backend_config
from reranker.errors import BackendError, BackendTimeoutError
from reranker.plugins import PluginBackend


def test_threads_default_to_the_replicas_cpu_reservation() -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": "/models/x"})
    assert with_reserved_cpus(cfg, 1.0).threads == 1  # type: ignore[union-attr]
    assert with_reserved_cpus(cfg, 3.0).threads == 3  # type: ignore[union-attr]
    assert with_reserved_cpus(cfg, 0.5).threads == 1  # type: ignore[union-attr]
    explicit = parse_backend_config({"type": "custom", "model_id": "/models/x", "threads": 4})
    assert with_reserved_cpus(explicit, 1.0).threads == 4  # type: ignore[union-attr]
    plugin = parse_backend_config({"type": "plugin", "name": "x"})
    assert with_reserved_cpus(plugin, 1.0) is plugin


def test_the_apps_token_budget_reaches_local_models_that_set_none() -> None:
    limits = LimitsArgs(max_request_tokens=5000)
    cfg = parse_backend_config({"type": "custom", "model_id": "/models/x"})
    assert with_limits(cfg, limits).max_request_tokens == 5000  # type: ignore[union-attr]
    own = parse_backend_config({"type": "custom", "model_id": "/x", "max_request_tokens": 9})
    assert with_limits(own, limits).max_request_tokens == 9  # type: ignore[union-attr]


async def test_a_stuck_plugin_fails_the_replicas_health_check() -> None:
    release = threading.Event()

    def hangs(query: str, documents: list[str]) -> list[float]:
        release.wait(10)
        return [0.0] * len(documents)

    backend = PluginBackend(hangs, name="hangs", timeout_s=0.1, max_threads=1)
    scorer = ModelScorer.__new__(ModelScorer)  # no Serve replica context needed for the check
    scorer._batch_started = False
    scorer._loaded = {"hangs": LoadedModel("hangs", backend)}
    try:
        await scorer.check_health()
        with pytest.raises(BackendTimeoutError):
            await backend.ascore("q", ["d"])
        with pytest.raises(BackendError, match="stuck"):
            await scorer.check_health()
    finally:
        release.set()
    for _ in range(500):
        if not backend.overran_calls:
            break
        await asyncio.sleep(0.01)
    await scorer.check_health()  # the hung call returned: healthy again
