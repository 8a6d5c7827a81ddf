"""Throughput of the HTTP endpoint against the in-process library, on the same model.

Measures pairs/s (documents scored per second) at 1, 4 and 16 concurrent clients sending
100-document requests, in this process (``Reranker.rerank`` from N threads) and through the Ray
Serve app over HTTP (``POST /v1/rerank`` from N concurrent clients). The two are measured in
alternating rounds while the app is up, so both see the same machine (the app idles while the
library runs); each figure is the median over rounds. Prints one table; the ratio columns
compare HTTP with in-process at one caller and at the same concurrency.

    python benchmarks/serve_throughput.py                       # the ``fast`` preset
    python benchmarks/serve_throughput.py --model ./my-model    # a local folder
    python benchmarks/serve_throughput.py --synthetic-minilm    # offline: a random model of
                                                                # MiniLM-L6's size and shape,
                                                                # run as ``fast`` runs by
                                                                # default (optimization int8)

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _documents(n: int, seed: int) -> tuple[str, list[str]]:
    from reranker.testing.wordlist import ENGLISH_WORDS

    words = list(ENGLISH_WORDS)
    rng = random.Random(seed)
    query = " ".join(rng.choice(words) for _ in range(8))
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(40, 80))) for _ in range(n)]
    return query, docs


def _synthetic_minilm(folder: Path) -> dict[str, Any]:
    from reranker.testing.families.encoder_models import build_cross_encoder

    build_cross_encoder(folder, arch="bert", vocab_size=30522, hidden_size=384, num_layers=6,
                        num_heads=12, intermediate_size=1536, max_position_embeddings=512,
                        quantize=False)
    # The ``fast`` preset's defaults: the float32 export, fused and int8-quantized at first use.
    return {"type": "custom", "model_id": str(folder), "optimization": "int8"}


def _bench_in_process(rr: Any, clients: int, duration_s: float, n_docs: int
                      ) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def worker(seed: int) -> None:
        q, d = _documents(n_docs, seed)
        while time.monotonic() < deadline:
            started = time.monotonic()
            rr.rerank(q, d)
            with lock:
                latencies.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i + 1,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) * n_docs / (time.monotonic() - started), latencies


async def _bench_http(url: str, clients: int, duration_s: float, n_docs: int
                      ) -> tuple[float, list[float], int]:
    import httpx

    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration_s

    async def worker(client: httpx.AsyncClient, seed: int) -> None:
        nonlocal failures
        q, d = _documents(n_docs, seed)
        body = json.dumps({"query": q, "documents": d}).encode()
        while time.monotonic() < deadline:
            started = time.monotonic()
            r = await client.post("/v1/rerank", content=body,
                                  headers={"content-type": "application/json"})
            if r.status_code != 200:
                failures += 1
                continue
            latencies.append(time.monotonic() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await client.post("/v1/rerank", json={"query": "warm up", "documents": ["warm up"]})
        started = time.monotonic()
        await asyncio.gather(*(worker(client, i + 1) for i in range(clients)))
        elapsed = time.monotonic() - started
    return len(latencies) * n_docs / elapsed, latencies, failures


def _start_server(config: dict[str, Any], args: argparse.Namespace) -> str:
    import ray
    from ray import serve

    from deployments.serve.app import build_app

    variant = config["type"]
    cpus = args.num_cpus or os.cpu_count() or 2
    app_args = {
        "models": {"bench": config},
        "chunk_size": args.chunk_size,
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            variant: {
                "num_replicas": args.replicas,
                "ray_actor_options": {"num_cpus": max(cpus // args.replicas, 1)},
                "max_ongoing_requests": max(args.max_batch_size, 32),
                "batching": {"max_batch_size": args.max_batch_size,
                             "batch_wait_timeout_s": args.batch_wait_s},
            },
        },
    }
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(build_app(app_args), name="bench", route_prefix="/")
    return f"http://127.0.0.1:{args.port}"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="shorthand, folder or JSON config")
    parser.add_argument("--synthetic-minilm", action="store_true",
                        help="build a random MiniLM-L6-sized model (offline)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-s", type=float, default=0.005)
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_minilm:
            config: Any = _synthetic_minilm(Path(tmp) / "minilm")
        elif args.model.strip().startswith("{"):
            config = json.loads(args.model)
        else:
            config = args.model
        from reranker import Reranker, parse_backend_config

        config = parse_backend_config(config).model_dump()
        url = _start_server(config, args)
        rr = Reranker(config)
        rr.rerank(*_documents(args.documents, 0))  # warm-up
        local: dict[int, tuple[float, list[float]]] = {}
        remote: dict[int, tuple[float, list[float], int]] = {}
        try:
            for c in levels:
                lp: list[float] = []
                hp: list[float] = []
                lat: list[float] = []
                failures = 0
                for _ in range(args.rounds):
                    pairs_s, _ = _bench_in_process(rr, c, args.duration, args.documents)
                    lp.append(pairs_s)
                    h, h_lat, h_fail = asyncio.run(
                        _bench_http(url, c, args.duration, args.documents))
                    hp.append(h)
                    lat += h_lat
                    failures += h_fail
                local[c] = (statistics.median(lp), [])
                remote[c] = (statistics.median(hp), lat, failures)
                print(f"clients={c:>3}  in-process {local[c][0]:9.1f}  http {remote[c][0]:9.1f}"
                      " pairs/s", file=sys.stderr)
        finally:
            import ray
            from ray import serve

            rr.close()
            serve.shutdown()
            ray.shutdown()

    base = local[min(levels)][0]
    from benchmarks._common import cpu_line

    print(f"\n{cpu_line()}")
    print(f"model: {config.get('name') or config.get('model_id')}  documents/request: "
          f"{args.documents}  cpus: {args.num_cpus or os.cpu_count()}  "
          f"replicas: {args.replicas}  max_batch_size: {args.max_batch_size}")
    head = (f"{'clients':>7} | {'in-proc pairs/s':>15} | {'http pairs/s':>12} | "
            f"{'http/in-proc(1)':>15} | {'http/in-proc(N)':>15} | {'http p50 ms':>11} | "
            f"{'http p95 ms':>11} | {'errors':>6}")
    print(head)
    print("-" * len(head))
    for c in levels:
        lp, _ = local[c]
        hp, lat, failures = remote[c]
        print(f"{c:>7} | {lp:>15.1f} | {hp:>12.1f} | {hp / base:>15.2f} | {hp / lp:>15.2f} | "
              f"{_pct(lat, 50) * 1000:>11.1f} | {_pct(lat, 95) * 1000:>11.1f} | {failures:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
