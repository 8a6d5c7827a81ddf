"""The new decoder families as a user meets them: ``custom`` repos on the Hub stand-in (the
exact repo id picks the rule), and a local folder through the ``reranker`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reranker import Reranker
from reranker.errors import ModelLoadError
from reranker.testing.families import bge_gemma, minicpm_layerwise, mxbai_v2
from tests.integration.hub_standin import HubStandin

QUERY = "what is the capital of France"
DOCS = ["Paris is the capital of France", "a fish", "東京は日本の首都です", "the capital city"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("kit", "repo", "window"), [
    (mxbai_v2, "mixedbread-ai/mxbai-rerank-base-v2", 200),
    (bge_gemma, "BAAI/bge-reranker-v2-gemma", 150),
], ids=["mxbai_v2", "bge_gemma"])
def test_a_known_repo_id_picks_its_rule(hub: HubStandin, tmp_path: Path, kit: object,
                                        repo: str, window: int) -> None:
    folder = kit.make_checkpoint(tmp_path / "model")  # type: ignore[attr-defined]
    hub.add_repo(repo, _files(folder))
    with Reranker({"type": "custom", "model_id": repo, "max_length": window,
                   "cache_dir": str(tmp_path / "cache")}) as rr:
        results = rr.rerank(QUERY, DOCS, raw_scores=True)
    got = {r.index: r.score for r in results}
    want = kit.reference_scores(folder, QUERY, DOCS, max_length=window)  # type: ignore[attr-defined]
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))], want, atol=1e-4)


def test_a_fine_tune_names_its_rule(hub: HubStandin, tmp_path: Path) -> None:
    """Another repo with mxbai v2's architecture cannot be told apart: the error lists the
    rules, and ``rule`` makes it score as mxbai v2."""
    folder = mxbai_v2.make_checkpoint(tmp_path / "model", seed=5)
    hub.add_repo("someone/mxbai-rerank-finetune", _files(folder))
    config = {"type": "custom", "model_id": "someone/mxbai-rerank-finetune", "max_length": 200,
              "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ModelLoadError, match="'rule' to one of mxbai_v2"):
        Reranker(config)
    with Reranker({**config, "rule": "mxbai_v2"}) as rr:
        results = rr.rerank(QUERY, DOCS, raw_scores=True, instruction="find capitals")
    got = {r.index: r.score for r in results}
    want = mxbai_v2.reference_scores(folder, QUERY, DOCS, max_length=200,
                                     instruction="find capitals")
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))], want, atol=1e-4)


def test_layerwise_folder_through_the_cli(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from reranker.cli.main import main

    folder = minicpm_layerwise.make_checkpoint(tmp_path / "minicpm")
    code = main(["rerank", "-m", str(folder), "-q", QUERY, "--format", "json", "--raw-scores",
                 "--max-length", "150", "--cache-dir", str(tmp_path / "cache"), *DOCS])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    got = {r["index"]: r["score"] for r in out["results"]}
    want = minicpm_layerwise.reference_scores(folder, QUERY, DOCS, max_length=150)
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))], want, atol=1e-4)
    assert [r["index"] for r in out["results"]] == list(np.argsort(-want, kind="stable"))
