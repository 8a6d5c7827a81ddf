"""FlagEmbedding's decoder-only reranker prompts as token ids (bge-reranker-v2-gemma,
bge-reranker-v2-minicpm-layerwise).

As ``FlagLLMReranker`` / ``LayerWiseFlagLLMReranker.compute_score_single_gpu``: the query
``"A: " + query`` is cut to ``query_max_length`` tokens (default ``max_length * 3 // 4``), the
passage ``"B: " + passage`` to ``max_length`` (default 512); ``[bos] + query`` (``bos`` when it
is not the pad token; always for the layerwise model) and ``"\\n" + passage`` are joined and cut
to ``max_length + len("\\n") + len(prompt)`` by the passage's end, then ``"\\n"`` and the Yes/No
prompt follow. ``"B: " + passage`` is tokenized whole (SentencePiece merges may cross the
label), so ``max_document_tokens`` cuts the passage's text at its own token boundary first;
``side="left"`` is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reranker.errors import ModelLoadError
from reranker.models.prompts._ids import PromptTokens, cut_text, only_second, too_long
from reranker.types import Truncation

__all__ = ["DEFAULT_MAX_LENGTH", "DEFAULT_PROMPT", "TRUNCATION_FIELDS", "FlagLLMPrompt",
           "template_tokens"]

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'."
)
DEFAULT_MAX_LENGTH = 512
"""FlagEmbedding's default ``max_length`` (of the passage)."""
TRUNCATION_FIELDS = frozenset({"max_document_tokens", "allow"})
"""The request truncation fields these prompts apply (``side`` is refused)."""


def template_tokens(tokens: PromptTokens, prompt: str = DEFAULT_PROMPT) -> int:
    """Tokens a prompt adds beyond FlagEmbedding's ``max_length``: ``"\\n"`` and the prompt,
    twice (once inside the cut, once after it)."""
    return 2 * (len(tokens.ids("\n")) + len(tokens.ids(prompt)))


class FlagLLMPrompt:
    """Prompt ids of (query, passage) pairs as FlagEmbedding builds them.

    Args:
        folder: the model folder.
        max_length: FlagEmbedding's ``max_length``.
        query_max_length: FlagEmbedding's ``query_max_length`` (default ``3/4 max_length``).
        always_bos: put ``bos`` first even when it is the pad token (the layerwise reranker).
        window: instead of ``max_length``, the most tokens per prompt (the library's
            ``max_length``): FlagEmbedding's is ``window`` minus :func:`template_tokens`.
    """

    takes_instruction = False

    def __init__(self, folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH, *,
                 query_max_length: int | None = None, always_bos: bool = False,
                 prompt: str = DEFAULT_PROMPT, window: int | None = None) -> None:
        self.tokens = tokens = PromptTokens(folder)
        if window is not None:
            max_length = window - template_tokens(tokens, prompt)
            if max_length < 8:
                raise ModelLoadError(f"max_length {window} leaves {max_length} tokens for the "
                                     "query and passage after the Yes/No prompt")
            query_max_length = None
        self.max_length = max_length
        self.query_max_length = (max_length * 3 // 4 if query_max_length is None
                                 else query_max_length)
        self.prompt = tokens.ids(prompt)
        self.sep = tokens.ids("\n")
        self.limit = max_length + len(self.sep) + len(self.prompt)
        bos, pad = tokens.special_id("bos_token"), tokens.special_id("pad_token")
        if always_bos and bos is None:
            raise ModelLoadError("tokenizer_config.json names no bos_token, which the "
                                 "layerwise reranker puts first")
        self.bos = [bos] if bos is not None and (always_bos or bos != pad) else []
        self.yes = tokens.first_id("Yes")
        self.window = self.limit + len(self.sep) + len(self.prompt)
        """Tokens of the longest prompt."""
        self.pad_id = tokens.pad_id()

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """``(Yes,)``: the head's one row."""
        return (self.yes,)

    def encode(self, instruction: str | None, query: str, documents: Sequence[str],
               truncation: Truncation | None = None) -> list[list[int]]:
        """One prompt's ids per document (``instruction`` is refused upstream)."""
        cut = truncation or Truncation()
        first = self.bos + self.tokens.ids("A: " + query)[: self.query_max_length]
        texts = ["B: " + cut_text(self.tokens, d, cut) for d in documents]
        rows = []
        for i, passage in enumerate(self.tokens.ids_batch(texts)):
            row = only_second(first, self.sep + passage[: self.max_length], self.limit)
            if not cut.allow and len(row) < len(first) + len(self.sep) + len(passage):
                raise too_long(cut, i, len(passage), len(row) - len(first) - len(self.sep))
            rows.append(row + self.sep + self.prompt)
        return rows
