"""Arguments shared by the ``reranker`` subcommands (and those ``deployments`` registers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reranker.errors import InvalidInputError

__all__ = ["MODEL_HELP", "model_arg", "read_text_file"]

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


def read_text_file(path: str | Path, option: str) -> str:
    """The text of the file an option names; a missing or unreadable one is an input error.

    Example: ``read_text_file("docs.txt", "--documents-file")`` raises
    ``--documents-file 'docs.txt': no such file`` rather than a bare ``[Errno 2]``.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{option} {str(path)!r}: {_unreadable(exc)}",
            param=option.lstrip("-").replace("-", "_"),
        ) from exc


def _unreadable(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, UnicodeDecodeError):
        return "is not UTF-8 text"
    return f"cannot be read ({exc.strerror or exc})"
