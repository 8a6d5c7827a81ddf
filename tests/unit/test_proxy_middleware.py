"""The proxy middleware: a resend when the ingress dies before answering, JSON errors.

The proxy app is stood in for by small ASGI apps that behave as Serve's proxy does: nothing sent
when the ingress replica died, a plain-text 503/429 for its own refusals.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from deployments.serve.proxy_middleware import IngressRetryMiddleware, proxy_middlewares


async def _call(app: Any, body: bytes, *, path: str = "/v1/rerank", chunks: int = 1,
                disconnect_first: bool = False) -> tuple[int | None, dict[bytes, bytes], bytes]:
    step = -(-len(body) // chunks) or 1
    parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    inbox: list[dict[str, Any]] = [] if disconnect_first else [
        {"type": "http.request", "body": p, "more_body": i + 1 < len(parts)}
        for i, p in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        if disconnect_first:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # the client stays connected
        raise AssertionError

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) <= 1, sent
    status = starts[0]["status"] if starts else None
    headers = dict(starts[0]["headers"]) if starts else {}
    return status, headers, b"".join(m.get("body", b"") for m in sent
                                     if m["type"] == "http.response.body")


class _DiesThenAnswers:
    """Reads the body, sends nothing ``deaths`` times (a dead ingress), then echoes it."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        if len(self.bodies) <= self.deaths:
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def test_dead_ingress_is_resent_with_the_same_body() -> None:
    inner = _DiesThenAnswers(deaths=2)
    app = IngressRetryMiddleware(inner, attempts=3, backoff_s=0.0)
    status, _, body = await _call(app, b'{"query": "q", "documents": ["a", "b"]}', chunks=3)
    assert status == 200 and json.loads(body) == {"query": "q", "documents": ["a", "b"]}
    assert inner.bodies == [b'{"query": "q", "documents": ["a", "b"]}'] * 3


async def test_out_of_attempts_is_a_json_503_with_retry_after() -> None:
    inner = _DiesThenAnswers(deaths=5)
    app = IngressRetryMiddleware(inner, attempts=2, backoff_s=0.0)
    status, headers, body = await _call(app, b"{}")
    assert len(inner.bodies) == 2
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert json.loads(body)["error"]["type"] == "service_unavailable_error"


async def test_proxy_plain_text_errors_become_json() -> None:
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"text/plain"), (b"retry-after", b"3")]})
        await send({"type": "http.response.body", "body": b"Request dropped due to backpressure"})

    status, headers, body = await _call(IngressRetryMiddleware(refuses), b"{}")
    assert status == 429 and headers[b"retry-after"] == b"3"
    assert json.loads(body) == {"error": {"message": "Request dropped due to backpressure",
                                          "type": "rate_limit_error", "param": None}}


async def test_app_json_errors_and_health_checks_pass_through() -> None:
    async def app_error(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": {"type": "x"}}'})

    status, _, body = await _call(IngressRetryMiddleware(app_error), b"{}")
    assert status == 503 and body == b'{"error": {"type": "x"}}'

    async def healthz(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"draining"})

    assert await _call(IngressRetryMiddleware(healthz), b"", path="/-/healthz") == (
        503, {b"content-type": b"text/plain"}, b"draining")


async def test_client_gone_is_not_resent() -> None:
    inner = _DiesThenAnswers(deaths=1)
    status, _, _ = await _call(IngressRetryMiddleware(inner, backoff_s=0.0), b"{}",
                               disconnect_first=True)
    assert status is None and inner.bodies == []


async def test_a_chunked_body_over_the_limit_is_refused_while_read() -> None:
    # No Content-Length (a chunked upload): counted as it arrives, refused past the limit.
    inner = _DiesThenAnswers(deaths=0)
    app = IngressRetryMiddleware(inner, max_body_bytes=4)
    status, _, body = await _call(app, b"0123456789abcdef", chunks=4)
    assert status == 413 and inner.bodies == []
    assert json.loads(body)["error"]["type"] == "request_too_large"
    assert app.buffered_bytes == 0


def test_callback_returns_starlette_middleware() -> None:
    from ray.serve._private.http_util import validate_http_proxy_callback_return

    (mw,) = validate_http_proxy_callback_return(proxy_middlewares())
    assert mw.cls is IngressRetryMiddleware


@pytest.mark.parametrize("digits", [301, 5000])
async def test_a_huge_retry_after_from_the_proxy_is_capped(digits: int) -> None:
    # Regression (issue 21 item 6): digits were passed on as they came, 301 of them (and int()
    # of 5000 digits raises).
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"retry-after", b"9" * digits)]})
        await send({"type": "http.response.body", "body": b"no replicas"})

    status, headers, body = await _call(IngressRetryMiddleware(refuses), b"{}")
    assert status == 503 and headers[b"retry-after"] == b"3600"
    assert json.loads(body)["error"]["type"] == "service_unavailable_error"
