"""Qwen3-VL-Reranker prompts: chat text with image placeholders, ids, and 3-D positions.

The authors' rule (``Qwen3VLReranker.format_mm_instruction`` and the Qwen3-VL chat template):
a system turn with the yes/no judgement sentence, then one user turn whose parts are
concatenated with nothing between them: ``"<Instruct>: " + instruction``, ``"<Query>:"``, the
query's images, its text, ``"\\n<Document>:"``, the document's images, its text (a side with
no text and no image is the text ``"NULL"``; an empty text is empty); each image is
``<|vision_start|><|image_pad|><|vision_end|>``; then the generation prompt
``<|im_start|>assistant\\n``. The whole text is tokenized at once (a piece boundary such
as ``":" + text`` is a single pre-token), and each ``<|image_pad|>`` is expanded to the
image's merged-token count, as the processor does.

A prompt over ``max_length`` tokens loses the end of its document text (the tokens that start
inside it); a prompt that still does not fit (images, a long query) is refused.

:func:`rope_positions` is ``Qwen3VLModel.get_rope_index`` for one row: text tokens count on
from the previous maximum, an image's tokens take ``(0, row, column)`` of its merged grid
offset by the position where it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from reranker.errors import InputTooLongError, ModelLoadError
from reranker.types import Truncation

__all__ = [
    "DEFAULT_INSTRUCTION",
    "SYSTEM_PROMPT",
    "Part",
    "PromptTokenizer",
    "Row",
    "prompt_text",
    "rope_positions",
]

SYSTEM_PROMPT = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct '
    'provided. Note that the answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


@dataclass(frozen=True)
class Part:
    """One side of a pair: its text and its images' merged grids ``(t, h, w)``."""

    text: str | None = None
    grids: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class Row:
    """One prompt: its ids and positions ``[3, len]``; ``images`` says which side's image each
    ``<|image_pad|>`` run is (``("query", i)`` or ``("document", i)``), in order."""

    ids: list[int]
    positions: np.ndarray
    images: tuple[tuple[str, int], ...]


def _side(prefix: str, part: Part) -> str:
    if not part.grids and part.text is None:
        return prefix + "NULL"
    return prefix + IMAGE * len(part.grids) + (part.text or "")


def prompt_text(instruction: str, query: Part, document: Part) -> str:
    """The chat text of one pair, one ``<|image_pad|>`` per image."""
    return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
            f"<Instruct>: {instruction}{_side('<Query>:', query)}"
            f"{_side(chr(10) + '<Document>:', document)}<|im_end|>\n<|im_start|>assistant\n")


def rope_positions(ids: Sequence[int], image_pad: int,
                   grids: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """``[3, len(ids)]`` positions of an expanded row (``grids``: merged, in order)."""
    out = np.empty((3, len(ids)), np.int64)
    start, nxt, pos = 0, 0, 0
    n = len(ids)
    for t, h, w in grids:
        first = next(j for j in range(start, n) if ids[j] == image_pad)
        out[:, start:first] = np.arange(pos, pos + first - start)
        pos += first - start
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
        count = t * h * w
        out[:, first:first + count] = np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + pos
        pos = int(out[:, first:first + count].max()) + 1
        start = nxt = first + count
    out[:, nxt:] = np.arange(pos, pos + n - nxt)
    return out


class PromptTokenizer:
    """Token ids and positions of Qwen3-VL-Reranker prompts.

    Args:
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per prompt, image tokens and template included.
    """

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        try:
            tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelLoadError(f"cannot read tokenizer {tokenizer_file}: {exc}") from exc
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        self.max_length = max_length

        def single(token: str) -> int:
            ids = tok.encode(token, add_special_tokens=False).ids
            if len(ids) != 1:
                raise ModelLoadError(f"the tokenizer splits {token!r} into {len(ids)} tokens; "
                                     "Qwen3-VL-Reranker needs it as one")
            return int(ids[0])

        self.yes_id, self.no_id = single("yes"), single("no")
        self.image_pad = single("<|image_pad|>")
        self.pad_id = int(tok.token_to_id("<|endoftext|>") or 0)
        self.suffix = tok.encode("<|im_end|>\n<|im_start|>assistant\n",
                                 add_special_tokens=False).ids

    @property
    def head_token_ids(self) -> tuple[int, ...]:
        """``(no, yes)``: the score row is ``lm_head[yes] - lm_head[no]``."""
        return (self.no_id, self.yes_id)

    def encode(self, instruction: str, query: Part, documents: Sequence[Part],
               truncation: Truncation | None = None) -> list[Row]:
        """One row per document (see the module docstring for the cutting rule)."""
        cut = truncation or Truncation()
        rows: list[Row] = []
        for i, doc in enumerate(documents):
            text = prompt_text(instruction, query, doc)
            enc = self._tok.encode(text, add_special_tokens=False)
            ids = list(enc.ids)
            grids = [*query.grids, *doc.grids]
            extra = sum(t * h * w - 1 for t, h, w in grids)
            over = len(ids) + extra - self.max_length
            doc_limit = cut.max_document_tokens
            if over > 0 or doc_limit is not None:
                ids = self._cut_document(ids, enc.offsets, text, doc, over, doc_limit, cut, i)
            expanded: list[int] = []
            grid_iter = iter(grids)
            for token in ids:
                if token == self.image_pad:
                    t, h, w = next(grid_iter)
                    expanded += [token] * (t * h * w)
                else:
                    expanded.append(token)
            sides = tuple([("query", j) for j in range(len(query.grids))]
                          + [("document", j) for j in range(len(doc.grids))])
            rows.append(Row(expanded, rope_positions(expanded, self.image_pad, grids), sides))
        return rows

    def _cut_document(self, ids: list[int], offsets: list[tuple[int, int]], text: str,
                      doc: Part, over: int, limit: int | None, cut: Truncation, i: int
                      ) -> list[int]:
        where = f"{cut.field}[{cut.index_offset + i}]"
        end = len(ids) - len(self.suffix)
        start = end
        if doc.text:
            begin = len(text) - len("<|im_end|>\n<|im_start|>assistant\n") - len(doc.text)
            start = next((j for j in range(end) if offsets[j][0] >= begin), end)
        own = end - start
        drop = max(over, 0, own - limit if limit is not None else 0)
        if over > 0 and not cut.allow:
            raise InputTooLongError(
                f"{where} takes {self.max_length + over} tokens with the "
                f"query, images and instruction; the window holds {self.max_length}",
                param=where)
        if drop > own:
            raise InputTooLongError(
                f"{where}: the prompt needs {over} tokens fewer than it has, but its document "
                f"text has {own}; images and the query alone exceed max_length "
                f"{self.max_length} (lower image max_pixels or raise max_length)", param=where)
        if drop == 0:
            return ids
        kept = ids[start:end]
        kept = kept[drop:] if cut.side == "left" else kept[:own - drop]
        return ids[:start] + kept + ids[end:]
