"""The backend contract: query and documents in, one raw float32 score per document out.

Every variant (local ONNX, provider API, plugin) implements :class:`RerankerBackend`. Backends
never sort, never apply activations and never see ``top_k``: that is ``reranker.scoring``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["RerankerBackend"]


@runtime_checkable
class RerankerBackend(Protocol):
    """What the library needs from a backend.

    Attributes:
        name: a short name for messages and metrics (``"preset:fast"``, ``"cohere:rerank-v3.5"``).
        max_length: tokens per pair the backend reads, or ``None`` when it does not say.
        scores_are_probabilities: scores are already in [0, 1] (providers); otherwise they are
            logits and ``reranker.scoring`` applies a sigmoid.
    """

    name: str
    max_length: int | None
    scores_are_probabilities: bool

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """One raw score per document, in input order, as float32."""
        ...

    async def ascore(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """The same as :meth:`score` without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release sessions, clients and threads. Safe to call twice."""
        ...
