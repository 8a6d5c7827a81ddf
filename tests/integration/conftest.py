"""Integration fixtures: loopback servers started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hub_standin import HubStandin
from tests.integration.provider_standins import ProviderStandIn


@pytest.fixture(scope="session")
def provider_standin() -> Iterator[ProviderStandIn]:
    """One Cohere/Jina/Voyage stand-in server for the whole session."""
    server = ProviderStandIn().start()
    try:
        yield server
    finally:
        server.stop()


# --- Hugging Face Hub stand-in (reranker.hub) --------------------------------------------------


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubStandin]:
    """One stand-in Hub for the whole session (see tests/integration/hub_standin.py)."""
    with HubStandin() as server:
        yield server


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    """A fresh, empty hub cache folder for one test."""
    return tmp_path / "hf-cache"


@pytest.fixture
def hub(
    hub_server: HubStandin, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubStandin]:
    """The session stand-in, emptied; ``HF_ENDPOINT`` names it, ``HF_HUB_CACHE`` is ``hub_cache``.

    reranker.hub reads these variables per call, so no huggingface_hub constant needs patching
    for them. Telemetry and offline mode are read by huggingface_hub at import time, so those
    constants are pinned too in case it was imported before tests/conftest.py set the variables.
    """
    import huggingface_hub.constants as hf_constants

    hub_server.reset()
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # With telemetry on, huggingface_hub 2.x fetches {ENDPOINT}/api/agent-harnesses per process.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    yield hub_server
    hub_server.reset()


# --- Ray session (tests/integration/ray_fixtures.py) ------------------------------------------

from tests.integration.ray_fixtures import ray_cluster  # noqa: E402, F401
