"""Loopback stand-ins for every rerank wire format liter-llm speaks, over real HTTP.

One ``ThreadingHTTPServer`` on 127.0.0.1 serves each provider under its own path prefix;
``base_url(provider)`` is what an ``llm`` config points at (liter-llm appends its path):

- cohere (v2): ``/cohere/v2/rerank`` -> ``{id, results, meta}``
- jina_ai (also ``jina``): ``/jina_ai/v1/rerank`` -> ``{model, usage, results}``
- voyage: ``/voyage/v1/rerank`` (``top_k``) -> ``{object, data, model, usage}``
- Cohere-compatible (vllm, hosted_vllm, llamacpp, localai, deepinfra, fireworks_ai):
  ``/{provider}/v1/rerank`` -> ``{id, model, usage, results}``
- huggingface (TEI): ``/huggingface/v1/rerank`` (``query``, ``texts``) -> ``[{index, score}]``
- nvidia_nim: ``/nvidia_nim/v1/ranking`` (``query.text``, ``passages[].text``) ->
  ``{rankings: [{index, logit}]}``
- bedrock (Agent Runtime): ``/bedrock/rerank`` (``queries``, ``sources``,
  ``rerankingConfiguration``) -> ``{results: [{index, relevanceScore}]}``
- dashscope, qwen_ai_platform: ``/compatible-api/v1/reranks`` at the host root (liter-llm keeps
  only the host of the base URL) -> ``{object, results, model, usage}``

Shapes come from each provider's API reference and from what liter-llm 2.4.0 sends (checked
with a recording server). Requests are validated like the real APIs would: bearer key (401
otherwise; local servers and Bedrock-through-a-base-URL send none), JSON body, required fields
and their types, no unknown fields (400). Scores are deterministic word overlap: the share of
the query's distinct words found in the document (NIM answers it as a logit, ``4 * s - 2``).

Faults apply to the next N requests, whatever the provider: ``rate_limit`` (429 with
``Retry-After``), ``server_error`` (500, or another status and message), ``slow`` (sleep before
answering), ``bad_json``, ``missing_indices``, ``duplicate_indices``, ``out_of_range``,
``redirect`` (307 to a ``Location``) and ``oversized`` (an answer, 200 or another status, whose
body is ``size`` bytes, streamed, with or without ``Content-Length``; ``oversized_sent`` counts
what was written before the client hung up). A handler that slept past its test's ``reset()``
answers nothing, so it cannot take the next test's faults.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"\w+")


def overlap_score(query: str, document: str) -> float:
    """Share of the query's distinct (lower-cased) words found in the document."""
    q = set(_WORD.findall(query.lower()))
    d = set(_WORD.findall(document.lower()))
    return len(q & d) / len(q) if q else 0.0


def nim_logit(query: str, document: str) -> float:
    """What the NIM stand-in answers: a logit whose order is the overlap's."""
    return 4.0 * overlap_score(query, document) - 2.0


@dataclass(frozen=True)
class _Format:
    path: str  # after the provider prefix
    base: str  # what base_url() appends to the prefix
    results_key: str | None  # None: the body is the list itself
    optional: dict[str, type]
    query_docs: Callable[[dict[str, Any]], tuple[Any, Any]]
    answer: Callable[[dict[str, Any], list[tuple[int, float]]], Any]
    top_field: str | None = "top_n"
    max_documents: int | None = None
    error_key: str = "detail"
    keyed: bool = True


def _plain(body: dict[str, Any]) -> tuple[Any, Any]:
    return body.get("query"), body.get("documents")


def _item(i: int, s: float, body: dict[str, Any], docs: list[str], nested: bool = True
          ) -> dict[str, Any]:
    item: dict[str, Any] = {"index": i, "relevance_score": s}
    if body.get("return_documents"):
        item["document"] = {"text": docs[i]} if nested else docs[i]
    return item


def _tokens(body: dict[str, Any]) -> int:
    return sum(len(_WORD.findall(d)) for d in body.get("documents") or body.get("texts") or [])


