"""The backend contract and backend construction (through ``reranker.registry``)."""

from __future__ import annotations

from reranker.backends.base import RerankerBackend, ScoreItem
from reranker.registry import build_backend

__all__ = ["RerankerBackend", "ScoreItem", "build_backend"]
