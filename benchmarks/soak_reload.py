"""Reload soak: models evicted and loaded again under traffic for 60 s against ``reranker serve``.

    flock /tmp/ray-tests.lock python benchmarks/soak_reload.py     # 60 s, 8 clients

One ``custom`` replica keeps at most 2 models loaded (``max_models_per_replica: 2``) while 8
clients send 10-document requests to 6 models picked at random: three ONNX exports, two built
from safetensors (graph built once, then the build cache) and one Qwen3 yes/no decoder (tiny
synthetic checkpoints from ``reranker.testing.families``, each with its own weights). Nearly
every request that lands on a model not loaded makes Serve's multiplex LRU evict one and load
it: a reload under traffic, with runs still in flight on the evicted one.

Reports requests, statuses, non-4xx errors (0 expected: a 5xx or a transport error is a
failure), p50/p95 of the 200s, the loads the replica logged, and the replica's RSS at the start,
every 10 s and at the end (flat within 10% expected; "start" is after a 15 s warm-up with the
same mix, so every model has been built and ONNX Runtime's arenas have met their run shapes).
Not part of the test suite.
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

from benchmarks._served import replica_pids, rss_mb, served

WORDS = ("river bank money loan interest water fish boat capital city market bridge "
         "harbour tax rate stone field").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def build_models(root: Path) -> dict[str, dict[str, Any]]:
    """Six distinct tiny models: name -> its ``custom`` config."""
    from reranker.testing.families import qwen3
    from reranker.testing.families.encoder_models import build_cross_encoder

    small = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128}
    models: dict[str, dict[str, Any]] = {}
    for i in range(3):
        folder = root / f"onnx{i}"
        if not (folder / "config.json").exists():
            build_cross_encoder(folder, seed=10 + i, **small)
        models[f"onnx{i}"] = {"type": "custom", "model_id": str(folder)}
    for i, arch in enumerate(("bert", "xlmr")):
        folder = root / f"st{i}"
        if not (folder / "config.json").exists():
            build_cross_encoder(folder, arch=arch, seed=20 + i, **small)
        models[f"st{i}"] = {"type": "custom", "model_id": str(folder),
                            "model_format": "safetensors"}
    folder = root / "qwen3"
    if not (folder / "config.json").exists():
        qwen3.make_checkpoint(folder)
    models["qwen3"] = {"type": "custom", "model_id": str(folder), "max_length": 256}
    return models


async def _soak(url: str, models: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bad: list[str] = []
    stop = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=120) as ac:
            while time.monotonic() < stop:
                model = rng.choice(models)
                body = {"model": model, "query": _text(rng, 5),
                        "documents": [_text(rng, 40) for _ in range(10)]}
                started = time.monotonic()
                try:
                    r = await ac.post("/v1/rerank", json=body)
                except httpx.HTTPError as exc:
                    statuses[f"{model} {type(exc).__name__}"] += 1
                    bad.append(f"{model}: {exc!r}")
                    continue
                statuses[f"{model} {r.status_code}"] += 1
                if r.status_code == 200:
                    latencies.append(time.monotonic() - started)
                elif r.status_code >= 500 or "error" not in r.json():
                    bad.append(f"{model}: {r.status_code} {r.text[:200]}")

    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"latencies": latencies, "statuses": statuses, "bad": bad}


def _loads(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if "loaded model" in line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=float, default=15)
    p.add_argument("--work", type=Path, default=Path("/tmp/reranker-bench/soak-reload"))
    p.add_argument("--port", type=int, default=8733)
    p.add_argument("--models", default="", help="comma-separated subset of the six models")
    args = p.parse_args()
    models = build_models(args.work / "models")
    if args.models:
        models = {name: models[name] for name in args.models.split(",")}
    names = list(models)
    app = {
        "models": models, "default_model": names[0], "warm_models": [names[0]],
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "custom": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1},
                       "max_models_per_replica": 2},
        },
    }
    work = args.work / "serve"
    with served(app, work, port=args.port, num_cpus=2) as url:
        asyncio.run(_soak(url, names, args.clients, args.warmup))
        pids = {k: v for k, v in replica_pids().items() if "CustomScorer" in k}
        start_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        loads_before = _loads(work / "serve.log")
        samples: list[dict[str, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(10):
                samples.append({name: rss_mb(pid) for name, pid in pids.items()})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        out = asyncio.run(_soak(url, names, args.clients, args.seconds))
        elapsed = time.monotonic() - began
        done.set()
        sampler.join()
        end_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        ready = httpx.get(f"{url}/ready", timeout=10).status_code
        time.sleep(2)  # the replica's last log lines reach the driver's log
        loads = _loads(work / "serve.log") - loads_before
    lat = out["latencies"]
    total = sum(out["statuses"].values())
    print(f"reload soak: {args.clients} clients, {len(names)} models, 2 loaded at a time, "
          f"{elapsed:.0f} s, {total} requests ({total / elapsed:.1f}/s), {loads} model loads "
          f"logged, /ready after: {ready}")
    print("| requests | 200s | 4xx | non-4xx errors | p50 s (200s) | p95 s (200s) | loads |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    n4xx = sum(n for k, n in out["statuses"].items() if k.split()[-1].startswith("4"))
    p95 = statistics.quantiles(lat, n=20)[18] if len(lat) > 1 else float("nan")
    print(f"| {total} | {len(lat)} | {n4xx} | {len(out['bad'])} | "
          f"{statistics.median(lat):.2f} | {p95:.2f} | {loads} |")
    print()
    print("| replica | RSS start MB | every 10 s | RSS end MB | change |")
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
