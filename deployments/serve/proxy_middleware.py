"""Serve's HTTP proxy made to answer like the app: bounded bodies, a resend when the ingress
dies, JSON errors.

When the ingress replica handling a request dies (its node lost, the replica killed), Serve's
proxy has nothing to send and the HTTP server answers a plain-text ``500 Internal Server Error``;
back-pressure and "no replicas" answers from the proxy itself are plain text too.
:class:`IngressRetryMiddleware` keeps the request body, sends the request again when no response
was started (the proxy then routes it to a live ingress replica), and turns what the proxy itself
answers into the app's documented ``{"error": {"message", "type", "param"}}`` body.

The proxy is the first code that sees a client's bytes, and Serve's own proxy app reads a whole
body into memory as soon as it is called, so the limits are checked here first, before a byte of
the body is read: a ``Content-Length`` over the proxy's body limit is a 413; with keys configured,
a request with a body and no accepted key is a 401; and the bodies one proxy holds at once, from
the first byte read until the response is sent, stay within a budget (429 with ``Retry-After``
beyond), so no number of clients can make a proxy hold more than that.

A resend is marked with the ``x-reranker-resend`` header (a client's own is dropped). The
ingress answers a marked request for a model that does not run locally (an API provider, a
plugin, or a fallback chain reaching one) with a 503 instead of scoring it again: the dead
replica may already have called the provider, and a replay would be billed twice. Local models
are resent (scoring them has no side effect).

The proxy is not part of an application, so it is installed per node through Ray Serve's
environment variable, set wherever the Ray nodes start (the Kubernetes manifest sets it)::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.serve.proxy_middleware:proxy_middlewares

and configured by these, read once when the node's proxy starts (see :data:`SETTINGS`):
``RERANKER_PROXY_MAX_BODY_BYTES``, ``RERANKER_PROXY_MAX_BUFFERED_BYTES``,
``RERANKER_PROXY_API_KEY_ENV``, ``RERANKER_PROXY_ATTEMPTS``.

What it cannot save: a request whose response had started (the app streams nothing, so only a
death between the first and last body chunk), and a proxy whose own node died (the client's
connection drops: a load balancer in front retries elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from pydantic import SecretStr

from deployments.serve.errors import retry_after_header
from deployments.serve.keys import key_index, read_api_keys
from reranker.errors import ConfigError

__all__ = ["RESEND_HEADER", "SETTINGS", "IngressRetryMiddleware", "proxy_middlewares",
           "settings_from_env"]

logger = logging.getLogger("ray.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RESEND_HEADER = "x-reranker-resend"
"""Set on a resent request (its value: the attempt, from 1); the ingress refuses resends of
models that do not run locally."""
_RESEND = RESEND_HEADER.encode()

#: Environment variable -> (keyword of IngressRetryMiddleware, default, what it is).
SETTINGS: dict[str, tuple[str, int | None, str]] = {
    "RERANKER_PROXY_MAX_BODY_BYTES": (
        "max_body_bytes", 32 * 1024 * 1024,
        "Bytes in one request body (413 beyond, by Content-Length before reading); keep it at "
        "the app's limits.max_body_bytes."),
    "RERANKER_PROXY_MAX_BUFFERED_BYTES": (
        "max_buffered_bytes", 128 * 1024 * 1024,
        "Bytes of request bodies one proxy holds at once (429 with Retry-After beyond); at "
        "least the body limit."),
    "RERANKER_PROXY_ATTEMPTS": (
        "attempts", 3, "Sends of one request in all, while no response has started."),
    "RERANKER_PROXY_API_KEY_ENV": (
        "api_keys", None,
        "The environment variable holding the accepted keys (the app's api_key_env): a request "
        "with a body and no accepted key is answered 401 before any of it is read."),
}

# What the proxy's own plain-text answers mean, in the app's error vocabulary.
_TYPES = {401: "authentication_error", 408: "timeout_error", 413: "request_too_large",
          429: "rate_limit_error", 500: "internal_error", 503: "service_unavailable_error",
          504: "timeout_error"}


class IngressRetryMiddleware:
    """Pure ASGI middleware around Serve's proxy app.

    Args:
        app: the proxy's ASGI app.
        attempts: sends of one request in all, while no response has started.
        backoff_s: wait before the first resend (doubled each time), so the proxy's routing
            table can drop the dead replica.
        max_body_bytes: the largest request body (413 beyond).
        max_buffered_bytes: request bodies this proxy holds at once (429 beyond).
        api_keys: the accepted keys; none: the proxy checks none (the ingress still does).
    """

    def __init__(self, app: ASGIApp, attempts: int = 3, backoff_s: float = 0.5, *,
                 max_body_bytes: int = 32 * 1024 * 1024,
                 max_buffered_bytes: int = 128 * 1024 * 1024,
                 api_keys: Sequence[SecretStr] = ()) -> None:
        self.app = app
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_body_bytes = max_body_bytes
        self.max_buffered_bytes = max(max_buffered_bytes, max_body_bytes)
        self.api_keys = tuple(api_keys)
        self.buffered_bytes = 0  # bodies held now, by every request through this proxy
        self.peak_buffered_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/-/"):
            await self.app(scope, receive, send)  # websockets, Serve's health/route checks
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        raw_length = headers.get(b"content-length", b"")
        declared = int(raw_length) if raw_length.isdigit() else None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is not None and declared > self.max_body_bytes:
            await _send_json_error(send, 413, self._too_large())
            return
        if self.api_keys and ((declared or 0) > 0 or chunked) and not self._authorized(headers):
            await _send_json_error(
                send, 401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                extra_headers=[(b"www-authenticate", b"Bearer")])
            return
        held = 0
        try:
            # A declared length is reserved up front, so a burst of large uploads is refused
            # before any of it is read.
            if declared and not self._reserve(declared):
                await self._busy(send)
                return
            held = declared or 0
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if len(body) > self.max_body_bytes:
                    await _send_json_error(send, 413, self._too_large())
                    return
                if len(body) > held:
                    if not self._reserve(len(body) - held):
                        await self._busy(send)
                        return
                    held = len(body)
            await self._send_with_resends(scope, bytes(body), receive, send)
        finally:
            self.buffered_bytes -= held

    async def _send_with_resends(self, scope: Scope, body: bytes, receive: Receive,
                                 send: Send) -> None:
        client_gone = asyncio.Event()
        own = [(k, v) for k, v in scope.get("headers", []) if k.lower() != _RESEND]
        for attempt in range(self.attempts):
            marked = own if attempt == 0 else [*own, (_RESEND, str(attempt).encode())]
            replay = _Replay(body, receive, client_gone)
            reply = _JsonErrors(send)
            await self.app({**scope, "headers": marked}, replay.receive, reply.send)
            if reply.started or client_gone.is_set():
                await reply.flush()
                return
            if attempt + 1 < self.attempts:
                logger.warning("no response for %s %s (the ingress replica died?); resending",
                               scope.get("method"), scope.get("path"))
                await asyncio.sleep(self.backoff_s * 2**attempt)
        await _send_json_error(
            send, 503, "the replica handling this request stopped before answering, "
            f"{self.attempts} time(s); retry shortly", retry_after_s=1)

    def _authorized(self, headers: Mapping[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and key_index(token.strip(), self.api_keys) is not None

    def _reserve(self, n: int) -> bool:
        if self.buffered_bytes + n > self.max_buffered_bytes:
            return False
        self.buffered_bytes += n
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, self.buffered_bytes)
        return True

    def _too_large(self) -> str:
        return (f"request body is larger than {self.max_body_bytes} bytes (the proxy's "
                "RERANKER_PROXY_MAX_BODY_BYTES)")

    async def _busy(self, send: Send) -> None:
        await _send_json_error(send, 429, "the server holds too many request bodies at once "
                               "(RERANKER_PROXY_MAX_BUFFERED_BYTES); retry later", retry_after_s=1)


class _Replay:
    """The buffered body, then the client's own messages (its disconnect)."""

    def __init__(self, body: bytes, receive: Receive, client_gone: asyncio.Event) -> None:
        self._pending = [{"type": "http.request", "body": body, "more_body": False}]
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
                           retry_after_s: float | None = None,
                           extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": {"message": message,
                                 "type": _TYPES.get(status, "internal_error"),
                                 "param": None}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *extra_headers]
    retry_after = retry_after_header(retry_after_s)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of :class:`IngressRetryMiddleware` that :data:`SETTINGS`' variables
    set (unset ones keep their defaults).

    Raises:
        ConfigError: a value that is not a whole number in range, or a key variable that is
            named but empty (the message names the variable, never a key).
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, (keyword, _, _) in SETTINGS.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if keyword == "api_keys":
            out[keyword] = read_api_keys(raw, env)
            continue
        low = 1 if keyword == "attempts" else 1024
        if not raw.isdigit() or int(raw) < low:
            raise ConfigError(f"{name} must be a whole number of at least {low}, got {raw!r}")
        out[keyword] = int(raw)
    body = out.get("max_body_bytes", SETTINGS["RERANKER_PROXY_MAX_BODY_BYTES"][1])
    buffered = out.get("max_buffered_bytes", SETTINGS["RERANKER_PROXY_MAX_BUFFERED_BYTES"][1])
    assert isinstance(body, int) and isinstance(buffered, int)
    if buffered < body:
        raise ConfigError(
            f"RERANKER_PROXY_MAX_BUFFERED_BYTES ({buffered}) is below "
            f"RERANKER_PROXY_MAX_BODY_BYTES ({body}): a body at the limit could never be sent")
    return out


def proxy_middlewares() -> list[Any]:
    """The callback ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names: Starlette middlewares
    Serve wraps every node's proxy app in, configured from the environment
    (:func:`settings_from_env`)."""
    from starlette.middleware import Middleware

    return [Middleware(IngressRetryMiddleware, **settings_from_env())]
