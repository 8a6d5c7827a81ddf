"""The systems ``compare.py`` measures, each loading the same stand-in folder without a download.

Each loader returns two functions: ``(query, documents) -> raw scores``, the one that is timed,
and ``(query, documents) -> padded tokens`` of the call just made. Raw scores
are logits, so every system can be checked against the float32 reference (flashrank returns
sigmoid probabilities, turned back into logits). Padded tokens count what the system feeds its
model: read from the runner for ``reranker``, computed from each peer's own batching rule
otherwise (sentence-transformers sorts by length and pads batches of 32; fastembed pads
batches of 64 in input order; flashrank pads all documents of a request to the longest; the
Serve replica runs ``reranker``'s own batching, replayed with ``plan_batches``).

``reranker-serve-int8`` starts a local Ray (2 CPUs) and the real app of ``deployments/`` on a
free port, hosting the stand-in with the fastest-path config, and times ``POST /v1/rerank``
over HTTP (httpx, one kept-alive connection). Its scores are the sigmoid probabilities the API
returns, turned back into logits; its peak RSS is the sum over the Ray worker processes that
host the app (ingress and scorer replicas, HTTP proxy), read from each one's ``VmHWM``.

Run as a worker process: ``python benchmarks/_systems.py SYSTEM FOLDER``, reading one JSON
request per line on stdin and answering one JSON line on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Scorer = Callable[[str, Sequence[str]], np.ndarray]
PaddedTokens = Callable[[str, Sequence[str]], int]

SYSTEMS: dict[str, str] = {
    "reranker-fp32": "reranker, float32 (default settings)",
    "reranker-int8": "reranker, optimization='int8' (fastest path)",
    "reranker-hub-int8": "reranker, the Hub-style int8 file, default settings",
    "reranker-serve-int8": "reranker over HTTP through Ray Serve, optimization='int8'",
    "sentence-transformers": "sentence-transformers CrossEncoder, torch fp32, batch 32",
    "fastembed-fp32": "fastembed TextCrossEncoder, its registered fp32 file",
    "fastembed-int8": "fastembed TextCrossEncoder, the Hub-style int8 file",
    "flashrank-int8": "flashrank Ranker, the Hub-style int8 file",
}


def _padding_rule(folder: Path, batch: int | None, sort: bool) -> PaddedTokens:
    """Padded tokens of a peer that pads batches of ``batch`` (None: all) to their longest."""
    from reranker.tokenization import PairTokenizer

    tok = PairTokenizer(folder / "tokenizer.json", 512)

    def padded(query: str, docs: Sequence[str]) -> int:
        lengths = [len(row) for row in tok.encode(query, docs).ids]
        order = sorted(lengths, reverse=True) if sort else lengths
        size = batch or len(order)
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        return sum(len(c) * max(c) for c in chunks)

    return padded


def _reranker(folder: Path, options: dict[str, object]) -> tuple[Scorer, PaddedTokens]:
    from reranker import Reranker

    backend = Reranker({"type": "custom", "model_id": str(folder), **options}).backend
    return backend.score, lambda q, d: backend.model.stats.padded_tokens  # type: ignore[attr-defined]


def _serve(folder: Path, cache_dir: Path) -> tuple[Scorer, PaddedTokens]:
    import atexit
    import socket

    import httpx

    root = Path(__file__).resolve().parent.parent
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Replicas inherit this environment: they import ``deployments`` from the repository.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), path) if p)
    import ray
    from ray import serve

    from deployments.serve.app import build_app
    from reranker.onnx_model import plan_batches
    from reranker.tokenization import PairTokenizer

    config = {"type": "custom", "model_id": str(folder), "cache_dir": str(cache_dir),
              "optimization": "int8"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # A small object store: the peers hold several GB each in this same run.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024**2)
    atexit.register(ray.shutdown)
    atexit.register(serve.shutdown)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({
        "models": {"bench": config},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "custom": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 2}},
        },
    }), name="bench", route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    atexit.register(client.close)

    def score(query: str, docs: Sequence[str]) -> np.ndarray:
        reply = client.post("/v1/rerank", json={"query": query, "documents": list(docs)})
        reply.raise_for_status()
        probs = np.zeros(len(docs), dtype=np.float64)
        for item in reply.json()["results"]:
            probs[item["index"]] = item["relevance_score"]
        return _logits(probs)

    tok = PairTokenizer(folder / "tokenizer.json", 512)

    def padded(query: str, docs: Sequence[str]) -> int:
        # The replica's rule for the fused int8 graph (no mask): equal lengths, <= 512 tokens.
        lengths = [len(row) for row in tok.encode(query, docs).ids]
        return sum(len(b) * max(lengths[i] for i in b)
                   for b in plan_batches(lengths, 32, 512, max_padding=0.0))

    return score, padded


def _serve_peak_rss_mb() -> float:
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
            if not title.startswith(("ray::ServeReplica", "ray::ProxyActor")):
                continue
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except (psutil.Error, OSError):
            continue
    return total


def _logits(probs: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities back to logits, for systems that only return probabilities."""
    clipped = np.clip(probs, 1e-12, 1 - 1e-12)
    return np.log(clipped / (1 - clipped)).astype(np.float32)


