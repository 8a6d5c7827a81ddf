"""``reranker serve``, the README's run command, as a real process: up, ranked, stopped.

It starts its own Ray in the child process (the command's whole point), on free ports, and is
stopped with SIGTERM; the test then checks the process exited cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reranker import Reranker
from reranker.testing.textsamples import DOCUMENTS, QUERY

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_reranker_serve_brings_up_the_endpoint(bert_model: Path, tmp_path: Path) -> None:
    port = _free_port()
    script = Path(sys.executable).parent / "reranker"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(script), "serve", "--model", str(bert_model), "--name", "tiny", "--port", str(port),
         "--num-cpus", "2", "--replicas", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("serve did not become ready:\n" + (tmp_path / "serve.log").read_text())
        resp = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS,
                                                    "top_n": 3}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        expected = Reranker(str(bert_model)).rerank(QUERY, DOCUMENTS, top_k=3)
        assert [r["index"] for r in body["results"]] == [r.index for r in expected]
        for got, exp in zip(body["results"], expected, strict=True):
            assert got["relevance_score"] == pytest.approx(exp.score, abs=1e-5)
        models = httpx.get(f"{url}/v1/models", timeout=10).json()
        assert "tiny" in str(models)
    finally:
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stopped_in = time.monotonic() - stopping
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert proc.returncode == 0, output
    # serve.shutdown() logged this on every stop (the controller killing its own call) and
    # could wait 30 s for the controller; deleting the app and stopping Ray does neither.
    assert "graceful_shutdown failed" not in output
    assert "Traceback" not in output
    assert stopped_in < 20, f"SIGTERM took {stopped_in:.1f}s"
