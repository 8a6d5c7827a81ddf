"""Decoder prefix reuse: a request's shared prompt prefix runs once, scores do not change.

Parametrized over every decoder family of the test kit (``reranker.testing.families``), so a
new causal family is covered by adding its kit.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from reranker.backends import build_backend
from reranker.backends.base import ScoreItem
from reranker.backends.prefix_reuse import MIN_SHARED_TOKENS, shared_prefix_length
from reranker.config import parse_backend_config
from reranker.models.architectures import family_named
from reranker.testing.families import all_families

QUERY = "where do rivers meet the sea"
DOCUMENTS = [
    "An estuary is where a river meets the sea, mixing fresh and salt water.",
    "Bank loans carry interest.",
    "Deltas form where rivers deposit sediment at their mouths into the ocean or a lake.",
    "fish",
    "The Amazon discharges more water into the Atlantic than any other river on Earth, "
    "and its plume of fresh water reaches far out to sea.",
]
MAX_LENGTH = 256
# Text decoders (the vision family has a runner of its own).
DECODERS = [kit for kit in all_families() if family_named(kit.NAME).kind == "decoder"
            and "pixel_values" not in family_named(kit.NAME).inputs]
_RULES: dict[Path, dict[str, str]] = {}


def _backend(folder: Path, **options: object):  # type: ignore[no-untyped-def]
    # Built graphs are cached beside the checkpoint, once per module.
    return build_backend(parse_backend_config({
        "type": "custom", "model_id": str(folder), "max_length": MAX_LENGTH,
        "cache_dir": str(folder.parent / "cache"), **_RULES.get(folder, {}), **options}))


@pytest.fixture(scope="module", params=DECODERS, ids=lambda kit: kit.NAME)
def kit_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[ModuleType, Path]:
    kit = request.param
    folder = kit.make_checkpoint(tmp_path_factory.mktemp(kit.NAME) / "model")
    # A family whose architecture is a generic LLM's is named by the rule field.
    _RULES[folder] = {"rule": kit.NAME} if getattr(kit, "NEEDS_RULE", False) else {}
    return kit, folder


def test_shared_prefix_length() -> None:
    assert shared_prefix_length([[1, 2, 3]]) == 0  # one row: nothing to share
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # each row keeps its last token
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0
    assert shared_prefix_length([[1, 2, 3], [1]]) == 0


def test_scores_are_unchanged_and_the_prefix_runs_once(kit_folder: tuple[ModuleType, Path]) -> None:
    kit, folder = kit_folder
    # A family whose architecture is a generic LLM's is named by the rule field.
    backend = _backend(folder)
    if not backend.prefix_reuse:
        pytest.skip(f"{kit.NAME} has no prompt prefix to reuse (it attends both ways, or its "
                    "layerwise head runs only up to its cutoff layer)")
    rows = backend.encode(QUERY, DOCUMENTS).ids
    shared = shared_prefix_length(rows)
    assert shared >= MIN_SHARED_TOKENS  # system prompt, instruction and query
    runs: list[tuple[int, int]] = []
    backend.model.on_run = lambda n, width: runs.append((n, width))
    reused = backend.score(QUERY, DOCUMENTS)
    # The prefix's one run is not a row run; every document ran only its own tokens.
    assert sum(n for n, _ in runs) == len(DOCUMENTS)
    assert max(width for _, width in runs) == max(len(r) for r in rows) - shared
    assert backend.model.stats.real_tokens == sum(len(r) for r in rows) - shared * len(rows)
    backend.prefix_reuse = False
    runs.clear()
    whole = backend.score(QUERY, DOCUMENTS)
    assert max(width for _, width in runs) == max(len(r) for r in rows)
    # Against the authors' float64 rule: tests/unit/test_decoder.py, whose backends reuse.
    np.testing.assert_allclose(reused, whole, atol=1e-5, rtol=0)


def test_a_batch_of_requests_reuses_each_ones_prefix(kit_folder: tuple[ModuleType, Path]) -> None:
    kit, folder = kit_folder
    backend = _backend(folder)
    items = [ScoreItem(QUERY, DOCUMENTS), ScoreItem("fish", DOCUMENTS[:3]),
             ScoreItem(QUERY, DOCUMENTS[:1])]  # one document: no prefix of its own
    out = backend.score_batch(items)
    backend.prefix_reuse = False
    for item, got in zip(items, out, strict=True):
        np.testing.assert_allclose(got, backend.score(item.query, item.documents),
                                   atol=1e-5, rtol=0)


def test_int8_runs_whole_prompts(kit_folder: tuple[ModuleType, Path]) -> None:
    # Dynamic int8 quantizes each run's activations on their own range, so running the rest
    # of each prompt apart would move int8 scores; int8 keeps whole-prompt runs.
    kit, folder = kit_folder
    backend = _backend(folder, optimization="int8")
    assert not backend.prefix_reuse
    rows = backend.encode(QUERY, DOCUMENTS).ids
    runs: list[tuple[int, int]] = []
    backend.model.on_run = lambda n, width: runs.append((n, width))
    backend.score(QUERY, DOCUMENTS)
    assert max(width for _, width in runs) == max(len(r) for r in rows)
