"""Two 1-CPU replicas on 2 cores: ONNX threads from every host core (before) or from each
replica's reservation (after). Prints pairs/s and p95 latency of each.

    flock /tmp/ray-tests.lock python benchmarks/replica_cpus.py --seconds 30

Before: ``threads`` set to the host's core count, which is what a replica used by default when
it sized itself from the host. After: ``threads`` unset, so it follows ``num_cpus: 1``. A
synthetic model of MiniLM-L6's shape, 8 clients sending 32-document requests. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._served import served, synthetic_model


def _request(rng: random.Random, n_docs: int) -> dict[str, Any]:
    from reranker.testing.wordlist import ENGLISH_WORDS

    words = list(ENGLISH_WORDS)
    return {"query": " ".join(rng.choice(words) for _ in range(8)),
            "documents": [" ".join(rng.choice(words) for _ in range(rng.randint(40, 80)))
                          for _ in range(n_docs)]}


async def _load(url: str, clients: int, seconds: float, n_docs: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=120) as ac:
            while time.monotonic() < stop:
                started = time.monotonic()
                r = await ac.post("/v1/rerank", json=_request(rng, n_docs))
                if r.status_code == 200:
                    latencies.append(time.monotonic() - started)
                else:
                    errors += 1

    began = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - began
    return {"requests": len(latencies), "errors": errors,
            "pairs_per_s": len(latencies) * n_docs / elapsed,
            "p50_s": statistics.median(latencies),
            "p95_s": statistics.quantiles(latencies, n=20)[18]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--documents", type=int, default=32)
    p.add_argument("--work", type=Path, default=Path("/tmp/reranker-bench/replica_cpus"))
    p.add_argument("--port", type=int, default=8731)
    p.add_argument("--after-first", action="store_true",
                   help="measure 'after' first (to see the order's effect on a busy machine)")
    args = p.parse_args()
    model = synthetic_model(args.work / "model")
    host_cores = len(os.sched_getaffinity(0))
    rows = []
    modes = [("before: threads = host cores", host_cores), ("after: threads = num_cpus", None)]
    for label, threads in modes[::-1] if args.after_first else modes:
        cfg: dict[str, Any] = {"type": "custom", "model_id": model}
        if threads is not None:
            cfg["threads"] = threads
        app = {"models": {"m": cfg}, "chunk_size": 256, "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "custom": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 1}}}}
        with served(app, args.work / "serve", port=args.port, num_cpus=2) as url:
            asyncio.run(_load(url, 2, 5, args.documents))  # warm up
            rows.append((label, asyncio.run(
                _load(url, args.clients, args.seconds, args.documents))))
    from benchmarks._common import cpu_line

    print(cpu_line())
    print(f"two 1-CPU replicas, {host_cores} host cores, {args.clients} clients, "
          f"{args.documents} documents a request, {args.seconds:g} s each")
    print("| threads | requests | pairs/s | p50 s | p95 s | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['requests']:.0f} | {r['pairs_per_s']:.0f} | {r['p50_s']:.2f} | "
              f"{r['p95_s']:.2f} | {r['errors']:.0f} |")


if __name__ == "__main__":
    main()
