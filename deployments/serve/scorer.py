"""The variant deployment: one replica hosts the models of one backend variant.

The same implementation is deployed four times (``preset``, ``custom``, ``llm``, ``plugin``),
each with its own replica options. Inside a replica:

- models are loaded on demand with ``@serve.multiplexed``, keyed by the configured model name,
  at most ``max_models_per_replica`` at a time (least recently used unloaded first; an evicted
  model finishes the runs in flight on it before it is closed, see :class:`LoadedModel`);
- the replica's first model(s) are loaded and warmed up (one tiny rerank) in ``__init__``, so a
  replica reports ready only once it can score;
- concurrent requests are merged by ``@serve.batch`` (Ray splits batches by multiplexed model
  id) and handed to the backend's batch entry point (``score_batch``): a local ONNX model runs
  all pairs of a batch through one length-grouped pass, other backends score the requests
  concurrently. Batch size and wait are set from ``user_config``.

A call returns raw scores, the tokens scored and best-window spans (``None`` when the backend
does not say), plus replica and batch details, or ``{"error": exc}`` with the library
error itself (errors pickle with their fields). Ranking happens in the ingress, once, after
merging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from deployments.serve import tracing
from deployments.serve.args import BatchingArgs
from deployments.serve.metrics import ScorerMetrics
from reranker.backends import RerankerBackend, ScoreItem, build_backend
from reranker.backends.base import search_units_of, spans_of, tokens_of
from reranker.config import BackendConfig, LocalModelConfig
from reranker.errors import (
    BackendError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    RerankerError,
)
from reranker.types import Truncation

__all__ = ["ModelScorer", "LoadedModel", "scorer_class"]

logger = logging.getLogger("ray.serve")

_ACQUIRE_ATTEMPTS = 3
_WARMUP_QUERY = "warm up"
_WARMUP_DOCS = ["warm up"]


class LoadedModel:
    """A built backend in a replica, counting the runs in flight on it.

    Serve's multiplex LRU calls ``__del__`` when it evicts the model, possibly while a request
    is still running it; closing the backend then would break that run (``cannot schedule new
    futures after shutdown``). So eviction only marks the model, and the last run in flight
    closes it. A run counted in with :meth:`acquire` must end with :meth:`release`.
    """

    def __init__(self, name: str, backend: RerankerBackend) -> None:
        self.name = name
        self.backend = backend
        self._lock = threading.Lock()  # Serve runs __del__ in an executor thread
        self._runs = 0
        self._evicted = False
        self._closed = False

    @property
    def runs_in_flight(self) -> int:
        return self._runs

    @property
    def closed(self) -> bool:
        return self._closed

    def acquire(self) -> bool:
        """Count a run in; ``False`` once the model was evicted (load it again)."""
        with self._lock:
            if self._evicted:
                return False
            self._runs += 1
            return True

    def release(self) -> None:
        """Count a run out; the last one out of an evicted model closes it."""
        with self._lock:
            self._runs -= 1
            close_now = self._evicted and self._runs == 0 and not self._closed
            self._closed = self._closed or close_now
        if close_now:
            self.backend.close()

    def close(self) -> None:
        """Evict: close the backend now if no run is in flight, else after the last one."""
        with self._lock:
            self._evicted = True
            close_now = self._runs == 0 and not self._closed
            self._closed = self._closed or close_now
        if close_now:
            self.backend.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # a finalizer must not raise
            logger.exception("closing model %r failed", self.name)


@dataclass(frozen=True)
class _Pending:
    model: str
    item: ScoreItem
    arrived: float
    trace: dict[str, str] | None = None


class ModelScorer:
    """Scores (query, documents) for the models of one variant.

    Args:
        variant: ``preset``, ``custom``, ``llm`` or ``plugin`` (for messages and metrics).
        models: the configured models of this variant, by name.
        warm_models: names loaded and warmed up before the replica reports ready.
        tracing_endpoint: where this replica exports spans (``deployments.serve.tracing``).
        tracing_service_name: their ``service.name``.
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self, variant: str, models: Mapping[str, BackendConfig], warm_models: Sequence[str] = (),
        tracing_endpoint: str | None = None, tracing_service_name: str = "reranker",
    ) -> None:
        tracing.configure(tracing_endpoint, tracing_service_name)
        self.variant = variant
        self._configs = dict(models)
        replica = serve.get_replica_context().replica_id
        self.replica_id = replica.unique_id
        self.replica_actor_name = replica.to_full_id_str()
        self._metrics = ScorerMetrics()
        self._batching = BatchingArgs()
        self._batch_started = False
        # What check_health asks: the models this replica loaded (closed ones are skipped).
        self._loaded: dict[str, LoadedModel] = {}
        for name in warm_models:
            await self.get_model(name)

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        """Apply ``user_config`` (a :class:`BatchingArgs` mapping) without a redeploy."""
        cfg = BatchingArgs.model_validate(dict(user_config or {}))
        # @serve.batch adds these setters; its stubs do not declare them.
        self._score_batch.set_max_batch_size(cfg.max_batch_size)  # type: ignore[attr-defined]
        self._score_batch.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            cfg.batch_wait_timeout_s)
        self._batching = cfg

    async def get_model(self, name: str) -> LoadedModel:
        """Load a model (overridden with ``@serve.multiplexed`` by :func:`scorer_class`)."""
        return await self._load(name)

    async def _load(self, name: str) -> LoadedModel:
        cfg = self._configs.get(name)
        if cfg is None:
            raise ModelNotFoundError(
                f"model {name!r} is not hosted by the {self.variant} deployment "
                f"(hosted: {', '.join(self._configs) or 'none'})"
            )
        started = time.monotonic()
        try:
            backend = await asyncio.to_thread(build_backend, with_reserved_cpus(cfg))
        except (ModelNotFoundError, ModelLoadError) as exc:
            # The name is configured: files that cannot be found or used are this server's
            # problem (500 model_load_error), not a model name the client got wrong (404).
            raise ModelLoadError(f"model {name!r} cannot be loaded: {exc}") from exc
        # Provider models are not warmed up: that would spend quota on every replica start.
        if cfg.type != "llm":
            try:
                await backend.ascore(_WARMUP_QUERY, _WARMUP_DOCS)
            except BaseException:
                backend.close()
                raise
        tracing.instrument_backend(backend)
        logger.info("loaded model %r (%s) in %.2f s", name, backend.name,
                    time.monotonic() - started)
        loaded = LoadedModel(name, backend)
        self._loaded[name] = loaded
        return loaded

    async def score(
        self, query: str, documents: list[str], truncation: Truncation | None = None,
        instruction: str | None = None, trace: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Raw scores for one chunk of documents, for the request's multiplexed model.

        A backend that takes no ``instruction`` answers with an ``InvalidInputError`` naming it.
        ``trace`` is the caller's W3C trace context (sent only while tracing is on).
        """
        model = serve.get_multiplexed_model_id()
        if not model:
            return {"error": ModelNotFoundError("no model id on the request")}
        refused = await self._refuse_images(model, documents, truncation)
        if refused is not None:
            return {"error": refused}
        cancel = threading.Event()
        item = ScoreItem(query, documents, truncation, instruction, cancel)
        pending = _Pending(model, item, time.monotonic(), trace)
        self._batch_started = True
        try:
            return await self._score_batch(pending)
        except asyncio.CancelledError:
            # The caller timed out (504) or its client went away: the batch pass skips this
            # item's remaining ONNX runs; the other requests in the batch go on.
            cancel.set()
            raise

    async def _refuse_images(self, model: str, documents: list[str],
                             truncation: Truncation | None) -> RerankerError | None:
        """The error for image documents sent to a text-only model (only looked at when the
        chunk holds an image)."""
        from reranker.models.vision.inputs import has_image

        found = next((i for i, d in enumerate(documents) if has_image(d)), None)
        if found is None:
            return None
        try:
            backend = (await self.get_model(model)).backend
        except RerankerError as exc:
            return exc
        if getattr(backend, "takes_images", False):
            return None
        where = f"documents[{found + (truncation.index_offset if truncation else 0)}].image"
        return InvalidInputError(
            f"{where}: model {model!r} reads text only; rank images with a vision reranker "
            "(preset 'visual', or a Qwen3-VL-Reranker custom model)", param=where)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _score_batch(self, batch: list[_Pending]) -> list[dict[str, Any]]:
        # Ray splits batches by multiplexed model id; grouping again costs nothing and keeps
        # this correct if a batch ever mixes models.
        groups: dict[str, list[int]] = {}
        for i, pending in enumerate(batch):
            groups.setdefault(pending.model, []).append(i)
        out: list[dict[str, Any]] = [{} for _ in batch]
        for model, idxs in groups.items():
            for i, reply in zip(idxs, await self._score_group(model, [batch[i] for i in idxs]),
                                strict=True):
                out[i] = reply
        return out

    async def _acquire(self, model: str) -> LoadedModel:
        # Between the multiplex cache handing a model out and the run counting itself in, the
        # LRU may evict it (another request's load): then it is loaded again.
        for _ in range(_ACQUIRE_ATTEMPTS):
            loaded = await self.get_model(model)
            if loaded.acquire():
                return loaded
        raise BackendError(f"model {model!r} was evicted {_ACQUIRE_ATTEMPTS} times while "
                           "being loaded; raise max_models_per_replica")

    async def _score_group(self, model: str, group: list[_Pending]) -> list[dict[str, Any]]:
        try:
            loaded = await self._acquire(model)
        except RerankerError as exc:
            return [{"error": exc}] * len(group)
        started = time.monotonic()
        try:
            results = await _traced_batch(model, loaded.backend, group)
        finally:
            loaded.release()
        elapsed = time.monotonic() - started
        pairs = sum(len(p.item.documents) for p in group)
        self._metrics.record_batch(
            model, len(group), pairs, [started - p.arrived for p in group], elapsed
        )
        batch_id = uuid.uuid4().hex[:12]
        replies: list[dict[str, Any]] = []
        for pending, result in zip(group, results, strict=True):
            if isinstance(result, RerankerError):
                replies.append({"error": result})
                continue
            replies.append({
                "scores": np.asarray(result),
                # What the backend says the item cost and where each document matched best
                # (None when it does not say): read here, as the extras do not pickle.
                "tokens": tokens_of(result),
                "search_units": search_units_of(result),
                "spans": spans_of(result),
                "scores_are_probabilities": loaded.backend.scores_are_probabilities,
                "backend": loaded.backend.name,
                "replica": self.replica_actor_name,
                "batch_id": batch_id,
                "batch_size": len(group),
                "batch_pairs": pairs,
                "max_batch_size": self._batching.max_batch_size,
                "queue_wait_s": started - pending.arrived,
                "inference_s": elapsed,
                "threads": getattr(loaded.backend, "threads", None),
            })
        return replies

    async def ready(self) -> dict[str, Any]:
        """Answered once ``__init__`` (and so the warm-up) has finished."""
        return {
            "variant": self.variant,
            "replica": self.replica_actor_name,
            "max_batch_size": self._batching.max_batch_size,
            "batch_wait_timeout_s": self._batching.batch_wait_timeout_s,
        }

    async def check_health(self) -> None:
        """Serve's periodic health check: fail if the batching loop has died or a loaded
        backend reports itself stuck.

        A dead loop would leave every later request waiting forever; failing the check makes
        Serve replace the replica. The probe is Ray's (private) batching debug hook, skipped
        where a Ray version lacks it.
        """
        probe = getattr(self._score_batch, "_is_batching_task_alive", None)
        if self._batch_started and callable(probe) and not await probe():
            raise RuntimeError("the batching task of this replica is not running")
        # A backend that can tell it is stuck (a plugin whose threads all hold hung calls)
        # fails the check, so Serve replaces the replica instead of queueing behind it.
        for loaded in list(self._loaded.values()):
            check = getattr(loaded.backend, "check_health", None)
            if not loaded.closed and callable(check):
                check()


def reserved_cpus() -> float | None:
    """The CPUs Ray reserved for this replica; ``None`` outside Ray or when none are."""
    import ray

    if not ray.is_initialized():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return float(cpus) if cpus else None


def with_reserved_cpus(cfg: BackendConfig, cpus: float | None = None) -> BackendConfig:
    """``cfg`` with a local model's ``threads`` defaulted to the replica's CPU reservation.

    ONNX Runtime would otherwise size itself (threads and parallel runs) from every core of
    the host, so a 1-CPU replica ran one run per host core and replicas sharing a node
    oversubscribed it. An explicit ``threads`` wins.
    """
    if not isinstance(cfg, LocalModelConfig) or cfg.threads is not None:
        return cfg
    cpus = reserved_cpus() if cpus is None else cpus
    if cpus is None:
        return cfg
    return cfg.model_copy(update={"threads": max(1, int(cpus))})


async def _traced_batch(model: str, backend: RerankerBackend, group: list[_Pending]) -> Any:
    # One batch serves requests of several traces: it is the child of the first and links
    # the others.
    with tracing.span(
        "scorer.batch", parent=group[0].trace, links=[p.trace for p in group[1:]],
        attributes={"reranker.model": model, "reranker.batch.requests": len(group),
                    "reranker.batch.pairs": sum(len(p.item.documents) for p in group)},
    ):
        return await backend.ascore_batch([p.item for p in group])


def scorer_class(max_models_per_replica: int) -> type[ModelScorer]:
    """A :class:`ModelScorer` whose model loader is multiplexed with the given cap."""

    class MultiplexedModelScorer(ModelScorer):
        @serve.multiplexed(max_num_models_per_replica=max_models_per_replica)
        async def get_model(self, name: str) -> LoadedModel:
            return await self._load(name)

    MultiplexedModelScorer.__qualname__ = f"MultiplexedModelScorer[{max_models_per_replica}]"
    return MultiplexedModelScorer
