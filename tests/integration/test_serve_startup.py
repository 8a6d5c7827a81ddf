"""``reranker serve`` and ``reranker batch`` fail early and in one line, and stop cleanly.

Each test runs the real console script. A bad model that can be caught before Ray starts must
be: exit status 2, one ``error:`` line, in seconds, and no Ray session created (``RAY_TMPDIR``
points at a folder that must stay absent). A model that only fails on Ray (an unreadable
tokenizer) ends with its root cause as the last line, exit status 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = str(Path(sys.executable).parent / "reranker")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_TMPDIR": str(tmp_path / "ray"), **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 120
         ) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, time.monotonic() - started


def _assert_one_line_before_ray(proc: subprocess.CompletedProcess[str], seconds: float,
                                tmp_path: Path) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    assert seconds < 30
    assert not (tmp_path / "ray").exists()  # Ray was never started
    return lines[0]


@pytest.fixture
def no_tokenizer(bert_model: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(bert_model, folder)
    (folder / "tokenizer.json").unlink()
    return folder


def test_serve_missing_folder_fails_before_ray(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    proc, seconds = _run(["serve", "--model", str(missing), "--port", "1"], _env(tmp_path))
    line = _assert_one_line_before_ray(proc, seconds, tmp_path)
    assert f"local model folder {str(missing)!r} does not exist" in line


def test_serve_folder_without_tokenizer_fails_before_ray(no_tokenizer: Path,
                                                         tmp_path: Path) -> None:
    proc, seconds = _run(["serve", "--model", str(no_tokenizer)], _env(tmp_path))
    line = _assert_one_line_before_ray(proc, seconds, tmp_path)
    assert line.endswith("is missing tokenizer.json") and str(no_tokenizer) in line


def test_serve_offline_default_preset_not_cached_fails_before_ray(tmp_path: Path) -> None:
    env = _env(tmp_path, HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    proc, seconds = _run(["serve"], env)
    line = _assert_one_line_before_ray(proc, seconds, tmp_path)
    assert "HF_HUB_OFFLINE is set" in line
    assert "reranker download Xenova/ms-marco-MiniLM-L-6-v2" in line


def test_serve_missing_config_file_is_one_line(tmp_path: Path) -> None:
    proc, seconds = _run(["serve", "--config", str(tmp_path / "none.yaml")], _env(tmp_path))
    line = _assert_one_line_before_ray(proc, seconds, tmp_path)
    assert line == f"error: --config {str(tmp_path / 'none.yaml')!r}: no such file"


def test_batch_missing_folder_fails_before_ray(tmp_path: Path) -> None:
    cands = tmp_path / "c.jsonl"
    cands.write_text(json.dumps({"query_id": "q", "query": "x", "documents": ["a"]}) + "\n")
    proc, seconds = _run(["batch", "-m", str(tmp_path / "nowhere"), "--candidates", str(cands),
                          "-o", str(tmp_path / "out")], _env(tmp_path))
    line = _assert_one_line_before_ray(proc, seconds, tmp_path)
    assert "does not exist" in line


def _unreadable_tokenizer(bert_model: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "bad-tokenizer"
    shutil.copytree(bert_model, folder)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def test_serve_deployment_failure_is_its_root_cause(bert_model: Path, tmp_path: Path) -> None:
    # Files are all there, so only loading the tokenizer on a replica finds the problem.
    folder = _unreadable_tokenizer(bert_model, tmp_path)
    env = _env(tmp_path)
    env.pop("RAY_TMPDIR")  # Ray starts here: keep its socket paths short
    proc, _ = _run(["serve", "--model", str(folder), "--port", "0", "--num-cpus", "2",
                    "--replicas", "1"], env, timeout=240)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the app did not start: model 'default' cannot be loaded: "
                           "cannot read tokenizer "), last
    assert str(folder / "tokenizer.json") in last
    assert "RuntimeError: Deploying application" not in proc.stderr
    assert "graceful_shutdown failed" not in proc.stderr


def test_batch_actor_failure_is_its_root_cause(bert_model: Path, tmp_path: Path) -> None:
    folder = _unreadable_tokenizer(bert_model, tmp_path)
    cands = tmp_path / "c.jsonl"
    cands.write_text(json.dumps({"query_id": "q", "query": "x", "documents": ["a", "b"]}) + "\n")
    env = _env(tmp_path)
    env.pop("RAY_TMPDIR")
    proc, _ = _run(["batch", "-m", str(folder), "--candidates", str(cands), "-o",
                    str(tmp_path / "out"), "--num-cpus", "2"], env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: batch job failed after 0 of 1 shards;"), last
    assert last.endswith(f"cannot read tokenizer {folder / 'tokenizer.json'}: Model missing. "
                         "at line 1 column 18"), last


def test_sigterm_to_the_whole_process_group_stops_promptly(bert_model: Path,
                                                           tmp_path: Path) -> None:
    # systemd and a terminal's Ctrl-C signal every process of the group, Ray's own included;
    # the stop then waited on a dead controller (30 s in serve.shutdown, 25 s in a drain).
    import signal
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path)
    env.pop("RAY_TMPDIR")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([SCRIPT, "serve", "--model", str(bert_model), "--port", str(port),
                                 "--num-cpus", "2", "--replicas", "1"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            else:
                pytest.fail("serve did not become ready:\n" + log.read_text())
            os.killpg(proc.pid, signal.SIGTERM)
            stopping = time.monotonic()
            proc.wait(timeout=60)
            stopped_in = time.monotonic() - stopping
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "graceful_shutdown failed" not in output and "Traceback" not in output
    assert stopped_in < 15, f"a group SIGTERM took {stopped_in:.1f}s"
