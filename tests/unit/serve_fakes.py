"""Fake Ray Serve deployment handles, so the HTTP layer is tested in process with no Ray.

A :class:`FakeScorer` stands in for one variant's ``DeploymentHandle``: ``options(
multiplexed_model_id=...)`` returns a view bound to a model, and ``score.remote(...)`` /
``ready.remote()`` return awaitables with ``cancel()``, as Serve's ``DeploymentResponse`` does.
What a call does is a plain function of the call, so a test can make any chunk slow, fail, or
lose its replica.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from deployments.serve.args import LimitsArgs
from deployments.serve.service import IngressSettings, RerankService
from reranker.config import parse_backend_config
from reranker.types import Truncation

POISON = "poison"


def overlap_scores(query: str, texts: list[str]) -> list[float]:
    """A probability per text: the share of the query's words it contains."""
    words = set(query.lower().split())
    return [len(words & set(t.lower().split())) / max(len(words), 1) for t in texts]


@dataclass
class ScoreCall:
    model: str | None
    query: str
    texts: list[str]
    truncation: Truncation | None
    cancelled: bool = False
    trace: dict[str, str] | None = None
    instruction: str | None = None


Behaviour = Callable[[ScoreCall, int], Awaitable[list[float]]]


async def score_by_overlap(call: ScoreCall, attempt: int) -> list[float]:
    """The default behaviour: overlap scores; a text containing POISON fails its chunk."""
    from reranker.errors import BackendError

    if any(POISON in t for t in call.texts):
        raise BackendError(f"the plugin cannot score a {POISON}ed document")
    return overlap_scores(call.query, call.texts)


class FakeResponse:
    """Awaitable like Serve's ``DeploymentResponse``, with ``cancel()``."""

    def __init__(self, make: Callable[[], Awaitable[Any]], on_cancel: Callable[[], None]) -> None:
        self._make = make
        self._on_cancel = on_cancel

    def __await__(self) -> Any:
        return self._make().__await__()

    def cancel(self) -> None:
        self._on_cancel()


class _Method:
    def __init__(self, call: Callable[..., FakeResponse]) -> None:
        self.remote = call


@dataclass
class _State:
    behaviour: Behaviour
    probabilities: bool
    ready: Callable[[], Awaitable[None]] | None
    extras: Callable[[ScoreCall], dict[str, Any]] | None = None
    calls: list[ScoreCall] = field(default_factory=list)
    options_seen: list[str | None] = field(default_factory=list)


class FakeScorer:
    """One variant's deployment handle (shared state across its ``options`` views)."""

    def __init__(self, behaviour: Behaviour = score_by_overlap, *, probabilities: bool = True,
                 ready: Callable[[], Awaitable[None]] | None = None,
                 extras: Callable[[ScoreCall], dict[str, Any]] | None = None,
                 _state: _State | None = None, _model: str | None = None) -> None:
        # extras: reply fields a call adds, as a replica's backend reports them ("tokens",
        # "spans").
        self._state = _state or _State(behaviour, probabilities, ready, extras)
        self._model = _model

    @property
    def calls(self) -> list[ScoreCall]:
        return self._state.calls

    @property
    def options_seen(self) -> list[str | None]:
        return self._state.options_seen

    def options(self, *, multiplexed_model_id: str) -> FakeScorer:
        self._state.options_seen.append(multiplexed_model_id)
        return FakeScorer(_state=self._state, _model=multiplexed_model_id)

    @property
    def score(self) -> _Method:
        return _Method(self._score)

    @property
    def ready(self) -> _Method:
        return _Method(self._ready)

    def _score(self, query: str, texts: list[str], truncation: Truncation | None,
               instruction: str | None = None, trace: dict[str, str] | None = None
               ) -> FakeResponse:
        state = self._state
        call = ScoreCall(self._model, query, list(texts), truncation, trace=trace,
                         instruction=instruction)
        attempt = sum(1 for c in state.calls if c.texts == call.texts and c.query == query)
        state.calls.append(call)

        async def run() -> dict[str, Any]:
            scores = await state.behaviour(call, attempt)
            extra = state.extras(call) if state.extras is not None else {}
            return {"scores": scores, "scores_are_probabilities": state.probabilities,
                    "replica": "fake-replica", **extra}

        def cancel() -> None:
            call.cancelled = True

        return FakeResponse(run, cancel)

    def _ready(self) -> FakeResponse:
        async def run() -> None:
            if self._state.ready is not None:
                await self._state.ready()

        return FakeResponse(run, lambda: None)


def settings(
    models: Mapping[str, Any] | None = None,
    *,
    default_model: str | None = None,
    chunk_size: int = 4,
    request_timeout_s: float = 5.0,
    limits: Mapping[str, Any] | None = None,
    api_keys: tuple[str, ...] = (),
    debug: bool = False,
    tei_auto_truncate: bool = True,
    fallbacks: Mapping[str, tuple[str, ...]] | None = None,
    max_chunks_in_flight: int = 8,
) -> IngressSettings:
    """Ingress settings for a test; models default to one plugin and one custom model."""
    configs = {
        name: parse_backend_config(cfg)
        for name, cfg in (models or {
            "words": {"type": "plugin", "name": "tests.unit.serve_fakes:overlap_scores"},
            "local": {"type": "custom", "model_id": "/models/tiny"},
        }).items()
    }
    return IngressSettings(
        models=configs,
        default_model=default_model or next(iter(configs)),
        chunk_size=chunk_size,
        request_timeout_s=request_timeout_s,
        limits=LimitsArgs(**dict(limits or {})),
        api_keys=tuple(SecretStr(k) for k in api_keys),
        debug=debug,
        tei_auto_truncate=tei_auto_truncate,
        fallbacks=dict(fallbacks or {}),
        max_chunks_in_flight=max_chunks_in_flight,
    )


def service(cfg: IngressSettings | None = None, **scorers: FakeScorer) -> RerankService:
    """A service over fake handles; one FakeScorer per variant that has models by default."""
    cfg = cfg or settings()
    variants = {c.type for c in cfg.models.values()}
    handles = {v: scorers.get(v) or FakeScorer() for v in variants}
    return RerankService(cfg, handles)


async def never(call: ScoreCall, attempt: int) -> list[float]:
    """A call that only ends when it is cancelled."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@contextmanager
def serve_on_loopback(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, for real clients; yields its URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
