"""Token-id helpers the decoder families' prompt modules share (``tokenizers`` only).

A prompt module tokenizes each piece of its authors' template once (the fixed parts at load,
the query once per request, documents in one batch) and cuts lists of ids by the authors'
arithmetic, so no discarded window is ever built. The request's truncation fields act on the
document alone: ``max_document_tokens`` and ``side`` through :func:`cut_text` (the document's own
tokens, before the template), ``allow=False`` through :func:`too_long`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from reranker.errors import InputTooLongError, ModelLoadError
from reranker.types import Truncation

__all__ = ["PromptTokens", "cut_text", "only_second", "too_long"]


def only_second(first: list[int], second: list[int], max_length: int) -> list[int]:
    """transformers 4's ``prepare_for_model(first, second, truncation="only_second")`` (which
    FlagEmbedding and mxbai-rerank call): the second list loses its end; when it cannot absorb
    the overflow nothing is cut."""
    overflow = len(first) + len(second) - max_length
    if overflow > 0 and len(second) > overflow:
        second = second[:-overflow]
    return first + second


def too_long(cut: Truncation, index: int, tokens: int, room: int) -> InputTooLongError:
    """The error of a document that does not fit with ``allow=False``."""
    where = f"{cut.field}[{cut.index_offset + index}]"
    return InputTooLongError(
        f"{where} takes {tokens} tokens in the prompt; the window leaves room for {room}",
        param=where,
    )


def _special_tokens_config(path: Path) -> dict[str, Any]:
    # The prompt takes its special tokens (bos, pad) from this file: one that is there but not a
    # JSON object would silently change the prompt, so it is refused rather than ignored.
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ModelLoadError(f"cannot read {path}: {type(exc).__name__}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} is not a JSON object (it holds the prompt's special tokens)")
    return config


class PromptTokens:
    """A model's ``tokenizer.json`` (no padding, no truncation) and its special tokens.

    Args:
        folder: the model folder (``tokenizer.json``, ``tokenizer_config.json``).
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        path = folder / "tokenizer.json"
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelLoadError(f"cannot read tokenizer {path}: {exc}") from exc
        tok.no_padding()
        tok.no_truncation()
        self.tok = tok
        self.config: dict[str, Any] = _special_tokens_config(folder / "tokenizer_config.json")

    def ids(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def first_id(self, text: str) -> int:
        """The first token of ``text`` (how the authors' code picks its label tokens)."""
        ids = self.ids(text)
        if not ids:
            raise ModelLoadError(f"the tokenizer gives no token for {text!r}")
        return ids[0]

    def special_id(self, field: str) -> int | None:
        """The id of ``tokenizer_config.json``'s ``bos_token`` / ``pad_token`` / ..."""
        value = self.config.get(field)
        if isinstance(value, dict):
            value = value.get("content")
        if not isinstance(value, str):
            return None
        found = self.tok.token_to_id(value)
        return None if found is None else int(found)

    def pad_id(self) -> int:
        for field in ("pad_token", "eos_token", "unk_token"):
            found = self.special_id(field)
            if found is not None:
                return found
        return 0


def cut_text(prompt: PromptTokens, text: str, cut: Truncation) -> str:
    """``text`` shortened to ``cut.max_document_tokens`` of its own tokens, keeping its start
    (``side="right"``) or its end (``"left"``); unchanged when it fits or no cap is set."""
    limit = cut.max_document_tokens
    if limit is None:
        return text
    encoding = prompt.tok.encode(text, add_special_tokens=False)
    if len(encoding.ids) <= limit:
        return text
    offsets = encoding.offsets
    if cut.side == "left":
        return text[offsets[len(offsets) - limit][0]:] if limit else ""
    return text[: offsets[limit][0]]
