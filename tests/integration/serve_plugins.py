"""Plugin scorers for the Serve tests, named by import path so that replicas can import them.

All are deterministic and need no network: word overlap (the default test model), a reversed
variant (to tell two models apart), a slow one (queue and timeout tests), one that fails on a
marker word (failed-chunk tests) and one that takes a while to load (readiness tests).
"""

from __future__ import annotations

import re
import time

_WORD = re.compile(r"\w+")
POISON = "POISON"


def word_overlap(query: str, documents: list[str]) -> list[float]:
    """Raw score: number of distinct query words in the document (a logit, sigmoid later)."""
    words = set(_WORD.findall(query.lower()))
    return [float(len(words & set(_WORD.findall(doc.lower())))) for doc in documents]


def reversed_overlap(query: str, documents: list[str]) -> list[float]:
    """The opposite ranking of :func:`word_overlap`, so routing to it is visible."""
    return [-s for s in word_overlap(query, documents)]


class SlowScorer:
    """Word overlap after a delay (a sync plugin: the adapter runs it in a thread).

    Args:
        delay_s: sleep before each answer.
        load_delay_s: sleep in the constructor (a model that takes a while to load).
        delay_marker: sleep only for queries containing this word (so a replica's warm-up
            stays fast while requests time out).
    """

    def __init__(self, delay_s: float = 1.0, load_delay_s: float = 0.0,
                 delay_marker: str | None = None) -> None:
        time.sleep(load_delay_s)
        self.delay_s = delay_s
        self.delay_marker = delay_marker

    def score(self, query: str, documents: list[str]) -> list[float]:
        if self.delay_marker is None or self.delay_marker in query:
            time.sleep(self.delay_s)
        return word_overlap(query, documents)


def poisoned(query: str, documents: list[str]) -> list[float]:
    """Word overlap, but raises when a document contains the word POISON."""
    if any(POISON in doc for doc in documents):
        raise RuntimeError("poisoned document in this chunk")
    return word_overlap(query, documents)
