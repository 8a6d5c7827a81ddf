"""Rerank requests cut from English text that ships with Python: what ``reranker bench`` scores.

The text is ``pydoc_data.topics`` (the language reference and library documentation that
``help()`` shows, about 65,000 words) read from the running interpreter, so nothing is
downloaded. :func:`benchmark_requests` cuts it into RAG-sized candidates (40 to 300 words by
default) and draws queries and candidate sets from them with a fixed seed.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchmarkRequest",
    "benchmark_requests",
    "documentation_paragraphs",
    "stdlib_docstrings",
]

_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@functools.lru_cache(maxsize=1)
def documentation_paragraphs() -> tuple[str, ...]:
    """Paragraphs of ``pydoc_data.topics`` (the text ``help()`` shows), in a fixed order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data out; docstrings still exist
        return tuple(text for text in stdlib_docstrings() if len(text.split()) >= 20)
    paragraphs: list[str] = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            text = " ".join(block.split())
            if len(text.split()) >= 5:
                paragraphs.append(text)
    return tuple(paragraphs)


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[str, ...]:
    """Docstrings of the standard library (modules, classes, functions), in a fixed order.

    Read with ``ast``, so no module is imported; about 200,000 words.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 8:
                    texts.append(doc)
    return tuple(texts)


@dataclass(frozen=True)
class BenchmarkRequest:
    """One rerank request: a query and its candidate documents."""

    query: str
    documents: tuple[str, ...]


def _candidates(min_words: int, max_words: int, seed: int) -> list[str]:
    """The documentation cut into chunks whose lengths are uniform in [min_words, max_words]."""
    rng = random.Random(seed)
    words = " ".join(documentation_paragraphs()).split()
    chunks: list[str] = []
    start = 0
    while start + min_words <= len(words):
        size = rng.randint(min_words, max_words)
        chunks.append(" ".join(words[start : start + size]))
        start += size
    return chunks


def _query_from(document: str, rng: random.Random) -> str:
    sentences = [s for s in _SENTENCE_END.split(document) if len(s.split()) >= 6] or [document]
    words = rng.choice(sentences).split()
    size = min(len(words), rng.randint(5, 12))
    start = rng.randint(0, len(words) - size)
    return " ".join(words[start : start + size]).strip(".,:;")


def benchmark_requests(
    count: int,
    *,
    documents_per_request: int = 100,
    min_words: int = 40,
    max_words: int = 300,
    seed: int = 0,
) -> list[BenchmarkRequest]:
    """Deterministic RAG-style requests: a query taken from one candidate, plus others.

    Example:
        >>> reqs = benchmark_requests(2, documents_per_request=10)
        >>> len(reqs), len(reqs[0].documents)
        (2, 10)
    """
    pool = _candidates(min_words, max_words, seed)
    if documents_per_request > len(pool):
        raise ValueError(f"only {len(pool)} candidates of {min_words}-{max_words} words")
    rng = random.Random(seed + 1)
    requests = []
    for _ in range(count):
        docs = rng.sample(pool, documents_per_request)
        requests.append(BenchmarkRequest(_query_from(docs[0], rng), tuple(docs)))
    return requests
