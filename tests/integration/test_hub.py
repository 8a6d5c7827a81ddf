"""reranker.hub against the loopback Hub stand-in: first use, cache hits, offline, failures."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from reranker.errors import DownloadError, ModelNotFoundError
from reranker.hub import fetch_model_files
from tests.integration.hub_standin import HubStandin

pytestmark = pytest.mark.integration

REPO = "acme/tiny-reranker"
ROOT = Path(__file__).resolve().parents[2]


def _weight(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((64, 1)).astype(np.float32)


def _onnx_files(tmp: Path, *, seed: int, external: bool) -> dict[str, bytes]:
    """A one-MatMul ONNX graph as repo files; with external=True its weight is in a data file."""
    weight = _weight(seed)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder = tmp / f"onnx-{seed}-{external}"
    folder.mkdir()
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=external,
        location="model.onnx_data",
        size_threshold=0,
    )
    return {f"onnx/{p.name}": p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("repo")
    files = _onnx_files(tmp, seed=1, external=True)
    quantized = _onnx_files(tmp, seed=2, external=False)["onnx/model.onnx"]
    return {
        **files,
        "onnx/model_quantized.onnx": quantized,
        "tokenizer.json": b'{"version": "1.0"}',
        "config.json": b'{"model_type": "bert"}',
        "README.md": b"# tiny\n",
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_no_partial_files(cache: Path) -> None:
    assert not [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]


def test_first_use_downloads_only_the_requested_files(
    hub: HubStandin, hub_cache: Path, repo_files: dict[str, bytes]
) -> None:
    commit = hub.add_repo(REPO, repo_files)
    folder = fetch_model_files(REPO, files=["onnx/model_quantized.onnx", "tokenizer.json"])

    assert folder == hub_cache / "models--acme--tiny-reranker" / "snapshots" / commit
    for name in ("onnx/model_quantized.onnx", "tokenizer.json", "config.json"):
        assert (folder / name).read_bytes() == repo_files[name]
    assert not (folder / "tokenizer_config.json").exists()  # optional, absent upstream: skipped
    for name in ("onnx/model.onnx", "onnx/model.onnx_data", "README.md"):
        assert hub.count("GET", REPO, name) == 0
        assert not (folder / name).exists()
    assert hub.count("GET", REPO, "onnx/model_quantized.onnx", kind="cdn") == 1  # LFS redirect


def test_second_use_is_a_cache_hit(hub: HubStandin, repo_files: dict[str, bytes]) -> None:
    hub.add_repo(REPO, repo_files)
    files = ["onnx/model.onnx", "tokenizer.json"]
    first = fetch_model_files(REPO, files=files)
    hub.clear_log()

    assert fetch_model_files(REPO, files=files) == first
    assert hub.count("GET") == 0
    # One HEAD resolves the branch; the rest is pinned to that commit and already on disk,
    # including the optional files known to be absent.
    assert [(r.method, r.path) for r in hub.requests] == [("HEAD", "onnx/model.onnx")]


def test_pinned_revision(hub: HubStandin, repo_files: dict[str, bytes]) -> None:
    old = hub.add_repo(REPO, {**repo_files, "tokenizer.json": b'{"v": 1}'}, revision="0" * 40)
    tag = hub.add_repo(REPO, {**repo_files, "tokenizer.json": b'{"v": 2}'}, revision="v2")
    hub.add_repo(REPO, {**repo_files, "tokenizer.json": b'{"v": 3}'})

    for revision, version in ((old, 1), ("v2", 2), (None, 3)):
        folder = fetch_model_files(REPO, files=["tokenizer.json"], revision=revision)
        assert (folder / "tokenizer.json").read_bytes() == b'{"v": %d}' % version
    assert fetch_model_files(REPO, files=["tokenizer.json"], revision="v2").name == tag

    hub.clear_log()
    folder = fetch_model_files(REPO, files=["tokenizer.json"], revision=old)
    assert folder.name == old
    assert hub.requests == []  # a cached commit needs no request at all


def test_moved_branch_gives_the_new_commit(hub: HubStandin, repo_files: dict[str, bytes]) -> None:
    first = hub.add_repo(REPO, repo_files)
    assert fetch_model_files(REPO, files=["tokenizer.json"]).name == first
    second = hub.add_repo(REPO, {**repo_files, "tokenizer.json": b"{}"})
    folder = fetch_model_files(REPO, files=["tokenizer.json"])
    assert folder.name == second and (folder / "tokenizer.json").read_bytes() == b"{}"


@pytest.mark.parametrize("list_data_file", [False, True])
def test_external_data_comes_with_its_model(
    hub: HubStandin, repo_files: dict[str, bytes], list_data_file: bool
) -> None:
    hub.add_repo(REPO, repo_files)
    files = ["onnx/model.onnx", "tokenizer.json"]
    if list_data_file:
        files.append("onnx/model.onnx_data")
    folder = fetch_model_files(REPO, files=files)

    data = folder / "onnx" / "model.onnx_data"
    assert data.read_bytes() == repo_files["onnx/model.onnx_data"]
    assert hub.count("GET", REPO, "onnx/model.onnx_data") == 1
    # onnx.load refuses external data behind a symlink (the hub cache layout); ORT follows it.
    session = ort.InferenceSession(str(folder / "onnx" / "model.onnx"))
    x = np.ones((1, 64), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x @ _weight(seed=1), rtol=1e-6)


def test_offline_with_a_cached_model_makes_no_request(
    hub: HubStandin, repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo(REPO, repo_files)
    files = ["onnx/model.onnx", "tokenizer.json"]
    online = fetch_model_files(REPO, files=files)
    hub.clear_log()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_model_files(REPO, files=files) == online
    assert hub.requests == []


def test_cached_model_loads_when_the_hub_is_unreachable(
    hub: HubStandin, repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo(REPO, repo_files)
    files = ["onnx/model.onnx", "tokenizer.json"]
    online = fetch_model_files(REPO, files=files)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert fetch_model_files(REPO, files=files) == online


def test_offline_cache_miss_says_so(
    hub: HubStandin, repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo(REPO, repo_files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        fetch_model_files(REPO, files=["onnx/model.onnx"])
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "not cached" in message
    assert f"reranker download {REPO}" in message and "HF_ENDPOINT" in message
    assert hub.requests == []


@pytest.mark.parametrize(
    ("repo", "files", "revision", "needle"),
    [
        ("acme/missing", ["tokenizer.json"], None, "acme/missing"),
        (REPO, ["tokenizer.json"], "no-such-branch", "no-such-branch"),
        (REPO, ["onnx/nope.onnx"], None, "onnx/nope.onnx"),
        ("a/b/c", ["tokenizer.json"], None, "'a/b/c'"),
    ],
    ids=["repo", "revision", "file", "bad-repo-id"],
)
def test_not_found(
    hub: HubStandin,
    repo_files: dict[str, bytes],
    repo: str,
    files: list[str],
    revision: str | None,
    needle: str,
) -> None:
    hub.add_repo(REPO, repo_files)
    with pytest.raises(
        ModelNotFoundError, match="not found|does not exist|has no file|neither"
    ) as info:
        fetch_model_files(repo, files=files, revision=revision)
    assert needle in str(info.value)
    assert info.value.__cause__ is not None


def test_interrupted_transfer_is_resumed_by_huggingface_hub(
    hub: HubStandin, repo_files: dict[str, bytes]
) -> None:
    hub.add_repo(REPO, repo_files)
    hub.fail_next(REPO, "onnx/model.onnx_data", mode="cut")
    folder = fetch_model_files(REPO, files=["onnx/model.onnx"])
    assert _sha((folder / "onnx/model.onnx_data").read_bytes()) == _sha(
        repo_files["onnx/model.onnx_data"]
    )
    assert hub.count("GET", REPO, "onnx/model.onnx_data") == 2


@pytest.mark.parametrize(
    ("mode", "times"),
    [("truncate", 1), ("cut", 6)],  # huggingface_hub tries a cut transfer 6 times, 1 s apart
    ids=["short-body", "connection-closed-mid-body"],
)
def test_failed_transfer_leaves_nothing_usable_and_a_retry_succeeds(
    hub: HubStandin, hub_cache: Path, repo_files: dict[str, bytes], mode: str, times: int
) -> None:
    hub.add_repo(REPO, repo_files)
    hub.fail_next(REPO, "tokenizer.json", mode=mode, times=times)
    with pytest.raises(DownloadError) as info:
        fetch_model_files(REPO, files=["onnx/model.onnx", "tokenizer.json"])
    message = str(info.value)
    assert "'tokenizer.json'" in message and REPO in message and "revision 'main'" in message
    assert "reranker download" in message and info.value.__cause__ is not None

    blob = hub_cache / "models--acme--tiny-reranker" / "blobs"
    served = {_sha(data) for data in repo_files.values()}
    assert all(_sha(p.read_bytes()) in served for p in blob.iterdir())  # only complete blobs
    assert not list(hub_cache.rglob("tokenizer.json"))
    _assert_no_partial_files(hub_cache)

    folder = fetch_model_files(REPO, files=["onnx/model.onnx", "tokenizer.json"])
    assert (folder / "tokenizer.json").read_bytes() == repo_files["tokenizer.json"]


_WORKER = """
import json, os, sys, time
from pathlib import Path
import huggingface_hub.file_download
from reranker.hub import fetch_model_files
ready, count, repo, files = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < count:
    time.sleep(0.005)
