"""What a model folder's JSON files declare (``config.json``, ``tokenizer_config.json``).

The one reader of those files: the window (``reranker.backends.local``), the pad id
(``reranker.tokenization``) and the attention sizes the optimizer needs (``reranker.optimize``)
all come through it. Exports without these files are common, so a missing, unreadable or
non-object file reads as ``{}`` and callers fall back to what the graph or tokenizer says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json_object", "read_model_config"]


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply
        return {}
    return data if isinstance(data, dict) else {}


def read_model_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json`` (Hugging Face model config), or ``{}``."""
    return read_json_object(folder / "config.json")
