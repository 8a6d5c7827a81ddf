"""A slow, deterministic plugin scorer for batch-job tests (resume needs a job that takes time).

Named by import path in a job's model config, so Ray workers import it from this repository.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np


class SlowWordOverlap:
    """Scores a document by the query words it contains; sleeps ``delay_s`` per call.

    A query containing ``fail_on`` (when set) raises, as a failing backend would.
    """

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        if self.fail_on and self.fail_on in query:
            raise RuntimeError(f"cannot score {query!r}")
        words = set(query.lower().split())
        return np.array(
            [len(words & set(d.lower().split())) - 0.001 * len(d) for d in documents],
            dtype=np.float32,
        )
