"""llama-nemotron-rerank prompts as token ids.

The model card's pair text ``question:{query} \\n \\n passage:{passage}``, tokenized whole with the
tokenizer's own template (``<|begin_of_text|>`` first) and cut to ``max_length`` tokens at the
end (``truncation=True``), by the ``tokenizers`` truncation that ``transformers`` itself uses.
The passage follows ``passage:`` without a space, so the Llama 3 pre-tokenizer may join its first
word with the colon: ``max_document_tokens`` cuts the passage's text at its own token boundary
first; ``side="left"`` is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from reranker.models.prompts._ids import PromptTokens, cut_text, too_long
from reranker.types import Truncation

__all__ = ["DEFAULT_INSTRUCTION", "DEFAULT_MAX_LENGTH", "TRUNCATION_FIELDS", "NemotronPrompt",
           "PromptTokenizer", "prompt_text"]

DEFAULT_MAX_LENGTH = 8192
"""The window the model card documents."""
DEFAULT_INSTRUCTION = None
TRUNCATION_FIELDS = frozenset({"max_document_tokens", "allow"})
"""The request truncation fields these prompts apply (``side`` is refused)."""


def prompt_text(query: str, passage: str) -> str:
    return f"question:{query} \n \n passage:{passage}"


class NemotronPrompt:
    """Prompt ids of (query, passage) pairs for a bidirectional Llama reranker.

    Args:
        folder: the model folder.
        max_length: tokens per prompt, special tokens included.
    """

    takes_instruction = False

    def __init__(self, folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.tokens = PromptTokens(folder)
        self.max_length = self.window = max_length
        self.pad_id = self.tokens.pad_id()
        # A second tokenizer that cuts as transformers' truncation does (the text's end,
        # special tokens kept); the first one never truncates, so threads can share both.
        self._cutter = Tokenizer.from_str(self.tokens.tok.to_str())
        self._cutter.no_padding()
        self._cutter.enable_truncation(max_length, strategy="longest_first", direction="right")

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """No token rows: the head is the score row."""
        return ()

    def encode(self, instruction: str | None, query: str, documents: Sequence[str],
               truncation: Truncation | None = None) -> list[list[int]]:
        """One prompt's ids per document."""
        cut = truncation or Truncation()
        texts = [prompt_text(query, cut_text(self.tokens, d, cut)) for d in documents]
        whole = self.tokens.tok.encode_batch(texts, add_special_tokens=True)
        rows = []
        for i, encoding in enumerate(whole):
            ids = list(encoding.ids)
            if len(ids) > self.max_length:
                if not cut.allow:
                    raise too_long(cut, i, len(ids), self.max_length)
                ids = list(self._cutter.encode(texts[i], add_special_tokens=True).ids)
            rows.append(ids)
        return rows


class PromptTokenizer(NemotronPrompt):
    """The decoder runner's form (``max_length``: tokens per prompt)."""

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        super().__init__(Path(tokenizer_file).parent, max_length)
