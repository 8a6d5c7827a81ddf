"""mxbai-rerank v2 prompts as token ids, cut as mixedbread's ``MxbaiRerankV2.prepare_inputs``.

``max_length`` is the package's: tokens of query + document, the template not counted (clamped
so that the template fits ``model_max_length``). The query part (``query: {q}``, with an
instruction ``instruction: {i}\\nquery: {q}``) is cut to ``max_length * 3 // 4`` tokens, the
document part ``document: {d}`` to ``min(model_max_length - len(query), max_length)``, and the
two joined by ``\\n`` are cut to ``max_length`` by the document's end; then the chat prefix goes
first and ``\\n`` + the task prompt + the chat suffix last. The score reads the logits of ``1``
and ``0`` at the last token.

``document: {d}`` is tokenized as ``document:`` and `` {d}``: the Qwen2 pre-tokenizer always
splits before the space, so the ids are those of the whole text (the fidelity tests check it
against ``transformers``), and the request's ``max_document_tokens`` / ``side`` cut the
document's own ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reranker.errors import ModelLoadError
from reranker.models.prompts._ids import PromptTokens, only_second, too_long
from reranker.types import Truncation

__all__ = [
    "CHAT_PREFIX",
    "CHAT_SUFFIX",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MAX_LENGTH",
    "TASK_PROMPT",
    "MxbaiV2Prompt",
    "PromptTokenizer",
]

CHAT_PREFIX = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n<|im_start|>user\n")
CHAT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
TASK_PROMPT = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
DEFAULT_MAX_LENGTH = 8192
"""``MxbaiRerankV2``'s default ``max_length``."""
DEFAULT_INSTRUCTION = None
"""The package adds no instruction unless given one."""


class MxbaiV2Prompt:
    """Prompt ids of (instruction, query, document) for an mxbai-rerank v2 checkpoint.

    Args:
        folder: the model folder (``tokenizer.json``, ``tokenizer_config.json``).
        max_length: the package's ``max_length`` (query + document tokens).
        window: instead of ``max_length``, the most tokens per prompt, template included
            (the library's ``max_length``): the package's is ``window`` minus the template.
    """

    takes_instruction = True

    def __init__(self, folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH, *,
                 window: int | None = None) -> None:
        self.tokens = tokens = PromptTokens(folder)
        self.one, self.zero = tokens.first_id("1"), tokens.first_id("0")
        self.prefix = tokens.ids(CHAT_PREFIX)
        self.suffix = tokens.ids(CHAT_SUFFIX)
        self.sep = tokens.ids("\n")
        self.task = tokens.ids(TASK_PROMPT)
        self.label = tokens.ids("document:")
        declared = tokens.config.get("model_max_length")
        self.model_max_length = declared if isinstance(declared, int) and declared > 0 else 2**31
        fixed = len(self.prefix) + len(self.task) + len(self.suffix) + len(self.sep)
        if window is not None:
            max_length = window - fixed
            if max_length < 8:
                raise ModelLoadError(f"max_length {window} leaves {max_length} tokens for the "
                                     f"query and document after the {fixed}-token template")
        self.max_length = min(max_length, self.model_max_length - fixed)
        self.window = self.max_length + fixed
        """Tokens of the longest prompt."""
        self.pad_id = tokens.pad_id()

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """``(0, 1)``: the rows of the head, so ``logit[1] - logit[0]`` is the score."""
        return (self.zero, self.one)

    def encode(self, instruction: str | None, query: str, documents: Sequence[str],
               truncation: Truncation | None = None) -> list[list[int]]:
        """One prompt's ids per document (``instruction`` ``None`` or empty: none)."""
        cut = truncation or Truncation()
        text = f"query: {query}"
        if instruction:
            text = f"instruction: {instruction}\n{text}"
        q = self.tokens.ids(text)[: self.max_length * 3 // 4]
        doc_cap = min(self.model_max_length - len(q), self.max_length)
        rows = []
        for i, content in enumerate(self.tokens.ids_batch([" " + d for d in documents])):
            full = self.label + content
            authors = only_second(q, self.sep + full[:doc_cap], self.max_length)
            kept = len(authors) - len(q) - len(self.sep) - len(self.label)
            if kept < 0:  # a window too small for the label: the package's ids as they are
                rows.append(self.prefix + authors + self.sep + self.task + self.suffix)
                continue
            if not cut.allow and kept < len(content):
                raise too_long(cut, i, len(content), kept)
            if cut.max_document_tokens is not None:
                kept = min(kept, cut.max_document_tokens)
            body = content[len(content) - kept:] if cut.side == "left" else content[:kept]
            rows.append(self.prefix + q + self.sep + self.label + body + self.sep + self.task
                        + self.suffix)
        return rows


class PromptTokenizer(MxbaiV2Prompt):
    """The decoder runner's form: ``max_length`` is the prompt's, template included."""

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        super().__init__(Path(tokenizer_file).parent, window=max_length)
