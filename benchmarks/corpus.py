"""The tokenizer training corpus of the preset stand-ins: English text that ships with Python.

Three sources, read from the running interpreter's standard library (nothing downloaded): the
Zen of Python, ``pydoc_data.topics`` and the standard library's docstrings. The last two, and
the benchmark requests cut from them, live in :mod:`reranker.sample_requests`, which
``reranker bench`` uses; this module only adds what training a vocabulary needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

from reranker.sample_requests import (
    BenchmarkRequest,
    benchmark_requests,
    documentation_paragraphs,
    stdlib_docstrings,
)

__all__ = [
    "BenchmarkRequest",
    "benchmark_requests",
    "documentation_paragraphs",
    "stdlib_docstrings",
    "training_texts",
]


def training_texts() -> list[str]:
    """The Zen of Python, the documentation and the docstrings: the tokenizer training corpus."""
    return [*_zen_of_python(), *documentation_paragraphs(), *stdlib_docstrings()]


def _zen_of_python() -> list[str]:
    """The text of ``this`` without importing it (importing prints it)."""
    import codecs
    import importlib.util

    spec = importlib.util.find_spec("this")
    if spec is None or spec.origin is None:
        return []
    for node in ast.walk(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if any(isinstance(t, ast.Name) and t.id == "s" for t in node.targets):
                return [codecs.decode(str(node.value.value), "rot13")]
    return []
