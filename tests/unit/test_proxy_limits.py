"""What the proxy middleware refuses before it buffers a body, and how much it ever holds.

Regression for issue 21 item 4: the middleware read up to 64 MiB of every request into memory
before any check (no key, no size, no total), so unauthenticated clients could make each proxy
hold 64 MiB per connection. Now a ``Content-Length`` over the limit is a 413 and a body without
an accepted key a 401, both before a byte is read, and the bodies one proxy holds at once stay
within ``max_buffered_bytes`` (429 beyond).

The proxy's own app is stood in for by :class:`_EagerProxy`, which reads the whole body as soon
as it is called (as Serve's proxy app does) and hands it to the real ingress app.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.serve.http_api import build_api
from deployments.serve.proxy_middleware import (
    RESEND_HEADER,
    IngressRetryMiddleware,
    proxy_middlewares,
    settings_from_env,
)
from reranker.errors import ConfigError
from tests.unit.serve_fakes import service, settings

KEY = "proxy-test-key"
MiB = 1024 * 1024


class _Client:
    """A client that sends ``size`` bytes in 1 MiB chunks, each made only when read."""

    def __init__(self, size: int, *, key: str | None = None, declare: bool = True,
                 path: str = "/v1/rerank", method: str = "POST") -> None:
        self.size = size
        self.sent = 0
        self.reads = 0
        self.headers = [(b"content-type", b"application/json")]
        if declare:
            self.headers.append((b"content-length", str(size).encode()))
        else:
            self.headers.append((b"transfer-encoding", b"chunked"))
        if key is not None:
            self.headers.append((b"authorization", f"Bearer {key}".encode()))
        self.scope = {"type": "http", "method": method, "path": path, "headers": self.headers,
                      "query_string": b""}
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.sent >= self.size and self.reads > 1:
            await asyncio.sleep(3600)  # connected, nothing more to send
        n = min(MiB, self.size - self.sent)
        self.sent += n
        await asyncio.sleep(0)  # the network: other connections get their turn
        return {"type": "http.request", "body": b"x" * n, "more_body": self.sent < self.size}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def error(self) -> dict[str, Any]:
        body = b"".join(m.get("body", b"") for m in self.messages
                        if m["type"] == "http.response.body")
        err: dict[str, Any] = json.loads(body)["error"]
        return err


class _EagerProxy:
    """Serve's proxy app: reads every message of the body at once, then runs the ingress."""

    def __init__(self, ingress: Any, hold_s: float = 0.0) -> None:
        self.ingress = ingress
        self.hold_s = hold_s
        self.calls = 0
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scopes.append(scope)
        queue = []
        while True:
            message = await receive()
            queue.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await asyncio.sleep(self.hold_s)

        async def replay() -> Any:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        await self.ingress(scope, replay, send)


def _ingress(**limits: Any) -> Any:
    return build_api(service(settings(api_keys=(KEY,), limits=limits or None)))


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    inner = _EagerProxy(_ingress())
    app = IngressRetryMiddleware(inner, max_body_bytes=2 * MiB)
    client = _Client(2 * MiB + 1, key=KEY)
    await app(client.scope, client.receive, client.send)
    assert client.status == 413 and client.reads == 0 and inner.calls == 0
    assert client.error["type"] == "request_too_large"
    assert "RERANKER_PROXY_MAX_BODY_BYTES" in client.error["message"]


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_a_body_without_an_accepted_key_is_401_before_reading(key: str | None) -> None:
    inner = _EagerProxy(_ingress())
    app = IngressRetryMiddleware(inner, api_keys=(SecretStr(KEY),))
    for declare in (True, False):
        client = _Client(MiB, key=key, declare=declare)
        await app(client.scope, client.receive, client.send)
        assert client.status == 401 and client.reads == 0 and inner.calls == 0
        assert client.error["type"] == "authentication_error"
        starts = [m for m in client.messages if m["type"] == "http.response.start"]
        assert (b"www-authenticate", b"Bearer") in starts[0]["headers"]


async def test_an_accepted_key_and_bodiless_requests_go_through() -> None:
    inner = _EagerProxy(_ingress())
    app = IngressRetryMiddleware(inner, api_keys=(SecretStr(KEY),))
    body = json.dumps({"query": "river bank", "documents": ["river", "bank"]}).encode()

    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "POST", "path": "/v1/rerank", "query_string": b"",
             "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {KEY}".encode())]}
    inbox = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Any:
        return inbox.pop(0) if inbox else await asyncio.sleep(3600)

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert len(json.loads(sent[1]["body"])["results"]) == 2
    # A GET without a key has no body to hold: the ingress decides (open /health here).
    health = _Client(0, path="/health", method="GET")
    await app(health.scope, health.receive, health.send)
    assert health.status == 200 and app.buffered_bytes == 0


