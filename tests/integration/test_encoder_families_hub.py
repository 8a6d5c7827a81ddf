"""The encoder families as a user gets them: ``custom`` at their real repo ids, served by the
loopback Hub stand-in (safetensors only, the custom-code files a real repo has beside them),
and one family through the ``reranker`` command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from reranker import Reranker
from reranker.testing.families import deberta_v2, jina_v2, jinabert, mgte
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY
from tests.integration.hub_standin import HubStandin
from tests.integration.test_cli import _script

pytestmark = pytest.mark.integration

DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café 中文 текст"]
# Files a real repo has that a torch-free build must not need (remote code, torch weights).
EXTRA = {"pytorch_model.bin": b"\0" * 64, "README.md": b"# model\n",
         "modeling.py": b"raise SystemExit('remote code must not run')\n"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kit", [deberta_v2, mgte, jinabert, jina_v2], ids=lambda k: k.NAME)
def test_custom_at_the_real_repo_id_scores_as_the_authors(
    kit: ModuleType, hub: HubStandin, hub_cache: Path, tmp_path: Path
) -> None:
    folder = kit.make_checkpoint(tmp_path / "model", seed=7)
    repo = kit.REPOS[0]
    hub.add_repo(repo, {**_files(folder), **EXTRA})
    with Reranker({"type": "custom", "model_id": repo, "cache_dir": str(hub_cache)}) as rr:
        assert rr.backend.model_file.parent.name.startswith("built-")
        assert f"-{kit.NAME}-" in rr.backend.model_file.parent.name
        raw = [r.score for r in sorted(rr.rerank(QUERY, DOCS, raw_scores=True),
                                       key=lambda r: r.index)]
    np.testing.assert_allclose(raw, kit.reference_scores(folder, QUERY, DOCS), atol=1e-4)
    fetched = {r.path for r in hub.requests if r.method == "GET"}
    assert not fetched & set(EXTRA)


def test_cli_reranks_with_a_deberta_folder(tmp_path: Path) -> None:
    folder = deberta_v2.make_checkpoint(tmp_path / "mxbai")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [_script(), "rerank", "-m", str(folder), "-q", QUERY, "--format", "json", "--raw-scores",
         "--cache-dir", str(tmp_path / "cache"), *DOCS],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    want = deberta_v2.reference_scores(folder, QUERY, DOCS)
    assert [r["index"] for r in results] == list(np.argsort(-want, kind="stable"))
    for r in results:
        assert r["score"] == pytest.approx(want[r["index"]], abs=1e-4)
