"""The model cache writer (issue 21 item 8): an unwritable cache is a ``ModelLoadError`` naming
the folder, and a killed build's ``.build-*`` leftovers are removed by the next build."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reranker.backends import build_backend
from reranker.config import parse_backend_config
from reranker.errors import ModelLoadError
from reranker.models.build import built_model
from reranker.optimize import BUILD_LIFETIME_S
from reranker.testing.families import bert


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bert.make_checkpoint(tmp_path_factory.mktemp("cache") / "bert")


def test_an_unwritable_cache_is_a_model_load_error_naming_the_folder(
        checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    cache = blocker / "cache"
    with pytest.raises(ModelLoadError, match=f"{cache}.* is not writable"):
        build_backend(parse_backend_config({
            "type": "custom", "model_id": str(checkpoint), "model_format": "safetensors",
            "cache_dir": str(cache)}))


def _leftover(root: Path, name: str, age_s: float) -> Path:
    work = root / name
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "model.onnx_data").write_bytes(b"\0" * 4096)
    then = time.time() - age_s
    for path in (work / "sub" / "model.onnx_data", work / "sub", work):
        os.utime(path, (then, then))
    return work


def test_stale_build_folders_are_removed_by_the_next_build(
        checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    stale = _leftover(root, ".build-killed", BUILD_LIFETIME_S + 60)
    live = _leftover(root, ".build-running", 60)  # another process, still building
    model = built_model(checkpoint, root)
    assert model.is_file()
    assert not stale.exists()
    assert live.is_dir()
    # A cache hit builds nothing and removes nothing.
    again = _leftover(root, ".build-killed-again", BUILD_LIFETIME_S + 60)
    assert built_model(checkpoint, root) == model
    assert again.is_dir()
