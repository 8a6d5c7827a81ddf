"""One side of ``benchmarks/regress.py``: one hot path of whichever ``reranker`` is importable.

Run as ``python benchmarks/_regress_worker.py PATH FOLDER CACHE`` with ``PYTHONPATH`` naming
the tree to measure (the current one, or a ``git archive`` of a ref). It touches no
``sys.path`` and imports only what every tree since 2026-11 has (``reranker.Reranker.rerank``, the
Serve app builder), so an old tree runs its own code. It answers one JSON line per request
line on stdin: ``{"seconds", "cpu_s", "scores"}``; the first line says ``ready``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Scorer = Callable[[str, Sequence[str]], Any]


def _local(folder: Path, options: dict[str, Any]) -> Scorer:
    from reranker import Reranker

    model = Reranker({"type": "custom", "model_id": str(folder), **options})

    def score(query: str, documents: Sequence[str]) -> list[float]:
        scores = [0.0] * len(documents)
        for result in model.rerank(query, documents, raw_scores=True, return_documents=False):
            scores[result.index] = result.score
        return scores

    return score


def _serve(folder: Path, cache: Path) -> Scorer:
    import atexit
    import socket

    import httpx
    import ray
    from ray import serve

    try:
        from deployments.serve.app import build_app
    except ImportError:  # trees before the serve/batch split
        from deployments.app import build_app  # type: ignore[no-redef]

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 1024**2, address="local")
    atexit.register(ray.shutdown)
    atexit.register(serve.shutdown)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = {"type": "custom", "model_id": str(folder), "cache_dir": str(cache),
              "optimization": "int8"}
    serve.run(build_app({
        "models": {"bench": config},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "custom": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 2}},
        },
    }), name="bench", route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    atexit.register(client.close)

    def score(query: str, documents: Sequence[str]) -> list[float]:
        reply = client.post("/v1/rerank", json={"query": query, "documents": list(documents)})
        reply.raise_for_status()
        probs = [0.0] * len(documents)
        for item in reply.json()["results"]:
            probs[item["index"]] = item["relevance_score"]
        return probs

    return score


def load(path: str, folder: Path, cache: Path) -> Scorer:
    """The scorer of hot path ``path`` (see ``regress.PATHS``) over the model ``folder``."""
    if path in ("float32", "decoder"):
        return _local(folder, {"cache_dir": str(cache)})
    if path == "int8":
        return _local(folder, {"cache_dir": str(cache), "optimization": "int8"})
    if path == "hub-int8":
        return _local(folder, {"cache_dir": str(cache),
                               "model_file": "onnx/model_quantized.onnx"})
    if path == "serve":
        return _serve(folder, cache)
    raise ValueError(f"unknown path {path!r}")


def main(path: str, folder: Path, cache: Path) -> None:
    # Libraries that print must not corrupt the protocol: answers go to a copy of stdout.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import reranker

        scorer = load(path, folder, cache)
        hello: dict[str, Any] = {"ready": True, "tree": str(Path(reranker.__file__).parent.parent)}
    except Exception as exc:  # reported by the coordinator, which skips this path
        hello = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(hello) + "\n")
    out.flush()
    if not hello["ready"]:
        return
    for line in sys.stdin:
        msg = json.loads(line)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        raw = scorer(msg["query"], msg["documents"])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        scores = np.asarray(raw, dtype=np.float64).tolist()
        out.write(json.dumps({"seconds": wall, "cpu_s": cpu, "scores": scores}) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
