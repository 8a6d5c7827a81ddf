"""Serve's HTTP proxy made to answer like the app: a retry when the ingress dies, JSON errors.

When the ingress replica handling a request dies (its node lost, the replica killed), Serve's
proxy has nothing to send and the HTTP server answers a plain-text ``500 Internal Server Error``;
back-pressure and "no replicas" answers from the proxy itself are plain text too. Every rerank
request is idempotent (scoring has no side effects), so :class:`IngressRetryMiddleware` keeps the
request body, sends the request again when no response was started (the proxy then routes it to
a live ingress replica), and turns what the proxy itself answers into the app's documented
``{"error": {"message", "type", "param"}}`` body.

The proxy is not part of an application, so it is installed per node through Ray Serve's
environment variable, set wherever the Ray nodes start (the Kubernetes manifest sets it)::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.serve.proxy_middleware:proxy_middlewares

What it cannot save: a request whose response had started (the app streams nothing, so only a
death between the first and last body chunk), a proxy whose own node died (the client's
connection drops: a load balancer in front retries elsewhere), and bodies over
``max_buffer_bytes`` (sent through once, unbuffered).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from deployments.serve.errors import retry_after_header

__all__ = ["IngressRetryMiddleware", "proxy_middlewares"]

logger = logging.getLogger("ray.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What the proxy's own plain-text answers mean, in the app's error vocabulary.
_TYPES = {408: "timeout_error", 429: "rate_limit_error", 500: "internal_error",
          503: "service_unavailable_error", 504: "timeout_error"}


class IngressRetryMiddleware:
    """Pure ASGI middleware around Serve's proxy app.

    Args:
        app: the proxy's ASGI app.
        attempts: sends of one request in all, while no response has started.
        backoff_s: wait before the first resend (doubled each time), so the proxy's routing
            table can drop the dead replica.
        max_buffer_bytes: bodies up to this size are kept for a resend.
    """

    def __init__(self, app: ASGIApp, attempts: int = 3, backoff_s: float = 0.5,
                 max_buffer_bytes: int = 64 * 1024 * 1024) -> None:
        self.app = app
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_buffer_bytes = max_buffer_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/-/"):
            await self.app(scope, receive, send)  # websockets, Serve's health/route checks
            return
        chunks, complete, disconnected = await _read_body(receive, self.max_buffer_bytes)
        if disconnected:
            return
        body = b"".join(chunks)
        attempts = self.attempts if complete else 1
        client_gone = asyncio.Event()
        for attempt in range(attempts):
            replay = _Replay(body if complete else None, chunks, receive, client_gone)
            reply = _JsonErrors(send)
            await self.app(scope, replay.receive, reply.send)
            if reply.started or client_gone.is_set():
                await reply.flush()
                return
            if attempt + 1 < attempts:
                logger.warning("no response for %s %s (the ingress replica died?); resending",
                               scope.get("method"), scope.get("path"))
                await asyncio.sleep(self.backoff_s * 2**attempt)
        await _send_json_error(
            send, 503, "the replica handling this request stopped before answering, "
            f"{attempts} time(s); retry shortly", retry_after_s=1)


async def _read_body(receive: Receive, cap: int) -> tuple[list[bytes], bool, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return chunks, False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, True, False
        if size > cap:
            return chunks, False, False


class _Replay:
    """The buffered body (or its first chunks, then the rest from the client), then the
    client's own messages (its disconnect)."""

    def __init__(self, body: bytes | None, chunks: list[bytes], receive: Receive,
                 client_gone: asyncio.Event) -> None:
        if body is not None:
            self._pending = [{"type": "http.request", "body": body, "more_body": False}]
        else:
            self._pending = [{"type": "http.request", "body": c, "more_body": True}
                             for c in chunks]
        self._receive = receive
        self._client_gone = client_gone

    async def receive(self) -> Message:
        if self._pending:
            return self._pending.pop(0)
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._client_gone.set()
        return message


class _JsonErrors:
    """Passes the app's responses through; rewrites the proxy's plain-text errors to JSON."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self._held: Message | None = None
        self._text: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            status = int(message["status"])
            headers = {k.lower(): v for k, v in message.get("headers", [])}
            is_json = b"json" in headers.get(b"content-type", b"")
            if status in _TYPES and not is_json:
                self._held = message
                return
            await self._send(message)
            return
        if self._held is not None and message["type"] == "http.response.body":
            self._text.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self.flush()
            return
        await self._send(message)

    async def flush(self) -> None:
        if self._held is None:
            return
        held, self._held = self._held, None
        retry_after = next((v for k, v in held.get("headers", [])
                            if k.lower() == b"retry-after" and v.isdigit()), None)
        text = b"".join(self._text).decode("utf-8", "replace").strip()
        status = int(held["status"])
        # float() of any run of digits is finite or inf, never an error (int() stops at 4300).
        await _send_json_error(self._send, status, text or f"HTTP {status} from the proxy",
                               retry_after_s=float(retry_after) if retry_after else None)


async def _send_json_error(send: Send, status: int, message: str,
                           retry_after_s: float | None = None) -> None:
    body = json.dumps({"error": {"message": message,
                                 "type": _TYPES.get(status, "internal_error"),
                                 "param": None}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    retry_after = retry_after_header(retry_after_s)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def proxy_middlewares() -> list[Any]:
    """The callback ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names: Starlette middlewares
    Serve wraps every node's proxy app in."""
    from starlette.middleware import Middleware

    return [Middleware(IngressRetryMiddleware)]
