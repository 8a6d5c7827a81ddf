"""zerank prompts as token ids: the Qwen3 chat template over the stripped query (system) and
the stripped document (user), with the generation prompt, as ``modeling_zeranker.py`` formats
them:

``<|im_start|>system\\n{query}<|im_end|>\\n<|im_start|>user\\n{document}<|im_end|>\\n``
``<|im_start|>assistant\\n``

The pieces meet at special tokens and after ``\\n`` (the stripped texts start with no space),
where the Qwen2 pre-tokenizer always splits, so tokenizing them apart gives the ids of the whole
text (the fidelity tests check it against ``transformers``' chat template). The authors' code
never truncates; past ``max_length`` the document's end is cut (its start with
``side="left"``), then the query's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reranker.models.prompts._ids import PromptTokens, too_long
from reranker.types import Truncation

__all__ = ["DEFAULT_INSTRUCTION", "TEMPERATURE", "PromptTokenizer", "ZerankPrompt"]

TEMPERATURE = 5.0
"""The authors' probability is ``sigmoid(yes_logit / 5)``."""
DEFAULT_INSTRUCTION = None
"""The authors' prompt has no instruction slot."""


class ZerankPrompt:
    """Prompt ids of (query, document) pairs for a zerank checkpoint.

    Args:
        folder: the model folder.
        max_length: tokens per prompt, template included.
    """

    takes_instruction = False

    def __init__(self, folder: str | Path, max_length: int) -> None:
        self.tokens = tokens = PromptTokens(folder)
        self.head = tokens.ids("<|im_start|>system\n")
        self.middle = tokens.ids("<|im_end|>\n<|im_start|>user\n")
        self.tail = tokens.ids("<|im_end|>\n<|im_start|>assistant\n")
        self.yes = tokens.first_id("Yes")
        self.max_length = self.window = max_length
        self.pad_id = tokens.pad_id()

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """``(Yes,)``: the head's one row."""
        return (self.yes,)

    def encode(self, instruction: str | None, query: str, documents: Sequence[str],
               truncation: Truncation | None = None) -> list[list[int]]:
        """One prompt's ids per document."""
        cut = truncation or Truncation()
        q = self.tokens.ids(query.strip())
        fixed = len(self.head) + len(self.middle) + len(self.tail)
        rows = []
        for i, d in enumerate(self.tokens.ids_batch([doc.strip() for doc in documents])):
            keep = len(d)
            if cut.max_document_tokens is not None:
                keep = min(keep, cut.max_document_tokens)
            over = fixed + len(q) + keep - self.max_length
            if over > 0 and not cut.allow:
                raise too_long(cut, i, len(d), max(0, self.max_length - fixed - len(q)))
            from_doc = min(max(over, 0), keep)
            keep -= from_doc
            body = d[len(d) - keep:] if cut.side == "left" else d[:keep]
            query_ids = q[: max(0, len(q) - (max(over, 0) - from_doc))]
            rows.append(self.head + query_ids + self.middle + body + self.tail)
        return rows


class PromptTokenizer(ZerankPrompt):
    """The decoder runner's form (``max_length``: tokens per prompt, template included)."""

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        super().__init__(Path(tokenizer_file).parent, max_length)
