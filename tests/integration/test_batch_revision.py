"""A batch job is keyed on the Hub commit its model resolved to, not on the revision's name.

Regression for issue 21 item 11: the resume key held the config as written (``revision: None``,
i.e. ``main``), so resuming after ``main`` moved reused the committed shards of the old commit
and scored the rest with the new one: two models' scores in one run. Now the job resolves the
revision once, keys the output folder on the commit and gives its actors that commit; a rerun
after the branch moved is refused, naming both commits, and a rerun pinned to the first commit
resumes.

Candidate files with no rows keep Ray out of it: the key is decided before any scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.batch.job import BatchJobSpec, _actor_model, run_batch_job
from reranker.errors import ConfigError
from tests.integration.hub_standin import HubStandin

pytestmark = pytest.mark.integration

REPO = "org/tiny-reranker"


def _files(version: str) -> dict[str, bytes]:
    return {"tokenizer.json": json.dumps({"version": version}).encode(),
            "config.json": json.dumps({"architectures": ["BertForSequenceClassification"],
                                       "note": version}).encode()}


def _spec(tmp_path: Path, hub_cache: Path, revision: str | None = None) -> BatchJobSpec:
    candidates = tmp_path / "candidates.jsonl"
    if not candidates.exists():
        candidates.write_text("")
    model = {"type": "custom", "model_id": REPO, "cache_dir": str(hub_cache)}
    if revision is not None:
        model["revision"] = revision
    return BatchJobSpec(model=model, output=tmp_path / "out", candidates=(candidates,))


def test_a_moved_branch_is_a_different_job(hub: HubStandin, hub_cache: Path,
                                           tmp_path: Path) -> None:
    first = hub.add_repo(REPO, _files("one"))
    run_batch_job(_spec(tmp_path, hub_cache))
    job = json.loads((tmp_path / "out" / "job.json").read_text())
    assert job["model"]["revision"] == first

    second = hub.add_repo(REPO, _files("two"))  # main moves
    assert second != first
    with pytest.raises(ConfigError) as info:
        run_batch_job(_spec(tmp_path, hub_cache))
    message = str(info.value)
    assert "model.revision" in message and first in message and second in message

    # Pinned to the commit it started with, the job resumes.
    summary = run_batch_job(_spec(tmp_path, hub_cache, revision=first))
    assert summary.attempt == 2


def test_actors_load_the_commit_the_job_resolved(hub: HubStandin, hub_cache: Path,
                                                 tmp_path: Path) -> None:
    from deployments.batch.job import pin_model_revision

    commit = hub.add_repo(REPO, _files("one"))
    pinned = pin_model_revision(_spec(tmp_path, hub_cache))
    assert _actor_model(pinned)["revision"] == commit
    hub.add_repo(REPO, _files("two"))
    assert _actor_model(pinned)["revision"] == commit  # resolved once, not per actor
    local = BatchJobSpec(model={"type": "custom", "model_id": str(tmp_path)}, output=tmp_path,
                         candidates=(tmp_path / "c.jsonl",))
    assert pin_model_revision(local) is local  # a folder has no revision to resolve
