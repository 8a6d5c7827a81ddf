"""Qwen3-Reranker prompts as token ids, cut without building discarded windows.

The model card's rule: ``prefix + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>:
{doc}" + suffix``, the middle part tokenized without special tokens and cut to
``max_length - len(prefix) - len(suffix)`` tokens (``longest_first`` on one sequence: its end is
cut), then wrapped in the prefix and suffix ids.

Here the middle part is tokenized in two pieces, once per request for the part up to
``<Document>:`` and once per document for `` {doc}``, and the ids are cut by hand. The pieces
meet where the Qwen2 pre-tokenizer always splits (the ``:`` before the document's leading
space cannot join a pre-token with it), so the ids equal tokenizing the whole text; the
fidelity tests check it against ``transformers``.

A prompt module gives the decoder runner ``DEFAULT_INSTRUCTION`` (or ``None`` for families that
take no instruction) and ``PromptTokenizer(tokenizer_file, max_length)`` with ``encode``,
``pad_id`` and ``head_token_ids`` (the token ids the graph's head reads, in output order).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from reranker.errors import InputTooLongError, ModelLoadError
from reranker.types import Truncation

__all__ = ["DEFAULT_INSTRUCTION", "PROMPT_PREFIX", "PROMPT_SUFFIX", "PromptTokenizer"]

PROMPT_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
_PAD_TOKENS = ("<|endoftext|>", "<|im_end|>")


class PromptTokenizer:
    """Token ids of (instruction, query, document) prompts for one decoder reranker.

    Args:
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per prompt, prefix and suffix included.
    """

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        try:
            tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelLoadError(f"cannot read tokenizer {tokenizer_file}: {exc}") from exc
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        self.yes_id, self.no_id = self._single_token("yes"), self._single_token("no")
        self.prefix = self._ids(PROMPT_PREFIX)
        self.suffix = self._ids(PROMPT_SUFFIX)
        self.max_length = max_length
        self.budget = max_length - len(self.prefix) - len(self.suffix)
        if self.budget < 8:
            raise ModelLoadError(
                f"max_length {max_length} leaves {self.budget} tokens for text after the "
                f"{len(self.prefix) + len(self.suffix)}-token prompt template"
            )
        pad = next((tok.token_to_id(t) for t in _PAD_TOKENS if tok.token_to_id(t) is not None),
                   None)
        self.pad_id = 0 if pad is None else int(pad)

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """``(no, yes)``: the rows of the yes/no head, so ``logit[1] - logit[0]`` is the score."""
        return (self.no_id, self.yes_id)

    def _ids(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def _single_token(self, word: str) -> int:
        ids = self._ids(word)
        if len(ids) != 1:
            raise ModelLoadError(
                f"the tokenizer splits {word!r} into {len(ids)} tokens; a yes/no reranker needs "
                "'yes' and 'no' to be single tokens"
            )
        return int(ids[0])

    def encode(
        self,
        instruction: str,
        query: str,
        documents: Sequence[str],
        truncation: Truncation | None = None,
    ) -> list[list[int]]:
        """One prompt's ids per document, cut to the window.

        ``truncation`` can cut documents shorter (``max_document_tokens``), from the left
        (``side``), or refuse prompts that do not fit (``allow=False``:
        :class:`~reranker.errors.InputTooLongError`).
        """
        cut = truncation or Truncation()
        head = self._ids(f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>:")
        docs = self._tok.encode_batch([" " + d for d in documents], add_special_tokens=False)
        room = max(0, self.budget - len(head))
        rows: list[list[int]] = []
        for i, encoding in enumerate(docs):
            ids = encoding.ids
            keep = len(ids)
            if cut.max_document_tokens is not None:
                keep = min(keep, cut.max_document_tokens)
            if not cut.allow and (len(head) + len(ids) > self.budget):
                raise InputTooLongError(
                    f"{cut.field}[{cut.index_offset + i}] takes {len(head) + len(ids)} tokens "
                    f"with the query and instruction; the window holds {self.budget}",
                    param=f"{cut.field}[{cut.index_offset + i}]",
                )
            keep = min(keep, room)
            kept = ids[len(ids) - keep:] if cut.side == "left" else ids[:keep]
            # A query longer than the window is cut too (the model card's longest_first).
            rows.append(self.prefix + (head + kept)[: self.budget] + self.suffix)
        return rows
