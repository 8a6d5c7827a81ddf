"""Soak: 60 s at 16 clients mixing normal, long and hostile requests against ``reranker serve``.

    flock /tmp/ray-tests.lock python benchmarks/soak.py            # 60 s, 16 clients

Each client picks, per request: normal (10 short documents, 50%), long (a 10,000-character query
with 100,000-character documents, or 24 documents cut into many windows, 20%), hostile (bad
types, an unknown model, a body over the limit, a request over the token budget, a client that
hangs up mid-request: 30%). Reports requests, statuses, non-4xx errors (0 expected: 5xx and
transport errors other than the deliberate hang-ups), p50/p95 of the 200s, and each replica's
RSS at the start and the end (flat within 10% expected), with samples every 15 s. "Start" is
after a 15 s warm-up with the same mix: ONNX Runtime's memory arena grows once to the largest
run shape it meets and keeps it, which is not a leak. A synthetic BERT (2 layers, 128 wide,
512-token window) keeps the machine's CPUs for the load. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks._served import replica_pids, rss_mb, served, synthetic_model

BODY_LIMIT = 2 * 1024 * 1024
WORDS = ("river bank money loan interest water fish boat capital city market bridge "
         "harbour tax rate stone field").split()


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:chars]


def _pick(rng: random.Random) -> tuple[str, dict[str, Any] | bytes, float]:
    """(kind, body, client timeout)."""
    roll = rng.random()
    if roll < 0.5:
        return "normal", {"query": _text(rng, 40),
                          "documents": [_text(rng, 300) for _ in range(10)]}, 120
    if roll < 0.6:
        return "long", {"query": _text(rng, 10_000),
                        "documents": [_text(rng, 100_000) for _ in range(2)]}, 120
    if roll < 0.7:
        return "long_chunked", {"model": "chunked", "query": _text(rng, 40),
                                "documents": [_text(rng, 3_000) for _ in range(6)]}, 120
    hostile = rng.choice(["bad_types", "unknown_model", "body_over", "tokens_over", "hang_up"])
    if hostile == "bad_types":
        return hostile, {"query": "q", "documents": ["a"], "top_n": "3"}, 120
    if hostile == "unknown_model":
        return hostile, {"model": "nope", "query": "q", "documents": ["a"]}, 120
    if hostile == "body_over":
        return hostile, b'{"query": "q", "documents": ["' + b"x" * BODY_LIMIT + b'"]}', 120
    if hostile == "tokens_over":
        return hostile, {"model": "chunked", "query": _text(rng, 40),
                         "documents": [_text(rng, 50_000) for _ in range(8)]}, 120
    return hostile, {"query": _text(rng, 10_000),
                     "documents": [_text(rng, 100_000) for _ in range(4)]}, 0.2


async def _soak(url: str, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bad: list[str] = []
    stop = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url) as ac:
            while time.monotonic() < stop:
                kind, body, timeout = _pick(rng)
                started = time.monotonic()
                try:
                    if isinstance(body, bytes):
                        r = await ac.post("/v1/rerank", content=body, timeout=timeout,
                                          headers={"content-type": "application/json"})
                    else:
                        r = await ac.post("/v1/rerank", json=body, timeout=timeout)
                except httpx.TimeoutException:
                    statuses[f"{kind} hung up"] += 1
                    if kind != "hang_up":
                        bad.append(f"{kind}: client timeout")
                    continue
                except httpx.HTTPError as exc:
                    statuses[f"{kind} {type(exc).__name__}"] += 1
                    bad.append(f"{kind}: {exc!r}")
                    continue
                statuses[f"{kind} {r.status_code}"] += 1
                if r.status_code == 200:
                    latencies.append(time.monotonic() - started)
                elif r.status_code >= 500 or "error" not in r.json():
                    bad.append(f"{kind}: {r.status_code} {r.text[:200]}")

    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"latencies": latencies, "statuses": statuses, "bad": bad}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--warmup", type=float, default=15)
    p.add_argument("--work", type=Path, default=Path("/tmp/reranker-bench/soak"))
    p.add_argument("--port", type=int, default=8732)
    args = p.parse_args()
    model = synthetic_model(args.work / "model", small=True)
    app = {
        "models": {"tiny": {"type": "custom", "model_id": model},
                   "chunked": {"type": "custom", "model_id": model, "long_documents": "chunk"}},
        "chunk_size": 16,
        "limits": {"max_body_bytes": BODY_LIMIT, "max_request_tokens": 16_384},
        "deployments": {"ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
                        "custom": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 1}}},
    }
    with served(app, args.work / "serve", port=args.port, num_cpus=2) as url:
        # Warm every replica and model once, then take the starting RSS.
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(8):
                for m in ("tiny", "chunked"):
                    c.post("/v1/rerank", json={"model": m, "query": "q", "documents": ["a b"]})
        asyncio.run(_soak(url, args.clients, args.warmup))
        pids = replica_pids()
        start_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        samples: list[dict[str, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(15):
                samples.append({name: rss_mb(pid) for name, pid in pids.items()})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        out = asyncio.run(_soak(url, args.clients, args.seconds))
        elapsed = time.monotonic() - began
        done.set()
        sampler.join()
        end_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        ready = httpx.get(f"{url}/ready", timeout=10).status_code
    lat = out["latencies"]
    total = sum(out["statuses"].values())
    from benchmarks._common import cpu_line

    print(cpu_line())
    print(f"soak: {args.clients} clients, {elapsed:.0f} s, {total} requests "
          f"({total / elapsed:.1f}/s), /ready after: {ready}")
    print("| requests | 200s | 4xx | non-4xx errors | p50 s (200s) | p95 s (200s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    n4xx = sum(n for k, n in out["statuses"].items() if k.split()[-1].startswith("4"))
    print(f"| {total} | {len(lat)} | {n4xx} | {len(out['bad'])} | "
          f"{statistics.median(lat):.2f} | {statistics.quantiles(lat, n=20)[18]:.2f} |")
    print()
    print("| replica | RSS start MB | every 15 s | RSS end MB | change |")
    print("|---|---:|---|---:|---:|")
    for name in pids:
        a, b = start_rss[name], end_rss[name]
        trail = ", ".join(f"{s[name]:.0f}" for s in samples)
        print(f"| {name} | {a:.0f} | {trail} | {b:.0f} | {100 * (b - a) / a:+.1f}% |")
    print()
    print("statuses:", dict(sorted(out["statuses"].items())))
    for line in out["bad"][:20]:
        print("non-4xx:", line)


if __name__ == "__main__":
    main()
