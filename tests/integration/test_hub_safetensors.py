"""Hub repos without an ONNX file, against the loopback Hub stand-in: fetch only what the build
needs, at one commit, build, score like the numpy reference; offline from the cache."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from reranker import Reranker
from reranker.cli.main import main as cli_main
from reranker.testing.families.encoder_models import build_cross_encoder
from reranker.testing.families.encoder_reference import reference_encode, reference_logits
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY
from tests.integration.hub_standin import HubStandin

pytestmark = pytest.mark.integration

TOL = 1e-4
DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café 中文 текст"]
NOT_NEEDED = ("pytorch_model.bin", "README.md", "onnx/model.onnx", "onnx/model_quantized.onnx")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-st")
    both = build_cross_encoder(root / "both", arch="xlmr", num_labels=1, seed=41, quantize=True)
    only = root / "only"
    shutil.copytree(both, only, ignore=shutil.ignore_patterns("onnx"))
    return {"both": both, "only": only}


def _expected(folder: Path, max_length: int) -> np.ndarray:
    rows = []
    for doc in DOCS:
        enc = reference_encode(folder, QUERY, [doc], max_length)
        rows.append(reference_logits(folder, enc["input_ids"], enc["attention_mask"])[0, 0])
    return np.array(rows)


def _served(folder: Path) -> dict[str, bytes]:
    # Files a real repo has that a torch-free build must not fetch.
    return {**_files(folder), "pytorch_model.bin": b"\0" * 1000, "README.md": b"# model\n"}


def test_safetensors_only_repo_loads_scores_and_works_offline(
    hub: HubStandin, hub_cache: Path, folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    hub.add_repo("acme/st-only", _served(folders["only"]))
    config = {"type": "custom", "model_id": "acme/st-only", "cache_dir": str(hub_cache)}
    with Reranker(config) as rr:
        got = rr.backend.score(QUERY, DOCS)
        max_length = rr.backend.max_length
    np.testing.assert_allclose(got, _expected(folders["only"], max_length), atol=TOL)
    fetched = {r.path for r in hub.requests if r.method == "GET"}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= fetched
    assert not fetched & set(NOT_NEEDED)
    assert hub.count("GET", path="model.safetensors", kind="cdn") == 1
    assert len({r.revision for r in hub.requests if r.kind == "cdn"}) == 1  # one commit

    hub.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with Reranker(config) as rr:
        np.testing.assert_array_equal(rr.backend.score(QUERY, DOCS), got)
    assert hub.requests == []


def test_sharded_repo_fetches_the_index_and_its_shards(
    hub: HubStandin, hub_cache: Path, folders: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "sharded"
    shutil.copytree(folders["only"], folder)
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), start=1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    hub.add_repo("acme/st-sharded", _files(folder))
    with Reranker({"type": "custom", "model_id": "acme/st-sharded",
                   "cache_dir": str(hub_cache)}) as rr:  # fmt: skip
        got = rr.backend.score(QUERY, DOCS)
        max_length = rr.backend.max_length
    np.testing.assert_allclose(got, _expected(folders["only"], max_length), atol=TOL)
    for shard in set(weight_map.values()):
        assert hub.count("GET", path=shard, kind="cdn") == 1


def test_repo_with_both_keeps_onnx_unless_the_config_says_safetensors(
    hub: HubStandin, hub_cache: Path, folders: dict[str, Path]
) -> None:
    hub.add_repo("acme/both", _served(folders["both"]))
    with Reranker({"type": "custom", "model_id": "acme/both", "cache_dir": str(hub_cache)}) as rr:
        from_onnx = rr.backend.score(QUERY, DOCS)
        assert rr.backend.model_file.name == "model.onnx"
        assert "snapshots" in rr.backend.model_file.parts
    assert hub.count("GET", path="model.safetensors") == 0
    assert hub.count("GET", path="onnx/model.onnx", kind="cdn") == 1

    hub.clear_log()
    config = {"type": "custom", "model_id": "acme/both", "cache_dir": str(hub_cache),
              "model_format": "safetensors"}  # fmt: skip
    with Reranker(config) as rr:
        built = rr.backend.score(QUERY, DOCS)
        assert rr.backend.model_file.parent.name.startswith("built-")
    assert hub.count("GET", path="model.safetensors", kind="cdn") == 1
    assert hub.count(path="onnx/model.onnx") == 0
    np.testing.assert_allclose(built, from_onnx, atol=1e-5)


def test_download_command_prefetches_a_safetensors_repo(
    hub: HubStandin, hub_cache: Path, folders: dict[str, Path]
) -> None:
    hub.add_repo("acme/st-cli", _served(folders["only"]))
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["download", "acme/st-cli", "--cache-dir", str(hub_cache)]) == 0
    report = json.loads(out.getvalue())
    model_file = Path(report["model_file"])
    assert model_file.is_file() and model_file.parent.name.startswith("built-")
    assert Path(report["folder"], "model.safetensors").is_file()
