"""Shared fixtures: environment for offline tests and the tiny model folders, built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports ray or huggingface_hub (both read these at import time).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

MODEL_VARIANTS = {
    "bert1": {"arch": "bert", "num_labels": 1},
    "bert2": {"arch": "bert", "num_labels": 2},
    "xlmr1": {"arch": "xlmr", "num_labels": 1},
    "xlmr2": {"arch": "xlmr", "num_labels": 2},
    "xlmr1_external": {"arch": "xlmr", "num_labels": 1, "external_data": True},
}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny deterministic cross-encoders laid out like the Xenova repos, one per variant."""
    from reranker.testing.families.encoder_models import build_cross_encoder

    root = tmp_path_factory.mktemp("models")
    return {
        name: build_cross_encoder(root / name, seed=i, **kwargs)
        for i, (name, kwargs) in enumerate(MODEL_VARIANTS.items())
    }


@pytest.fixture(scope="session")
def bert_model(model_dirs: dict[str, Path]) -> Path:
    return model_dirs["bert1"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The multi-node tests start their own several-node Ray in this process, which cannot
    # coexist with the session's one-node Ray (tests/integration/ray_fixtures.py): they run
    # first and shut theirs down before anything starts the other. The sort is stable.
    items.sort(key=lambda item: item.get_closest_marker("multinode") is None)
