"""``reranker providers``: the rerank providers of the installed liter-llm, with the
environment variable each reads its key from (the same table as the docs' Providers page)."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_providers_parser"]


def _cmd_providers(args: argparse.Namespace) -> int:
    from reranker.providers.catalog import providers_markdown, rerank_providers

    if args.json:
        rows = [{
            "name": p.name, "display_name": p.display_name, "shorthand": p.example,
            "key_env": list(p.key_env), "default_base_url": p.default_base_url,
            "wire": p.wire, "scores_are_probabilities": p.scores_are_probabilities,
            "notes": p.notes,
        } for p in rerank_providers()]
        print(json.dumps(rows, indent=2))
        return 0
    print(providers_markdown(), end="")
    return 0


def add_providers_parser(sub: Any) -> None:
    """Register ``reranker providers`` on the top-level subparsers."""
    p = sub.add_parser("providers", help="list the hosted rerank providers (via liter-llm)")
    p.add_argument("--json", action="store_true", help="one JSON object per provider")
    p.set_defaults(func=_cmd_providers)
