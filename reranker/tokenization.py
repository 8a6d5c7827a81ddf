"""Pair tokenization: (query, document) text to token ids with the model's own tokenizer.json.

What the model is fed must not depend on settings a repo's ``tokenizer.json`` happens to carry,
so padding is switched off and truncation is set here:

* the pair is truncated to the model's window with ``only_second``: the query is kept and the
  document is cut, matching ``transformers`` ``tokenizer(query, doc, truncation="only_second")``;
* a query that takes more than half the window is the exception: then both sides are cut with
  ``longest_first``, matching ``truncation=True`` (``only_second`` would have no room left);
* with ``chunk=True`` a long document is split into overlapping windows (the tokenizer's
  overflow with a stride), each window paired with the full query.

No padding happens here; batching pads later, by length group (``reranker.onnx_model``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from reranker.errors import ModelLoadError

__all__ = ["EncodedPairs", "PairTokenizer"]


@dataclass
class EncodedPairs:
    """Token ids for a set of pairs, one row per scored window.

    ``owner[i]`` is the document that row ``i`` belongs to; without chunking it is ``i``.
    """

    ids: list[list[int]]
    type_ids: list[list[int]]
    owner: list[int]

    def per_document(self, rows: np.ndarray, documents: int) -> np.ndarray:
        """One score per document from one score per row: a document keeps its best window's."""
        if len(rows) == documents:
            return np.asarray(rows, dtype=np.float32)
        per_doc = np.full(documents, -np.inf, dtype=np.float32)
        np.maximum.at(per_doc, np.asarray(self.owner, dtype=np.int64), rows)
        return per_doc


class PairTokenizer:
    """Encodes (query, document) pairs for one model.

    Args:
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per pair, special tokens included.
    """

    def __init__(self, tokenizer_file: str | Path, max_length: int) -> None:
        try:
            base = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelLoadError(f"cannot read tokenizer {tokenizer_file}: {exc}") from exc
        self.max_length = max_length
        self.specials = base.num_special_tokens_to_add(is_pair=True)
        if max_length <= self.specials + 2:
            raise ModelLoadError(f"max_length {max_length} leaves no room for text")
        base.no_padding()
        base.no_truncation()
        self._plain = base
        self._only_second = Tokenizer.from_str(base.to_str())
        self._only_second.enable_truncation(max_length, strategy="only_second")
        self._longest_first = Tokenizer.from_str(base.to_str())
        self._longest_first.enable_truncation(max_length, strategy="longest_first")
        self._chunkers: dict[int, Tokenizer] = {}
        self.pad_id = _pad_id(base, Path(tokenizer_file).parent)

    def query_length(self, query: str) -> int:
        """Tokens of the query alone, without special tokens."""
        return len(self._plain.encode(query, add_special_tokens=False).ids)

    def _chunker(self, stride: int) -> Tokenizer:
        tok = self._chunkers.get(stride)
        if tok is None:
            tok = Tokenizer.from_str(self._plain.to_str())
            tok.enable_truncation(self.max_length, stride=stride, strategy="only_second")
            self._chunkers[stride] = tok
        return tok

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        chunk: bool = False,
        overlap: int = 0,
        max_chunks: int = 1,
    ) -> EncodedPairs:
        """Encode every (query, document) pair; see the module docstring for truncation."""
        pairs = [(query, doc) for doc in documents]
        q_len = self.query_length(query)
        room = self.max_length - self.specials - q_len
        if room < self.max_length // 2:
            return _collect(self._longest_first.encode_batch(pairs), None, 1)
        if not chunk:
            return _collect(self._only_second.encode_batch(pairs), None, 1)
        stride = min(overlap, room // 2)
        return _collect(self._chunker(stride).encode_batch(pairs), True, max_chunks)


def _collect(encodings: list[Encoding], chunks: bool | None, max_chunks: int) -> EncodedPairs:
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    owner: list[int] = []
    for i, enc in enumerate(encodings):
        windows = [enc, *enc.overflowing[: max_chunks - 1]] if chunks else [enc]
        for window in windows:
            ids.append(window.ids)
            type_ids.append(window.type_ids)
            owner.append(i)
    return EncodedPairs(ids=ids, type_ids=type_ids, owner=owner)


def _pad_id(tokenizer: Tokenizer, folder: Path) -> int:
    """The id used for padding: config.json's ``pad_token_id``, else the tokenizer's pad token."""
    config = folder / "config.json"
    if config.is_file():
        try:
            pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token_id")
        except (OSError, ValueError):
            pad = None
        if isinstance(pad, int):
            return pad
    for token in ("[PAD]", "<pad>", "<|padding|>", "[pad]"):
        tid = tokenizer.token_to_id(token)
        if tid is not None:
            return tid
    return 0