def _sentence_transformers(folder: Path) -> tuple[Scorer, PaddedTokens]:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(folder), device="cpu", max_length=512)

    def score(query: str, docs: Sequence[str]) -> np.ndarray:
        raw = model.predict(
            [(query, d) for d in docs], batch_size=32, activation_fn=torch.nn.Identity()
        )
        return np.asarray(raw, dtype=np.float32)

    return score, _padding_rule(folder, 32, sort=True)


def _fastembed(folder: Path, int8: bool) -> tuple[Scorer, PaddedTokens]:
    from fastembed.common.model_description import ModelSource
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    name = "Xenova/ms-marco-MiniLM-L-6-v2"  # fastembed's own entry: onnx/model.onnx, fp32
    if int8:
        name = "reranker-bench/standin-fast-int8"
        TextCrossEncoder.add_custom_model(
            name, sources=ModelSource(hf=name), model_file="onnx/model_quantized.onnx"
        )
    model = TextCrossEncoder(name, specific_model_path=str(folder))

    def score(query: str, docs: Sequence[str]) -> np.ndarray:
        return np.array(list(model.rerank(query, docs, batch_size=64)), dtype=np.float32)

    return score, _padding_rule(folder, 64, sort=False)


def _flashrank(folder: Path) -> tuple[Scorer, PaddedTokens]:
    # flashrank looks files up in cache_dir/model_name/model_file_map[model_name] and downloads
    # only when that folder is missing; mapping the stand-in's name to its int8 file loads it.
    module = importlib.import_module("flashrank.Ranker")
    module.model_file_map[folder.name] = "onnx/model_quantized.onnx"
    ranker = module.Ranker(
        model_name=folder.name, cache_dir=str(folder.parent), max_length=512, log_level="ERROR"
    )

    def score(query: str, docs: Sequence[str]) -> np.ndarray:
        passages = [{"id": i, "text": d} for i, d in enumerate(docs)]
        probs = np.zeros(len(docs), dtype=np.float64)
        for item in ranker.rerank(module.RerankRequest(query=query, passages=passages)):
            probs[item["id"]] = item["score"]
        return _logits(probs)

    return score, _padding_rule(folder, None, sort=False)


def load(system: str, folder: Path, cache_dir: Path) -> tuple[Scorer, PaddedTokens]:
    """The scorer of ``system`` (a key of :data:`SYSTEMS`) over the stand-in ``folder``."""
    if system == "reranker-fp32":
        return _reranker(folder, {"cache_dir": str(cache_dir)})
    if system == "reranker-int8":
        return _reranker(folder, {"cache_dir": str(cache_dir), "optimization": "int8"})
    if system == "reranker-hub-int8":
        return _reranker(folder, {"cache_dir": str(cache_dir),
                                  "model_file": "onnx/model_quantized.onnx"})
    if system == "reranker-serve-int8":
        return _serve(folder, cache_dir)
    if system == "sentence-transformers":
        return _sentence_transformers(folder)
    if system in ("fastembed-fp32", "fastembed-int8"):
        return _fastembed(folder, system.endswith("int8"))
    if system == "flashrank-int8":
        return _flashrank(folder)
    raise ValueError(f"unknown system {system!r}; valid: {', '.join(SYSTEMS)}")


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(system: str, folder: Path, cache_dir: Path) -> None:
    """Answer JSON requests on stdin: ``{"query", "documents"}`` or ``{"op": "rss"}``."""
    # Libraries that print (and child processes such as Ray's, which inherit file descriptor
    # 1) must not corrupt the protocol: answers go to a copy of stdout, fd 1 joins stderr.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        started = time.perf_counter()
        scorer, padded_tokens = load(system, folder, cache_dir)
        reply: dict[str, object] = {"ready": True, "load_s": time.perf_counter() - started}
    except Exception as exc:  # reported to the coordinator, which prints why
        reply = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    if not reply["ready"]:
        return
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "rss":
            peak = _serve_peak_rss_mb() if system == "reranker-serve-int8" else _peak_rss_mb()
            out.write(json.dumps({"peak_rss_mb": peak}) + "\n")
        else:
            t0 = time.perf_counter()
            raw = scorer(msg["query"], msg["documents"])
            seconds = time.perf_counter() - t0
            padded = padded_tokens(msg["query"], msg["documents"])
            out.write(json.dumps({"seconds": seconds, "scores": raw.tolist(), "padded": padded})
                      + "\n")
        out.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    worker(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
