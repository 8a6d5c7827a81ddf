"""Arguments shared by the ``reranker`` subcommands (and those ``deployments`` registers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reranker.errors import InvalidInputError

__all__ = ["MODEL_HELP", "model_arg"]

MODEL_HELP = "preset, repo id, ./folder, provider:model, plugin:name or JSON config"


def model_arg(text: str) -> Any:
    """A shorthand, inline JSON config, or a path to a JSON config file."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except ValueError as exc:
            raise InvalidInputError(f"--model is not valid JSON: {exc}", param="model") from exc
    if stripped.endswith(".json") and Path(stripped).is_file():
        return json.loads(Path(stripped).read_text(encoding="utf-8"))
    return stripped
