"""What the ingress does with a validated request: route, check limits, fan out, merge, rank.

:class:`RerankService` holds no HTTP types: it takes texts and options and returns ranked
:class:`~reranker.types.RerankResult` objects, so the HTTP layer (``deployments.serve.http_api``)
only translates shapes. Candidate sets larger than ``chunk_size`` are split into chunks sent
concurrently through the variant's deployment handle (each call may land on another replica),
at most ``max_chunks_in_flight`` of one request at a time; chunk scores are concatenated back
into input order and ranked once, with ``top_n`` applied after the merge. One failed chunk
fails the request; the others are cancelled, and the model's fallback chain, if the app
configured one, gets the request (``deployments.serve.fallback``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, SecretStr

from deployments.serve import tracing
from deployments.serve.args import ImagesArgs, LimitsArgs
from deployments.serve.errors import ApiError, to_api_error
from deployments.serve.fallback import (
    FIRST_STAGE,
    FallbackHop,
    FallbackReport,
    first_stage_results,
    run_chain,
)
from deployments.serve.keys import key_index
from reranker.backends.base import check_instruction, check_truncation_field
from reranker.concurrency import gather_or_cancel
from reranker.config import BackendConfig, CustomConfig, PresetConfig
from reranker.errors import InvalidInputError, ModelNotFoundError
from reranker.registry import truncation_fields_of
from reranker.request_tokens import RequestTokenCounter, request_token_counter, token_bound
from reranker.scoring import build_results, check_min_score, check_scores
from reranker.types import (
    Document,
    RerankResult,
    Truncation,
    Usage,
    document_texts,
    validate_query,
)

__all__ = ["MAX_DOCUMENT_DEPTH", "IngressSettings", "RerankOutcome", "RerankService",
           "describe_backend", "texts_for"]

logger = logging.getLogger("ray.serve")

_READY_PROBE_S = 2.0
#: Levels of objects and lists a document object may nest (the object itself is level 1).
MAX_DOCUMENT_DEPTH = 64
# Request fields of the HTTP dialects -> the Truncation field each sets.
_TRUNCATION_FIELD_OF = {
    "max_tokens_per_doc": "max_document_tokens",
    "truncation_direction": "side",
    "truncate": "allow",
    "max_chunks_per_doc": "max_chunks",
}


class IngressSettings(BaseModel):
    """What the ingress replica is configured with (built by ``deployments.serve.app``)."""

    model_config = ConfigDict(frozen=True)

    models: dict[str, BackendConfig]
    default_model: str
    chunk_size: int
    request_timeout_s: float
    limits: LimitsArgs
    api_keys: tuple[SecretStr, ...] = ()
    debug: bool = False
    tei_auto_truncate: bool = True
    # Model -> the models that answer, in order, when it rate-limits, fails or times out.
    fallbacks: dict[str, tuple[str, ...]] = {}
    # Where this replica exports spans (deployments.serve.tracing); None: tracing off.
    tracing_endpoint: str | None = None
    tracing_service_name: str = "reranker"
    max_chunks_in_flight: int = 8
    images: ImagesArgs = ImagesArgs()

    def key_accepted(self, presented: str) -> bool:
        """Constant-time comparison against every configured key."""
        return self.key_label(presented) is not None

    def key_label(self, presented: str) -> str | None:
        """The metric label of an accepted key, ``key<i>`` after its position among the
        configured keys (never the key itself, nor a hash a weak key could be guessed from);
        ``None`` if no key matches. Constant-time against every key."""
        index = key_index(presented, self.api_keys)
        return None if index is None else f"key{index}"


def describe_backend(cfg: BackendConfig) -> str:
    """A short public description of what serves a model (the config's display name)."""
    return cfg.display_name


def texts_for(documents: Sequence[Document], rank_fields: Sequence[str] | None = None, *,
              images: ImagesArgs | None = None) -> list[str]:
    """The text scored for each document.

    Strings are used as they are. Objects use ``text``, or with ``rank_fields`` the named
    fields present in the object, as ``field: value`` lines in the order given (Cohere v1).
    An object nested deeper than ``MAX_DOCUMENT_DEPTH`` levels is a 400 naming it: a response
    attaching it could not be serialized. An object with an ``image`` (URL, data URI or base64;
    Jina m0's shape) becomes ``{"text": ..., "image": bytes}`` for a vision reranker (text-only
    models refuse it): :func:`reranker.models.vision.remote.http_documents`, with ``images``'
    limits.
    """
    for i, doc in enumerate(documents):
        if not isinstance(doc, str) and _depth_over(doc, MAX_DOCUMENT_DEPTH):
            raise InvalidInputError(
                f"documents[{i}] is nested deeper than {MAX_DOCUMENT_DEPTH} levels",
                param=f"documents[{i}]",
            )
    if any(isinstance(d, Mapping) and d.get("image") is not None for d in documents):
        from reranker.models.vision.images import ImageLimits
        from reranker.models.vision.remote import RemoteImages, http_documents

        cfg = images or ImagesArgs()
        remote = RemoteImages(cfg.remote.enabled, tuple(cfg.remote.allowed_hosts),
                              cfg.remote.timeout_s,
                              ImageLimits(cfg.max_image_pixels, cfg.max_image_bytes))
        return http_documents(documents, remote, lambda i, d: _text_of(i, d, rank_fields))
    if not rank_fields:
        return document_texts(documents, "text")
    return [_text_of(i, doc, rank_fields) for i, doc in enumerate(documents)]


def _text_of(i: int, doc: Document, rank_fields: Sequence[str] | None) -> str:
    if isinstance(doc, str) or not rank_fields:
        try:
            return document_texts([doc], "text")[0]
        except InvalidInputError as exc:  # named by its index in the request
            param = (exc.param or "documents").replace("documents[0]", f"documents[{i}]")
            raise InvalidInputError(str(exc).replace("documents[0]", f"documents[{i}]"),
                                    param=param) from None
    lines = [f"{f}: {doc[f]}" for f in rank_fields if f in doc and doc[f] is not None]
    if not lines:
        raise InvalidInputError(
            f"documents[{i}] has none of the rank_fields {list(rank_fields)}",
            param=f"documents[{i}]",
        )
    return "\n".join(lines)


def _depth_over(value: object, limit: int) -> bool:
    # Iterative: the point is values too deep for recursive code.
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else (
            item if isinstance(item, list) else ())
        for child in children:
            if isinstance(child, (Mapping, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


@dataclass
class RerankOutcome:
    """A ranked answer and how it was computed."""

    model: str
    results: list[RerankResult]
    chunks: list[dict[str, Any]] = field(default_factory=list)
    fallback: FallbackReport | None = None
    usage: Usage | None = None


class RerankService:
    """Routing, limits, fan-out and merging for the ingress.

    Args:
        settings: models, limits, chunk size and keys.
        scorers: a deployment handle per variant that has models.
        on_fallback: told of every fallback hop (the failed model's hop, the next model).
    """

    def __init__(self, settings: IngressSettings, scorers: Mapping[str, Any],
                 on_fallback: Callable[[FallbackHop, str], None] | None = None) -> None:
        self.settings = settings
        self.scorers = dict(scorers)
        self.on_fallback = on_fallback
        self._ready: set[str] = set()
        self._model_handles: dict[str, Any] = {}
        self._token_counters: dict[str, asyncio.Task[RequestTokenCounter | None]] = {}

    # -- routing and limits -----------------------------------------------------------------

    def resolve(self, model: str | None) -> tuple[str, str]:
        """The model name and its variant; 404 for names that are not configured."""
        name = model if model is not None and model.strip() else self.settings.default_model
        cfg = self.settings.models.get(name)
        if cfg is None:
            known = ", ".join(self.settings.models)
            raise ModelNotFoundError(f"unknown model {name!r}; configured models: {known}")
        return name, cfg.type

    def runs_locally(self, name: str) -> bool:
        """Whether everything that may answer for ``name`` (it and its fallbacks) runs on
        this cluster's CPUs, so scoring again costs nothing but time. API providers are
        billed per call and plugins may call anything: neither is replayed."""
        models = self.settings.models
        chain = [name, *(m for m in self.settings.fallbacks.get(name, ()) if m != FIRST_STAGE)]
        return all(models[m].runs_locally for m in chain)

    def check_resend(self, model: str | None) -> None:
        """503 for a request the proxy resent (its ingress died before answering) when its
        model does not run locally: the dead replica may have called the provider already.
        Unknown models pass (the route answers their 404)."""
        try:
            name = self.resolve(model)[0]
        except ModelNotFoundError:
            return
        if not self.runs_locally(name):
            raise ApiError(
                503, "service_unavailable_error",
                f"the replica handling this request stopped before answering, and model "
                f"{name!r} is not run again on a resend: it calls a paid API (or a plugin, or "
                "falls back to one), which may have been billed already; send the request "
                "again if a second call is acceptable")

    def cuts_locally(self, model: str | None) -> bool:
        """Whether ``model`` is a local ONNX model, which cuts texts the way a request says."""
        return self.settings.models[self.resolve(model)[0]].runs_locally

    def check_cut_supported(self, model: str | None, param: str) -> None:
        """400 unless ``model`` can apply the request field ``param``.

        What a model applies is what its backend declares (``reranker.registry``): local ONNX
        models every truncation field, Cohere ``max_tokens_per_doc``, other providers and
        plugins nothing (they cut documents themselves), so the fields are refused rather than
        ignored.
        """
        name = self.resolve(model)[0]
        cfg = self.settings.models[name]
        check_truncation_field(
            f"model {name!r} (served by {cfg.display_name})", truncation_fields_of(cfg),
            _TRUNCATION_FIELD_OF[param], param=param,
        )

    def check_instruction(self, name: str, instruction: str | None) -> str | None:
        """400 (naming ``instruction``) for a blank one or one given to a model whose config
        says it takes none; 413 past the query's character limit.

        A ``custom`` repo is known to be a decoder reranker only once loaded
        (``takes_instruction`` is ``None``): its replica's backend makes the same check and
        the error comes back from there.
        """
        if instruction is None:
            return None
        cfg = self.settings.models[name]
        checked = check_instruction(f"model {name!r} (served by {cfg.display_name})",
                                    cfg.takes_instruction is not False, instruction)
        limit = self.settings.limits.max_query_chars
        if checked is not None and len(checked) > limit:
            raise ApiError(413, "request_too_large",
                           f"instruction has {len(checked)} characters; the limit is {limit}",
                           "instruction")
        return checked

    def check_request(self, query: object, n_documents: int) -> str:
        """Validate the query and the document count against the limits."""
        q = validate_query(query)
        limits = self.settings.limits
        if len(q) > limits.max_query_chars:
            raise ApiError(413, "request_too_large",
                           f"query has {len(q)} characters; the limit is {limits.max_query_chars}",
                           "query")
        if n_documents == 0:
            raise InvalidInputError("documents must not be empty", param="documents")
        if n_documents > limits.max_documents:
            raise ApiError(413, "request_too_large",
                           f"{n_documents} documents; the limit is {limits.max_documents}",
                           "documents")
        return q

    def check_texts(self, texts: Sequence[str], param: str = "documents") -> None:
        limit = self.settings.limits.max_document_chars
        for i, entry in enumerate(texts):
            text = entry if isinstance(entry, str) else (entry.get("text") or "")
            if len(text) > limit:
                raise ApiError(413, "request_too_large",
                               f"{param}[{i}] has {len(text)} characters; the limit is {limit}",
                               f"{param}[{i}]")

    async def check_request_tokens(self, name: str, query: str, texts: Sequence[str],
                                   truncation: Truncation | None, instruction: str | None) -> None:
        """413 when the whole request runs more tokens on local model ``name`` than its budget
        (the model's ``max_request_tokens``, else ``limits.max_request_tokens``).

        Counted once here, over every chunk the request will be split into
        (:mod:`reranker.request_tokens`): nothing is tokenized while documents x windows x
        window stays within the budget, and counting stops once it is passed.
        """
        cfg = self.settings.models[name]
        if not isinstance(cfg, (PresetConfig, CustomConfig)):
            return
        limit = cfg.max_request_tokens or self.settings.limits.max_request_tokens
        bound = token_bound(cfg, len(texts), truncation)
        if bound is not None and bound <= limit:
            return
        counter = await self._token_counter(name, cfg)
        if counter is None or counter.upper_bound(len(texts), truncation) <= limit:
            return
        await asyncio.to_thread(counter.check, query, texts, truncation, instruction, limit)

    async def _token_counter(self, name: str, cfg: PresetConfig | CustomConfig
                             ) -> RequestTokenCounter | None:
        task = self._token_counters.get(name)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(_build_counter, name, cfg))
            self._token_counters[name] = task
        return await asyncio.shield(task)

    # -- readiness --------------------------------------------------------------------------

    async def variant_ready(self, variant: str, timeout_s: float = _READY_PROBE_S, *,
                            cached: bool = True) -> bool:
        """Whether the variant has a replica that finished loading.

        Requests probe until the first success and trust it afterwards (Serve replaces failed
        replicas); ``cached=False`` probes afresh, for ``GET /ready``. A probe that gets no
        answer in time asks Serve's controller instead: a freshly (re)started ingress under
        load queues its probe behind busy replicas, and refusing then would answer 503 while
        scorers are healthy.
        """
        if cached and variant in self._ready:
            return True
        from ray.serve.exceptions import BackPressureError

        response = self.scorers[variant].ready.remote()
        try:
            await asyncio.wait_for(_await(response), timeout_s)
        except BackPressureError:
            pass  # replicas exist and are busy: that is ready
        except Exception:
            response.cancel()
            if not await self._has_running_replica(variant, timeout_s):
                return False
        self._ready.add(variant)
        return True

    async def _has_running_replica(self, variant: str, timeout_s: float) -> bool:
        # Serve marks a replica RUNNING only after __init__ (and so the warm-up) returned.
        handle = self.scorers[variant]
        try:
            running = await asyncio.wait_for(
                asyncio.to_thread(_running_replicas, handle.app_name, handle.deployment_name),
                timeout_s,
            )
        except Exception as exc:  # no controller answer: keep refusing, the probe said no
            logger.warning("could not ask Serve for %s replicas: %r", variant, exc)
            return False
        return running > 0

    async def readiness(self) -> dict[str, bool]:
        """A fresh probe of every variant deployment."""
        variants = list(self.scorers)
        states = await asyncio.gather(*(self.variant_ready(v, cached=False) for v in variants))
        return dict(zip(variants, states, strict=True))

    # -- scoring ----------------------------------------------------------------------------

    async def rerank(
        self,
        *,
        model: str | None,
        query: str,
        texts: list[str],
        documents: Sequence[Document] | None,
        top_n: int | None,
        return_documents: bool,
        raw_scores: bool = False,
        truncation: Truncation | None = None,
        instruction: str | None = None,
        min_score: float | None = None,
    ) -> RerankOutcome:
        """Score every text for ``query`` with ``model`` and rank them.

        ``documents`` are what gets attached to results (the caller's objects or strings);
        ``truncation`` is the request's own way of cutting long texts (local models only);
        ``instruction`` goes into the prompt of an instruction-following reranker (default:
        the model's configured one) and with every chunk. ``min_score`` drops results below it
        (on the score returned); default the configured ``min_score`` of the model that
        answers, a probability, so not applied to raw scores. Results carry their best window's
        span when the model chunks; the outcome carries the usage. When ``model`` rate-limits,
        fails or times out and the app names fallbacks for it, the outcome comes from the first
        fallback that answers, with ``fallback`` saying so (a fallback that takes no instruction is
        asked without it).
        """
        name = self.resolve(model)[0]
        instruction = self.check_instruction(name, instruction)
        score = partial(
            self._rerank_model, query=query, texts=texts, documents=documents, top_n=top_n,
            return_documents=return_documents, raw_scores=raw_scores, truncation=truncation,
            min_score=check_min_score(min_score),
        )

        async def attempt(candidate: str) -> RerankOutcome:
            told = instruction
            if candidate != name and self.settings.models[candidate].takes_instruction is False:
                told = None
            with tracing.span("rerank.model", attributes={"reranker.model": candidate}):
                return await score(candidate, instruction=told)

        chain = self.settings.fallbacks.get(name, ())
        if not chain:
            return await attempt(name)

        def first_stage() -> RerankOutcome:
            results = first_stage_results(len(texts), documents, top_n=top_n,
                                          return_documents=return_documents)
            return RerankOutcome(FIRST_STAGE, results)

        outcome, report = await run_chain(name, chain, attempt, first_stage, self.on_fallback)
        return replace(outcome, fallback=report) if report is not None else outcome

    async def _rerank_model(
        self,
        name: str,
        *,
        query: str,
        texts: list[str],
        documents: Sequence[Document] | None,
        top_n: int | None,
        return_documents: bool,
        raw_scores: bool,
        truncation: Truncation | None,
        instruction: str | None,
        min_score: float | None,
    ) -> RerankOutcome:
        variant = self.resolve(name)[1]
        threshold = min_score
        if threshold is None and not raw_scores:
            threshold = self.settings.models[name].min_score
        if not await self.variant_ready(variant):
            raise ApiError(503, "service_unavailable_error",
                           f"model {name!r} is still starting; retry shortly", None, 5.0)
        handle = self._model_handles.get(name)
        if handle is None:
            handle = self.scorers[variant].options(multiplexed_model_id=name)
            self._model_handles[name] = handle
        size = self.settings.chunk_size
        spans = [(start, min(start + size, len(texts))) for start in range(0, len(texts), size)]
        if truncation is not None and truncation.is_default:
            truncation = None
        await self.check_request_tokens(name, query, texts, truncation, instruction)
        replies = await self._score_chunks(handle, query, texts, spans, truncation, instruction,
                                           retry_lost=self.settings.models[name].runs_locally)
        merged = np.concatenate([np.asarray(r["scores"], dtype=np.float64) for r in replies])
        scores = check_scores(merged, len(texts), source=f"model {name!r}")
        results = build_results(
            scores,
            documents,
            scores_are_probabilities=bool(replies[0]["scores_are_probabilities"]),
            top_k=top_n,
            raw_scores=raw_scores,
            return_documents=return_documents,
            min_score=threshold,
            spans=_merged_spans(replies),
        )
        chunks = [
            {"documents": stop - start,
             **{k: v for k, v in r.items() if k not in ("scores", "spans")}}
            for (start, stop), r in zip(spans, replies, strict=True)
        ]
        counts: list[int | None] = [r.get("tokens") for r in replies]
        tokens = None if None in counts else sum(c or 0 for c in counts)
        # A provider's own billed units where every chunk reports them (Cohere's meta).
        billed: list[int | None] = [r.get("search_units") for r in replies]
        units = (Usage.search_units_for(len(texts)) if None in billed
                 else sum(b or 0 for b in billed))
        return RerankOutcome(name, results, chunks, usage=Usage(units, tokens))

    async def _score_chunks(
        self, handle: Any, query: str, texts: list[str], spans: list[tuple[int, int]],
        truncation: Truncation | None, instruction: str | None = None, *,
        retry_lost: bool = True,
    ) -> list[dict[str, Any]]:
        failed_at: list[int] = []
        # Chunks stream through a bounded window: sent all at once, a 4,000-document request
        # in 16-document chunks put 250 calls in the scorers' queue (64 by default) and got a
        # 429 for itself. Tasks wait in creation order, so chunks still start in input order.
        window = asyncio.Semaphore(self.settings.max_chunks_in_flight)

        async def chunk(i: int, a: int, b: int) -> dict[str, Any]:
            try:
                async with window:
                    with tracing.span("rerank.chunk", attributes={
                            "reranker.chunk.offset": a, "reranker.chunk.documents": b - a}):
                        return await self._score_chunk(handle, query, texts[a:b], truncation,
                                                       a, instruction, retry_lost=retry_lost)
            except Exception:
                failed_at.append(i)
                raise

        try:
            return await gather_or_cancel(chunk(i, a, b) for i, (a, b) in enumerate(spans))
        except Exception as exc:
            if len(spans) > 1:
                failed = failed_at[0] if failed_at else None
                err = to_api_error(exc)
                where = f"documents {spans[failed][0]}..{spans[failed][1] - 1}" if (
                    failed is not None) else "a chunk"
                raise ApiError(
                    err.status, err.type,
                    f"scoring {where} of {len(texts)} failed, so the request failed: "
                    f"{err.message}", err.param, err.retry_after_s,
                ) from exc
            raise

    async def _score_chunk(
        self, handle: Any, query: str, texts: list[str], truncation: Truncation | None,
        offset: int, instruction: str | None = None, *, retry_lost: bool = True,
    ) -> dict[str, Any]:
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        timeout = self.settings.request_timeout_s
        if truncation is not None and offset:
            # Errors name documents by their index in the request, not in the chunk.
            truncation = replace(truncation, index_offset=offset)
        elif offset and any(isinstance(t, Mapping) for t in texts):
            # Image documents: their errors (an undecodable image, a text-only model) too.
            truncation = Truncation(index_offset=offset)
        # The trace context crosses the handle call only while tracing is on.
        trace = tracing.carrier()
        extra = {} if trace is None else {"trace": trace}
        for attempt in range(2):
            response = handle.score.remote(query, texts, truncation, instruction, **extra)
            try:
                reply: dict[str, Any] = await asyncio.wait_for(_await(response), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                response.cancel()
                raise ApiError(504, "timeout_error",
                               f"scoring did not finish within {timeout:g} s") from None
            except asyncio.CancelledError:
                response.cancel()
                raise
            except (ActorDiedError, ActorUnavailableError):
                # Local scoring is idempotent: a replica lost mid-call is retried once
                # elsewhere. A provider call may have been made (and billed): not replayed.
                if attempt == 0 and retry_lost:
                    logger.warning("a scorer replica died during a call; retrying the chunk")
                    continue
                raise
            if "error" in reply:
                raise reply["error"]
            return reply
        raise AssertionError("unreachable")  # pragma: no cover


def _merged_spans(replies: list[dict[str, Any]]) -> list[tuple[int, int] | None] | None:
    """Every chunk's best-window spans in input order, or ``None`` if a chunk has none."""
    merged: list[tuple[int, int] | None] = []
    for reply in replies:
        spans = reply.get("spans")
        if spans is None:
            return None
        merged.extend(spans)
    return merged


def _build_counter(name: str, cfg: PresetConfig | CustomConfig) -> RequestTokenCounter | None:
    # Without the tokenizer here (a model folder only the scorers' nodes hold, say), the
    # scorers' per-call budget is what still applies: the request is not refused for it.
    try:
        return request_token_counter(cfg)
    except Exception as exc:
        logger.warning("model %r: no token counter at the ingress (%r); its budget is checked "
                       "per chunk by the scorers only", name, exc)
        return None


async def _await(response: Any) -> Any:
    return await response


def _running_replicas(app_name: str, deployment_name: str) -> int:
    from ray import serve

    app = serve.status().applications.get(app_name)
    deployment = app.deployments.get(deployment_name) if app is not None else None
    if deployment is None:
        return 0
    return sum(n for state, n in deployment.replica_states.items()
               if str(getattr(state, "value", state)) == "RUNNING")