def cohere_search_units(documents: list[str]) -> int:
    """Cohere's billing: a document over 500 tokens counts as several (words stand in for
    tokens here), and a search unit is one query with up to 100 such documents."""
    pieces = sum(max(1, -(-len(_WORD.findall(d)) // 500)) for d in documents)
    return max(1, -(-pieces // 100))


def _cohere(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    units = cohere_search_units(body["documents"])
    return {"id": str(uuid.uuid4()),
            "results": [_item(i, s, body, body["documents"]) for i, s in ranked],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": units}}}


def _jina(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return {"model": body["model"], "usage": {"total_tokens": _tokens(body)},
            "results": [_item(i, s, body, body["documents"]) for i, s in ranked]}


def _voyage(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return {"object": "list", "model": body["model"], "usage": {"total_tokens": _tokens(body)},
            "data": [_item(i, s, body, body["documents"], nested=False) for i, s in ranked]}


def _compatible(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": body["model"],
            "usage": {"total_tokens": _tokens(body)},
            "results": [_item(i, s, body, body["documents"]) for i, s in ranked]}


def _dashscope(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return {"object": "list", "id": str(uuid.uuid4()), "model": body["model"],
            "usage": {"total_tokens": _tokens(body)},
            "results": [_item(i, s, body, body["documents"]) for i, s in ranked]}


def _tei(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return [{"index": i, "score": s} for i, s in ranked]


def _nim_query_docs(body: dict[str, Any]) -> tuple[Any, Any]:
    query, passages = body.get("query"), body.get("passages")
    q = query.get("text") if isinstance(query, dict) else None
    docs = ([p.get("text") if isinstance(p, dict) else None for p in passages]
            if isinstance(passages, list) else None)
    return q, docs


def _nim(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    q, docs = _nim_query_docs(body)
    return {"rankings": [{"index": i, "logit": nim_logit(q, docs[i])} for i, _ in ranked]}


def _bedrock_query_docs(body: dict[str, Any]) -> tuple[Any, Any]:
    try:
        (query,) = body["queries"]
        assert query["type"] == "TEXT"
        docs = []
        for source in body["sources"]:
            assert source["type"] == "INLINE"
            inline = source["inlineDocumentSource"]
            assert inline["type"] == "TEXT"
            docs.append(inline["textDocument"]["text"])
        config = body["rerankingConfiguration"]
        assert config["type"] == "BEDROCK_RERANKING_MODEL"
        model = config["bedrockRerankingConfiguration"]["modelConfiguration"]["modelArn"]
        assert isinstance(model, str) and model
        return query["textQuery"]["text"], docs
    except (KeyError, TypeError, ValueError, AssertionError):
        return None, None


def _bedrock(body: dict[str, Any], ranked: list[tuple[int, float]]) -> Any:
    return {"results": [{"index": i, "relevanceScore": s} for i, s in ranked]}


_GENERIC = {"top_n": int, "return_documents": bool, "max_tokens_per_doc": int, "truncation": bool}
_COMPATIBLE = _Format("/v1/rerank", "/v1", "results", _GENERIC, _plain, _compatible)
_FORMATS: dict[str, _Format] = {
    "cohere": _Format("/v2/rerank", "/v2", "results", {"top_n": int, "max_tokens_per_doc": int},
                      _plain, _cohere, max_documents=10_000, error_key="message"),
    "jina_ai": _Format("/v1/rerank", "/v1", "results", {"top_n": int, "return_documents": bool},
                       _plain, _jina),
    "voyage": _Format("/v1/rerank", "/v1", "data",
                      {"top_k": int, "truncation": bool, "return_documents": bool},
                      _plain, _voyage, top_field="top_k", max_documents=1000),
    "huggingface": _Format("/v1/rerank", "/v1", None,
                           {"truncate": bool, "raw_scores": bool, "return_text": bool},
                           lambda b: (b.get("query"), b.get("texts")), _tei, top_field=None),
    "nvidia_nim": _Format("/v1/ranking", "/v1", "rankings", {"truncate": str},
                          _nim_query_docs, _nim, top_field=None),
    "bedrock": _Format("/rerank", "", "results", {}, _bedrock_query_docs, _bedrock,
                       top_field=None, max_documents=1000, keyed=False),
    "dashscope": _Format("/compatible-api/v1/reranks", "", "results",
                         {"top_n": int, "return_documents": bool}, _plain, _dashscope),
    "vllm": _COMPATIBLE, "hosted_vllm": _COMPATIBLE, "deepinfra": _COMPATIBLE,
    "fireworks_ai": _COMPATIBLE,
    "llamacpp": _Format("/v1/rerank", "/v1", "results", _GENERIC, _plain, _compatible,
                        keyed=False),
    "localai": _Format("/v1/rerank", "/v1", "results", _GENERIC, _plain, _compatible,
                       keyed=False),
}
_FORMATS["vllm"] = _Format("/v1/rerank", "/v1", "results", _GENERIC, _plain, _compatible,
                           keyed=False)
_FORMATS["hosted_vllm"] = _FORMATS["vllm"]
_FORMATS["qwen_ai_platform"] = _FORMATS["dashscope"]
_ALIASES = {"jina": "jina_ai"}
_ROOT_ROUTES = {"/compatible-api/v1/reranks": "dashscope"}

#: Every provider the stand-in speaks (liter-llm's names).
FORMATS = tuple(sorted(_FORMATS))


@dataclass
class SeenRequest:
    """One request as the stand-in received it."""

    provider: str
    path: str
    authorization: str | None
    body: Any
    status: int = 0


@dataclass
class _Faults:
    rate_limit: int = 0
    retry_after: str = "1"
    server_error: int = 0
    server_message: str = "internal server error"
    server_status: int = 500
    slow: int = 0
    slow_s: float = 0.0
    bad_json: int = 0
    missing_indices: int = 0
    duplicate_indices: int = 0
    out_of_range: int = 0
    oversized: int = 0
    oversized_bytes: int = 0
    oversized_chunked: bool = False
    oversized_status: int = 200
    oversized_sent: int = 0
    redirect: int = 0
    location: str = ""


@dataclass
class ProviderStandIn:
    """A running stand-in server; ``base_url(provider)`` is what a config points at."""

    api_key: str = "standin-key-0123456789"
    requests: list[SeenRequest] = field(default_factory=list)
    _faults: _Faults = field(default_factory=_Faults)
    _epoch: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ProviderStandIn:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="provider-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        """The ``base_url`` of ``provider``'s stand-in (liter-llm appends the route)."""
        fmt = _FORMATS[_ALIASES.get(provider, provider)]
        return f"{self.url}/{provider}{fmt.base}"

    def route(self, provider: str) -> str:
        """The full URL the stand-in answers ``provider``'s rerank calls on."""
        fmt = _FORMATS[_ALIASES.get(provider, provider)]
        if fmt.path in _ROOT_ROUTES:
            return self.url + fmt.path
        return f"{self.url}/{provider}{fmt.path}"

    # -- switches ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._faults = _Faults()
            self.requests.clear()
            self._epoch += 1

    def rate_limit(self, n: int, retry_after: str = "1") -> None:
        with self._lock:
            self._faults.rate_limit, self._faults.retry_after = n, retry_after

    def server_error(self, n: int, message: str = "internal server error", *,
                     status: int = 500) -> None:
        with self._lock:
            f = self._faults
            f.server_error, f.server_message, f.server_status = n, message, status

    def slow(self, seconds: float, n: int = 1_000_000) -> None:
        with self._lock:
            self._faults.slow, self._faults.slow_s = n, seconds

    def bad_json(self, n: int) -> None:
        with self._lock:
            self._faults.bad_json = n

    def missing_indices(self, n: int) -> None:
        with self._lock:
            self._faults.missing_indices = n

    def duplicate_indices(self, n: int) -> None:
        with self._lock:
            self._faults.duplicate_indices = n

    def out_of_range(self, n: int) -> None:
        with self._lock:
            self._faults.out_of_range = n

    def oversized(self, n: int, size: int, *, chunked: bool = False, status: int = 200) -> None:
        with self._lock:
            f = self._faults
            f.oversized, f.oversized_bytes, f.oversized_chunked = n, size, chunked
            f.oversized_status, f.oversized_sent = status, 0

    def redirect(self, n: int, location: str) -> None:
        with self._lock:
            self._faults.redirect, self._faults.location = n, location

    @property
    def oversized_sent(self) -> int:
        return self._faults.oversized_sent

    def _take(self, name: str) -> bool:
        with self._lock:
            left = getattr(self._faults, name)
            if left > 0:
                setattr(self._faults, name, left - 1)
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    owner: ProviderStandIn
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, delayed ACKs add 40 ms a request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner = self.owner
        if self.path in _ROOT_ROUTES:
            provider, path = _ROOT_ROUTES[self.path], self.path
        else:
            provider, _, rest = self.path.lstrip("/").partition("/")
            path = "/" + rest
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        seen = SeenRequest(provider, path, self.headers.get("Authorization"), body)
        with owner._lock:
            owner.requests.append(seen)

        fmt = _FORMATS.get(_ALIASES.get(provider, provider))
        if fmt is None or path != fmt.path:
            return self._send(seen, 404, {"message": f"no route for POST {self.path}"})
        auth = self.headers.get("Authorization")
        if (fmt.keyed or auth is not None) and auth != f"Bearer {owner.api_key}":
            return self._error(seen, fmt, 401, "invalid api token")
        if owner._take("slow"):
            epoch = owner._epoch
            # Wait on the stop event so that stopping the server is not held up.
            owner._stop.wait(owner._faults.slow_s)
            if owner._epoch != epoch:
                # Its test is over (the client gave up long ago): arm nothing of the next one.
                self.close_connection = True
                return None
        if owner._take("rate_limit"):
            return self._error(seen, fmt, 429, "rate limit exceeded",
                               headers={"Retry-After": owner._faults.retry_after})
        if owner._take("server_error"):
            faults = owner._faults
            return self._error(seen, fmt, faults.server_status, faults.server_message)
        if owner._take("redirect"):
            return self._send(seen, 307, {"detail": "moved"},
                              headers={"Location": owner._faults.location})
        problem = _validate(fmt, body)
        if problem:
            return self._error(seen, fmt, 400, problem)
        if owner._take("oversized"):
            return self._oversized(seen)
        if owner._take("bad_json"):
            return self._send(seen, 200, None, raw_body=b'{"results": [{"index": 0, "rel')
        response = _rank(fmt, body)
        items = response if fmt.results_key is None else response[fmt.results_key]
        if owner._take("missing_indices"):
            del items[0]
        if owner._take("duplicate_indices") and len(items) > 1:
            items[1] = dict(items[0])
        if owner._take("out_of_range"):
            items[0] = {**items[0], "index": len(items) + 5}
        return self._send(seen, 200, response)

    def _oversized(self, seen: SeenRequest) -> None:
        faults = self.owner._faults
        size, chunked = faults.oversized_bytes, faults.oversized_chunked
        head, tail = b'{"results": [], "meta": {"pad": "', b'"}}'
        seen.status = faults.oversized_status
        block = b"x" * 65536
        try:
            self.send_response(faults.oversized_status)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(head) + size + len(tail)))
            self.end_headers()

            def write(part: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                faults.oversized_sent += len(part)

            write(head)
            left = size
            while left > 0:
                write(block[: min(len(block), left)])
                left -= len(block)
            write(tail)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client hung up: what the cap is for

    def _error(self, seen: SeenRequest, fmt: _Format, status: int, message: str,
               headers: dict[str, str] | None = None) -> None:
        # Cohere reports {"message"}, the others (FastAPI and the like) {"detail"}.
        self._send(seen, status, {fmt.error_key: message}, headers=headers)

    def _send(self, seen: SeenRequest, status: int, payload: Any, *,
              raw_body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        seen.status = status
        data = raw_body if raw_body is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (timeout tests)


def _validate(fmt: _Format, body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    query, docs = fmt.query_docs(body)
    if fmt.query_docs is _plain or fmt.results_key is None:
        names = {"model", "query", "texts" if fmt.results_key is None else "documents"}
        required = names - ({"model"} if fmt.results_key is None else set())
        missing = sorted(required - set(body))
        if missing:
            return f"missing required field '{missing[0]}'"
        unknown = sorted(set(body) - names - set(fmt.optional))
        if unknown:
            return f"unknown field(s): {', '.join(unknown)}"
        model = body.get("model", "tei")
        if not isinstance(model, str) or not model:
            return "'model' must be a non-empty string"
    elif fmt.query_docs is _nim_query_docs:
        unknown = sorted(set(body) - {"model", "query", "passages"} - set(fmt.optional))
        if unknown or not isinstance(body.get("model"), str):
            return f"bad NIM ranking request: unknown {unknown} or no model"
    if not isinstance(query, str) or not query:
        return "'query' must be a non-empty string"
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        return "'documents' must be a non-empty list of strings"
    if fmt.max_documents is not None and len(docs) > fmt.max_documents:
        return f"the number of documents cannot exceed {fmt.max_documents}"
    for name, kind in fmt.optional.items():
        value = body.get(name)
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"'{name}' must be an integer >= 1"
        if kind is not int and not isinstance(value, kind):
            return f"'{name}' must be a {kind.__name__}"
    return None


def _rank(fmt: _Format, body: dict[str, Any]) -> Any:
    query, docs = fmt.query_docs(body)
    scores = [overlap_score(query, d) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: -scores[i])
    top = body.get(fmt.top_field) if fmt.top_field else None
    if fmt.query_docs is _bedrock_query_docs:
        top = body["rerankingConfiguration"]["bedrockRerankingConfiguration"].get(
            "numberOfResults")
    ranked = [(i, scores[i]) for i in order[: top or len(docs)]]
    return fmt.answer(body, ranked)
