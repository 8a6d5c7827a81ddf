"""The ``reranker`` command line (``reranker.cli.main``); ``python -m reranker.cli`` runs it."""

from __future__ import annotations

from reranker.cli.main import COMMAND_GROUP, build_parser, main

__all__ = ["COMMAND_GROUP", "build_parser", "main"]
