"""Deterministic subword vocabularies counted from real English text.

The trainers of ``tokenizers`` break ties in hash-map order, so two runs give two vocabularies.
These builders count instead: every whole word, word-initial prefix and word-final suffix of the
pre-tokenized corpus gets a frequency, and the most frequent pieces win, ties broken by the
piece itself. That is close to what WordPiece and Unigram training keep (frequent words whole,
frequent affixes as pieces) and gives the same vocabulary on every run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

__all__ = ["count_words", "unigram_pieces", "wordpiece_vocab"]

_MAX_PIECE = 8


def count_words(words: Iterable[str]) -> Counter[str]:
    """Frequencies of pre-tokenized words."""
    return Counter(words)


def _top(counts: Counter[str], limit: int, minimum: int = 2) -> list[str]:
    ranked = sorted((-c, piece) for piece, c in counts.items() if c >= minimum)
    return [piece for _, piece in ranked[:limit]]


def _affixes(words: Counter[str], known: set[str], skip: int) -> tuple[Counter[str], Counter[str]]:
    """Weighted counts of prefixes and suffixes (2 to 8 characters) of words not kept whole.

    ``skip`` characters at the start of each word are a marker (the SentencePiece space), kept
    on prefixes and never counted as a suffix.
    """
    prefixes: Counter[str] = Counter()
    suffixes: Counter[str] = Counter()
    for word, count in words.items():
        if word in known or len(word) - skip < 3:
            continue
        body = len(word) - skip
        for size in range(2, min(_MAX_PIECE, body - 1) + 1):
            prefixes[word[: skip + size]] += count
            suffixes[word[len(word) - size :]] += count
    return prefixes, suffixes


def wordpiece_vocab(
    words: Counter[str],
    specials: Iterable[str],
    *,
    size: int,
    max_words: int = 14_000,
    max_prefixes: int = 3_000,
    max_suffixes: int = 3_000,
) -> list[str]:
    """A WordPiece vocabulary in id order, padded with ``[unusedN]`` to ``size`` entries.

    Order: specials, characters, ``##`` characters, whole words, prefixes, ``##`` suffixes.
    """
    chars = sorted({ch for word in words for ch in word})
    whole = _top(words, max_words)
    prefixes, suffixes = _affixes(words, set(whole), skip=0)
    tokens = [*specials, *chars, *(f"##{c}" for c in chars), *whole]
    tokens += _top(prefixes, max_prefixes, minimum=4)
    tokens += [f"##{s}" for s in _top(suffixes, max_suffixes, minimum=4)]
    tokens = list(dict.fromkeys(tokens))[:size]
    return tokens + [f"[unused{i}]" for i in range(size - len(tokens))]


def unigram_pieces(
    words: Counter[str],
    specials: Iterable[str],
    *,
    size: int,
    space: str = "\u2581",
    mask: str = "<mask>",
    max_words: int = 20_000,
    max_prefixes: int = 4_000,
    max_suffixes: int = 4_000,
) -> list[tuple[str, float]]:
    """Unigram pieces with log-probability scores, padded with ``<extra_N>``; ``mask`` last.

    ``words`` carry the SentencePiece space marker at their start (``"\u2581word"``). Scores
    are log relative frequencies, so frequent whole words beat spelling them out.
    """
    pieces: dict[str, float] = {s: 0.0 for s in specials}
    whole = _top(words, max_words)
    prefixes, suffixes = _affixes(words, set(whole), skip=len(space))
    total = float(sum(words.values()))

    def add(piece: str, count: float) -> None:
        pieces.setdefault(piece, math.log(count / total))

    for word in whole:
        add(word, words[word])
    for piece in _top(prefixes, max_prefixes, minimum=4):
        add(piece, prefixes[piece])
    for piece in _top(suffixes, max_suffixes, minimum=4):
        add(piece, suffixes[piece])
    chars = sorted({ch for word in words for ch in word if ch != space})
    # Single characters are the fallback: always present, never preferred.
    add(space, 1.0)
    for ch in chars:
        pieces.setdefault(ch, math.log(1.0 / total) - 2.0)
        pieces.setdefault(space + ch, math.log(1.0 / total) - 3.0)
    scored = list(pieces.items())[: size - 1]
    scored += [(f"<extra_{i}>", -50.0) for i in range(size - 1 - len(scored))]
    return [*scored, (mask, 0.0)]
