"""Start ``reranker serve`` in a subprocess for a benchmark, find its replicas, stop it.

The replicas are found by their process titles (Ray names a Serve replica's worker
``ray::ServeReplica:APP:DEPLOYMENT``), so their memory is read from ``/proc`` with no Ray API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_model(folder: Path, *, max_length: int = 512, small: bool = False) -> str:
    """A random BERT cross-encoder (MiniLM-L6's shape, or a smaller one); returns its folder."""
    from reranker.testing.families.encoder_models import build_cross_encoder

    if not (folder / "config.json").exists():
        if small:
            build_cross_encoder(folder, hidden_size=128, num_layers=2, num_heads=4,
                                intermediate_size=256, max_position_embeddings=max_length)
        else:
            build_cross_encoder(folder, vocab_size=30522, hidden_size=384, num_layers=6,
                                num_heads=12, intermediate_size=1536,
                                max_position_embeddings=max_length)
    return str(folder)


def replica_pids() -> dict[str, int]:
    """Serve replica titles (``ServeReplica:APP:DEPLOYMENT#n``) -> pid, from ``/proc``."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::ServeReplica:"):
            title = cmd.split()[0].removeprefix("ray::")
            n = sum(1 for k in found if k.startswith(title))
            found[f"{title}#{n}"] = int(proc.name)
    return dict(sorted(found.items()))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def served(config: dict[str, Any], work: Path, *, port: int, num_cpus: int,
           timeout_s: float = 300) -> Iterator[str]:
    """``reranker serve --config`` until the block ends; yields its base URL once ready."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "app.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reranker.cli", "serve", "--config", str(cfg), "--port",
         str(port), "--num-cpus", str(num_cpus)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"reranker serve exited; see {work / 'serve.log'}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("reranker serve did not become ready")
            time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