async def test_many_unauthenticated_large_bodies_hold_no_memory() -> None:
    # 48 connections, 4 MiB each, no key: the old middleware read 192 MiB before the ingress
    # answered 401. Now none of it is read.
    inner = _EagerProxy(_ingress())
    app = IngressRetryMiddleware(inner, api_keys=(SecretStr(KEY),),
                                 max_buffered_bytes=8 * MiB)
    clients = [_Client(4 * MiB, declare=i % 2 == 0) for i in range(48)]
    tracemalloc.start()
    try:
        await asyncio.gather(*(app(c.scope, c.receive, c.send) for c in clients))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert {c.status for c in clients} == {401}
    assert sum(c.sent for c in clients) == 0 and inner.calls == 0
    assert peak < 2 * MiB, peak


async def test_the_bodies_held_at_once_stay_within_the_budget() -> None:
    # 24 authenticated 3 MiB uploads at once against an 8 MiB budget: at most two are held
    # (a third is answered 429 with Retry-After before it is read), whatever the concurrency.
    inner = _EagerProxy(_ingress(max_body_bytes=4 * MiB, max_inflight_body_bytes=64 * MiB),
                        hold_s=0.05)
    app = IngressRetryMiddleware(inner, api_keys=(SecretStr(KEY),), max_body_bytes=4 * MiB,
                                 max_buffered_bytes=8 * MiB)
    clients = [_Client(3 * MiB, key=KEY, declare=i % 3 != 0) for i in range(24)]
    tracemalloc.start()
    try:
        await asyncio.gather(*(app(c.scope, c.receive, c.send) for c in clients))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert app.peak_buffered_bytes <= 8 * MiB and app.buffered_bytes == 0
    refused = [c for c in clients if c.status == 429]
    served = [c for c in clients if c.status != 429]
    assert refused and served
    assert {c.status for c in served} == {400}  # read whole; "xxx..." is not JSON
    for c in refused:
        starts = [m for m in c.messages if m["type"] == "http.response.start"]
        assert (b"retry-after", b"1") in starts[0]["headers"]
        assert c.error["type"] == "rate_limit_error"
    # Each held body exists about three times over (the middleware's copy, the eager proxy's
    # chunks, the ingress's copy); 24 x 3 MiB unbounded would be 216 MiB.
    assert peak < 40 * MiB, peak


async def test_a_resend_is_marked_and_a_clients_own_mark_dropped() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def dies_twice(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen.append(list(scope["headers"]))
        if len(seen) < 3:
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    app = IngressRetryMiddleware(dies_twice, attempts=3, backoff_s=0.0)
    client = _Client(10, key=KEY)
    client.headers.append((RESEND_HEADER.encode(), b"7"))  # forged by the client
    await app(client.scope, client.receive, client.send)
    assert client.status == 200
    marks = [[v for k, v in headers if k == RESEND_HEADER.encode()] for headers in seen]
    assert marks == [[], [b"1"], [b"2"]]


def test_settings_come_from_the_environment() -> None:
    env = {"RERANKER_PROXY_MAX_BODY_BYTES": "2048", "RERANKER_PROXY_MAX_BUFFERED_BYTES": "8192",
           "RERANKER_PROXY_ATTEMPTS": "2", "RERANKER_PROXY_API_KEY_ENV": "MY_KEYS",
           "MY_KEYS": "a, b"}
    got = settings_from_env(env)
    assert {k: v for k, v in got.items() if k != "api_keys"} == {
        "max_body_bytes": 2048, "max_buffered_bytes": 8192, "attempts": 2}
    assert [k.get_secret_value() for k in got["api_keys"]] == ["a", "b"]
    assert settings_from_env({}) == {}
    with pytest.raises(ConfigError, match="RERANKER_PROXY_MAX_BUFFERED_BYTES"):
        settings_from_env({"RERANKER_PROXY_MAX_BUFFERED_BYTES": "1e9"})
    with pytest.raises(ConfigError, match="below RERANKER_PROXY_MAX_BODY_BYTES"):
        settings_from_env({"RERANKER_PROXY_MAX_BUFFERED_BYTES": "4096",
                           "RERANKER_PROXY_MAX_BODY_BYTES": "8192"})
    with pytest.raises(ConfigError, match="'MY_KEYS'"):
        settings_from_env({"RERANKER_PROXY_API_KEY_ENV": "MY_KEYS"})


def test_the_callback_passes_the_environment_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANKER_PROXY_MAX_BODY_BYTES", "4096")
    (mw,) = proxy_middlewares()
    assert mw.cls is IngressRetryMiddleware and mw.kwargs == {"max_body_bytes": 4096}
