"""Loopback stand-ins for the Cohere, Jina and Voyage rerank APIs, over real HTTP.

One ``ThreadingHTTPServer`` on 127.0.0.1 serves all three wire formats under path prefixes:

- ``{url}/cohere`` + ``/v2/rerank``: Cohere v2 (``results``, ``top_n``, ``max_tokens_per_doc``)
- ``{url}/jina`` + ``/v1/rerank``: Jina (``results``, ``top_n``, ``return_documents``)
- ``{url}/voyage`` + ``/v1/rerank``: Voyage (``data``, ``top_k``, ``truncation``, at most 1,000
  documents)

Requests are validated like the real APIs would: bearer key (401 otherwise), JSON body,
required fields and their types, no unknown fields (400). Scores are deterministic word overlap:
the share of the query's distinct words that appear in the document.

Faults apply to the next N requests, whatever the provider: ``rate_limit`` (429 with
``Retry-After``), ``server_error`` (500), ``slow`` (sleep before answering), ``bad_json`` and
``missing_indices``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"\w+")

# provider -> (path, results key, top field, optional fields and their types)
_FORMATS: dict[str, tuple[str, str, str, dict[str, type]]] = {
    "cohere": ("/v2/rerank", "results", "top_n", {"top_n": int, "max_tokens_per_doc": int}),
    "jina": ("/v1/rerank", "results", "top_n", {"top_n": int, "return_documents": bool}),
    "voyage": (
        "/v1/rerank",
        "data",
        "top_k",
        {"top_k": int, "truncation": bool, "return_documents": bool},
    ),
}
_MAX_DOCUMENTS = {"voyage": 1000, "cohere": 10_000}


def overlap_score(query: str, document: str) -> float:
    """Share of the query's distinct (lower-cased) words found in the document."""
    q = set(_WORD.findall(query.lower()))
    d = set(_WORD.findall(document.lower()))
    return len(q & d) / len(q) if q else 0.0


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
    slow: int = 0
    slow_s: float = 0.0
    bad_json: int = 0
    missing_indices: int = 0


@dataclass
class ProviderStandIn:
    """A running stand-in server; ``base_url(provider)`` is what a config points at."""

    api_key: str = "standin-key-0123456789"
    requests: list[SeenRequest] = field(default_factory=list)
    _faults: _Faults = field(default_factory=_Faults)
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
        return f"{self.url}/{provider}"

    # -- switches ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._faults = _Faults()
            self.requests.clear()

    def rate_limit(self, n: int, retry_after: str = "1") -> None:
        with self._lock:
            self._faults.rate_limit, self._faults.retry_after = n, retry_after

    def server_error(self, n: int) -> None:
        with self._lock:
            self._faults.server_error = n

    def slow(self, seconds: float, n: int = 1_000_000) -> None:
        with self._lock:
            self._faults.slow, self._faults.slow_s = n, seconds

    def bad_json(self, n: int) -> None:
        with self._lock:
            self._faults.bad_json = n

    def missing_indices(self, n: int) -> None:
        with self._lock:
            self._faults.missing_indices = n

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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner = self.owner
        provider, _, path = self.path.lstrip("/").partition("/")
        path = "/" + path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        seen = SeenRequest(provider, path, self.headers.get("Authorization"), body)
        with owner._lock:
            owner.requests.append(seen)

        fmt = _FORMATS.get(provider)
        if fmt is None or path != fmt[0]:
            return self._send(seen, 404, {"message": f"no route for POST {self.path}"})
        if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._error(seen, provider, 401, "invalid api token")
        if owner._take("slow"):
            # Sleep in slices so that stopping the server is not held up by a slow handler.
            owner._stop.wait(owner._faults.slow_s)
        if owner._take("rate_limit"):
            return self._error(
                seen,
                provider,
                429,
                "rate limit exceeded",
                headers={"Retry-After": owner._faults.retry_after},
            )
        if owner._take("server_error"):
            return self._error(seen, provider, 500, "internal server error")
        problem = _validate(provider, body)
        if problem:
            return self._error(seen, provider, 400, problem)
        if owner._take("bad_json"):
            return self._send(seen, 200, None, raw_body=b'{"results": [{"index": 0, "rel')
        response = _rank(provider, body)
        if owner._take("missing_indices"):
            response[fmt[1]] = response[fmt[1]][1:]
        return self._send(seen, 200, response)

    def _error(
        self,
        seen: SeenRequest,
        provider: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        # Cohere reports {"message"}, Jina and Voyage (FastAPI) report {"detail"}.
        key = "message" if provider == "cohere" else "detail"
        self._send(seen, status, {key: message}, headers=headers)

    def _send(
        self,
        seen: SeenRequest,
        status: int,
        payload: Any,
        *,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
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


def _validate(provider: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    _, _, _, optional = _FORMATS[provider]
    for name in ("model", "query", "documents"):
        if name not in body:
            return f"missing required field '{name}'"
    unknown = sorted(set(body) - {"model", "query", "documents"} - set(optional))
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    if not isinstance(body["model"], str) or not body["model"]:
        return "'model' must be a non-empty string"
    if not isinstance(body["query"], str) or not body["query"]:
        return "'query' must be a non-empty string"
    docs = body["documents"]
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        return "'documents' must be a non-empty list of strings"
    limit = _MAX_DOCUMENTS.get(provider)
    if limit is not None and len(docs) > limit:
        return f"the number of documents cannot exceed {limit}"
    for name, kind in optional.items():
        value = body.get(name)
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"'{name}' must be an integer >= 1"
        if kind is bool and not isinstance(value, bool):
            return f"'{name}' must be a boolean"
    return None


def _rank(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    _, results_key, top_field, _ = _FORMATS[provider]
    docs: list[str] = body["documents"]
    scores = [overlap_score(body["query"], d) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: -scores[i])
    top = body.get(top_field) or len(docs)
    items: list[dict[str, Any]] = []
    for i in order[:top]:
        item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if body.get("return_documents"):
            item["document"] = docs[i] if provider == "voyage" else {"text": docs[i]}
        items.append(item)
    tokens = sum(len(_WORD.findall(d)) for d in docs)
    if provider == "cohere":
        return {
            "id": str(uuid.uuid4()),
            "results": items,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
    if provider == "jina":
        return {"model": body["model"], "usage": {"total_tokens": tokens}, "results": items}
    return {
        "object": "list",
        "data": items,
        "model": body["model"],
        "usage": {"total_tokens": tokens},
    }
