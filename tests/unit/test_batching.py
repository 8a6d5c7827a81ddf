"""Length-grouped batch planning."""

from __future__ import annotations

import numpy as np
import pytest

from reranker.onnx_model import plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_every_row_once_within_limits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 400, size=int(rng.integers(1, 300))).tolist()
    batches = plan_batches(lengths, batch_size=16, max_tokens_per_batch=2048, max_padding=0.1)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    total_real = total_padded = 0
    for b in batches:
        widths = [lengths[i] for i in b]
        padded = len(b) * max(widths)
        assert len(b) <= 16
        assert len(b) == 1 or padded <= 2048
        assert len(b) == 1 or padded <= 1.1 * sum(widths)
        total_real += sum(widths)
        total_padded += padded
    assert total_padded <= 1.1 * total_real


def test_equal_lengths_fill_batches() -> None:
    batches = plan_batches([10] * 100, batch_size=32, max_tokens_per_batch=10_000)
    assert [len(b) for b in batches] == [32, 32, 32, 4]


def test_row_longer_than_budget_is_its_own_batch() -> None:
    batches = plan_batches([5000, 10, 10], batch_size=32, max_tokens_per_batch=100)
    assert sorted(len(b) for b in batches) == [1, 2]
