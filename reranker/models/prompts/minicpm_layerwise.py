"""bge-reranker-v2-minicpm-layerwise prompts: FlagEmbedding's ``LayerWiseFlagLLMReranker``
rule (:mod:`reranker.models.prompts.flag_llm` with ``bos`` always first)."""

from __future__ import annotations

from pathlib import Path

from reranker.models.prompts._ids import PromptTokens
from reranker.models.prompts.flag_llm import (
    DEFAULT_MAX_LENGTH,
    TRUNCATION_FIELDS,
    FlagLLMPrompt,
    template_tokens,
)

__all__ = ["DEFAULT_INSTRUCTION", "TRUNCATION_FIELDS", "PromptTokenizer", "default_window"]

DEFAULT_INSTRUCTION = None


def default_window(folder: str | Path) -> int:
    """Tokens per prompt at FlagEmbedding's default ``max_length`` (512)."""
    return DEFAULT_MAX_LENGTH + template_tokens(PromptTokens(folder))


class PromptTokenizer(FlagLLMPrompt):
    """The decoder runner's form (``max_length``: tokens per prompt, template included)."""

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        super().__init__(Path(tokenizer_file).parent, always_bos=True, window=max_length)

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """No token rows: the head is the cutoff layer's score row."""
        return ()
