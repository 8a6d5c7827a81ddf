"""An LRU cache of raw scores keyed by (query, document, truncation), shared across threads.

The local ONNX backend consults it on every path (single calls, Serve batches, batch jobs) when
``score_cache_size`` is set.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ScoreCache", "ScoreCacheStats"]


@dataclass
class ScoreCacheStats:
    """Counters of a :class:`ScoreCache` since it was made."""

    hits: int = 0
    misses: int = 0
    size: int = 0

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0


class ScoreCache:
    """An LRU map from a (query, document, truncation) triple to its raw score, thread-safe.

    Keys are 16-byte BLAKE2b digests, so an entry's size does not depend on the texts; a
    million entries take about 200 MB of resident memory (194 MB measured with
    ``benchmarks/score_cache_memory.py``: the ``OrderedDict`` node, the ``bytes`` key and the
    boxed ``float`` cost far more than their payload). One cache belongs to one backend, so
    the model and its settings are part of the key implicitly; the request's truncation is
    part of it explicitly.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._scores: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = ScoreCacheStats()

    @staticmethod
    def key(query: str, document: str, variant: str = "") -> bytes:
        """The pair's key; ``variant`` tells apart scores of one pair under different
        truncation settings (see :attr:`~reranker.types.Truncation.cache_variant`)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(len(query).to_bytes(8, "little"))
        h.update(query.encode("utf-8", "surrogatepass"))
        h.update(len(variant).to_bytes(8, "little"))
        h.update(variant.encode("utf-8"))
        h.update(document.encode("utf-8", "surrogatepass"))
        return h.digest()

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        with self._lock:
            found: list[float | None] = []
            for k in keys:
                value = self._scores.get(k)
                if value is not None:
                    self._scores.move_to_end(k)
                found.append(value)
            hits = sum(v is not None for v in found)
            self.stats.hits += hits
            self.stats.misses += len(found) - hits
            return found

    def put_many(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        with self._lock:
            for k, v in zip(keys, scores, strict=True):
                self._scores[k] = float(v)
                self._scores.move_to_end(k)
            while len(self._scores) > self.capacity:
                self._scores.popitem(last=False)
            self.stats.size = len(self._scores)