print(fetch_model_files(repo, files=json.loads(files)))
"""


def test_concurrent_first_loads_in_several_processes(
    hub: HubStandin, hub_cache: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    big = {f"weights/part{i}.bin": rng.bytes(512 * 1024) for i in range(3)}
    served = {**big, "tokenizer.json": rng.bytes(64 * 1024)}
    hub.add_repo(REPO, served)
    hub.chunk_size, hub.chunk_delay_s = 32 * 1024, 0.02  # ~0.3 s a file: the loads overlap
    ready = tmp_path / "ready"
    ready.mkdir()
    files = json.dumps([*big, "tokenizer.json"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(ready), "4", REPO, files],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]

    folders = {Path(out.strip()) for out, _ in outputs}
    assert len(folders) == 1
    folder = folders.pop()
    for name, data in served.items():
        assert _sha((folder / name).read_bytes()) == _sha(data), name
        assert hub.count("GET", REPO, name) == 1, name  # the file lock let one process fetch
    _assert_no_partial_files(hub_cache)
    # The loads really overlapped: some process asked for part0 while another was fetching it.
    (get,) = [r for r in hub.requests if r.method == "GET" and r.path == "weights/part0.bin"]
    heads = [r for r in hub.requests if r.method == "HEAD" and r.path == "weights/part0.bin"]
    assert len(heads) == 4 and get.done is not None
    assert sum(h.at < get.done for h in heads) >= 2


def test_hf_endpoint_is_read_at_call_time(
    hub: HubStandin, repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with HubStandin({REPO: {"main": {"tokenizer.json": b"mirror"}}}) as mirror:
        monkeypatch.setenv("HF_ENDPOINT", mirror.url + "/")
        folder = fetch_model_files(REPO, files=["tokenizer.json"])
        assert (folder / "tokenizer.json").read_bytes() == b"mirror"
        assert mirror.count("GET", REPO, "tokenizer.json") == 1
    assert hub.requests == []


def test_explicit_cache_dir(
    hub: HubStandin, hub_cache: Path, tmp_path: Path, repo_files: dict[str, bytes]
) -> None:
    hub.add_repo(REPO, repo_files)
    other = tmp_path / "elsewhere"
    folder = fetch_model_files(REPO, files=["tokenizer.json"], cache_dir=other)
    assert folder.is_relative_to(other)
    assert not hub_cache.exists()
