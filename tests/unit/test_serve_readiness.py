"""The ingress's readiness decision, with stand-in handles (the Ray paths are in
tests/integration/test_serve_resilience.py and test_multinode.py).

Regression: a restarted ingress (cold readiness cache) whose probe queued behind busy scorers
answered 503 "still starting" while they were healthy; it now asks Serve's controller.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.serve import service as service_module
from deployments.serve.args import LimitsArgs
from deployments.serve.errors import ApiError
from deployments.serve.service import IngressSettings, RerankService
from reranker.config import parse_backend_config


class _Response:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.cancelled = False

    def __await__(self) -> Any:
        if not self.answer:  # queued behind busy replicas: no answer within the probe
            yield from asyncio.sleep(3600).__await__()
        return {"ready": True}

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[_Response] = []

    def remote(self, *args: Any) -> _Response:
        self.calls.append(_Response(self.answer))
        return self.calls[-1]


class _Handle:
    app_name = "reranker"
    deployment_name = "PluginScorer"

    def __init__(self, answers: bool) -> None:
        self.ready = _Method(answers)


def _service(handle: _Handle) -> RerankService:
    settings = IngressSettings(models={"m": parse_backend_config("plugin:pkg.mod:fn")},
                               default_model="m", chunk_size=8, request_timeout_s=5.0,
                               limits=LimitsArgs())
    return RerankService(settings, {"plugin": handle})


async def test_cold_probe_without_answer_asks_the_controller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str]] = []

    def running(app: str, deployment: str) -> int:
        asked.append((app, deployment))
        return 2

    monkeypatch.setattr(service_module, "_running_replicas", running)
    handle = _Handle(answers=False)
    svc = _service(handle)
    assert await svc.variant_ready("plugin", timeout_s=0.05) is True
    assert asked == [("reranker", "PluginScorer")] and handle.ready.calls[0].cancelled
    # Cached afterwards: no second probe, no second question.
    assert await svc.variant_ready("plugin", timeout_s=0.05) is True
    assert len(handle.ready.calls) == 1 and len(asked) == 1


async def test_still_starting_is_still_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "_running_replicas", lambda app, dep: 0)
    svc = _service(_Handle(answers=False))
    assert await svc.variant_ready("plugin", timeout_s=0.05) is False
    with pytest.raises(ApiError) as info:
        await svc.rerank(model=None, query="q", texts=["a"], documents=None, top_n=None,
                         return_documents=False)
    assert info.value.status == 503 and info.value.retry_after_s


async def test_controller_unreachable_keeps_refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(app: str, dep: str) -> int:
        raise ConnectionError("no controller")

    monkeypatch.setattr(service_module, "_running_replicas", broken)
    assert await _service(_Handle(answers=False)).variant_ready("plugin", timeout_s=0.05) is False


async def test_answered_probe_needs_no_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(app: str, dep: str) -> int:
        raise AssertionError("the controller was asked although the probe answered")

    monkeypatch.setattr(service_module, "_running_replicas", unexpected)
    assert await _service(_Handle(answers=True)).variant_ready("plugin", timeout_s=1.0) is True
