"""Pair tokenization: (query, document) text to token ids with the model's own tokenizer.json.

What the model is fed must not depend on settings a repo's ``tokenizer.json`` happens to carry,
so padding is switched off and truncation is set here:

* the pair is truncated to the model's window with ``only_second``: the query is kept and the
  document is cut, matching ``transformers`` ``tokenizer(query, doc, truncation="only_second")``;
* a query that takes more than half the window is the exception: then both sides are cut with
  ``longest_first``, matching ``truncation=True`` (``only_second`` would have no room left);
* with ``chunk=True`` a long document is split into overlapping windows (the tokenizer's
  overflow with a stride), each window paired with the full query.

A request can tighten this with :class:`Truncation`: cut documents to a number of tokens (Cohere's
``max_tokens_per_doc``), cut from the left and keep the end (TEI's ``truncation_direction``),
refuse pairs that do not fit instead of cutting them (TEI's ``truncate: false``), or allow fewer
windows per document (Cohere v1's ``max_chunks_per_doc``).

No padding happens here; batching pads later, by length group (``reranker.onnx_model``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from reranker.errors import InputTooLongError, ModelLoadError
from reranker.model_folder import read_model_config
from reranker.types import Truncation

__all__ = ["EncodedPairs", "PairTokenizer"]


_DEFAULT_TRUNCATION = Truncation()


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
        self._truncators: dict[tuple[str, str, int], Tokenizer] = {}
        for strategy in ("only_second", "longest_first"):
            self._truncating(strategy, "right")
        self.pad_id = _pad_id(base, Path(tokenizer_file).parent)

    def query_length(self, query: str) -> int:
        """Tokens of the query alone, without special tokens."""
        return len(self._plain.encode(query, add_special_tokens=False).ids)

    def _truncating(self, strategy: str, side: str, stride: int = 0) -> Tokenizer:
        key = (strategy, side, stride)
        tok = self._truncators.get(key)
        if tok is None:
            tok = Tokenizer.from_str(self._plain.to_str())
            tok.enable_truncation(self.max_length, stride=stride, strategy=strategy,
                                  direction=side)
            self._truncators[key] = tok
        return tok

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        chunk: bool = False,
        overlap: int = 0,
        max_chunks: int = 1,
        truncation: Truncation | None = None,
    ) -> EncodedPairs:
        """Encode every (query, document) pair; see the module docstring for truncation.

        Raises:
            InputTooLongError: ``truncation.allow`` is false and a pair does not fit.
        """
        cut = truncation or _DEFAULT_TRUNCATION
        if cut.max_chunks is not None:
            max_chunks = min(max_chunks, cut.max_chunks)
        pairs = [(query, doc) for doc in documents]
        q_len = self.query_length(query)
        room = self.max_length - self.specials - q_len
        if room < self.max_length // 2:
            encodings = self._truncating("longest_first", cut.side).encode_batch(pairs)
            chunk = False
        elif not chunk:
            encodings = self._truncating("only_second", cut.side).encode_batch(pairs)
        else:
            stride = min(overlap, room // 2)
            encodings = self._truncating("only_second", "right", stride).encode_batch(pairs)
        if not cut.allow:
            self._check_fits(query, documents, encodings, chunk, max_chunks, cut)
        if cut.max_document_tokens is None:
            return _collect(encodings, chunk, max_chunks, cut.side)
        if not chunk:
            return _collect_capped(encodings, cut.max_document_tokens, cut.side)
        bounds = self._cut_points(documents, cut.max_document_tokens, cut.side)
        return _collect(encodings, chunk, max_chunks, cut.side, bounds)

    def _check_fits(
        self, query: str, documents: Sequence[str], encodings: list[Encoding], chunk: bool,
        max_chunks: int, cut: Truncation,
    ) -> None:
        field = cut.field
        for i, enc in enumerate(encodings):
            where = f"{field}[{i + cut.index_offset}]"
            windows = 1 + len(enc.overflowing)
            if chunk and windows > max_chunks:
                raise InputTooLongError(
                    f"{where} needs {windows} windows of {self.max_length} tokens; at "
                    f"most {max_chunks} are scored per document (truncation was not allowed)",
                    param=field,
                )
            if not chunk and windows > 1:
                total = len(self._plain.encode(query, documents[i]).ids)
                raise InputTooLongError(
                    f"{where} and the query take {total} tokens; the model reads at most "
                    f"{self.max_length} (allow truncation to cut the document)",
                    param=field,
                )

    def _cut_points(
        self, documents: Sequence[str], keep: int, side: str
    ) -> list[tuple[int, int] | None]:
        """Per document, the character span its first (or last) ``keep`` tokens start in."""
        bounds: list[tuple[int, int] | None] = []
        for enc in self._plain.encode_batch(list(documents), add_special_tokens=False):
            offsets = enc.offsets
            if len(offsets) <= keep:
                bounds.append(None)
            elif side == "right":
                bounds.append((0, offsets[keep][0]))
            else:
                bounds.append((offsets[len(offsets) - keep][0], 1 << 62))
        return bounds


def _collect(
    encodings: list[Encoding], chunk: bool, max_chunks: int, side: str,
    bounds: list[tuple[int, int] | None] | None = None,
) -> EncodedPairs:
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    owner: list[int] = []
    for i, enc in enumerate(encodings):
        every = [enc, *enc.overflowing] if chunk else [enc]
        span = bounds[i] if bounds else None
        windows = [(w.ids, w.type_ids) for w in every] if span is None else _cut_windows(
            every, span)
        if len(windows) > max_chunks:
            windows = windows[-max_chunks:] if side == "left" else windows[:max_chunks]
        for window_ids, window_types in windows:
            ids.append(window_ids)
            type_ids.append(window_types)
            owner.append(i)
    return EncodedPairs(ids=ids, type_ids=type_ids, owner=owner)


def _cut_windows(
    windows: list[Encoding], span: tuple[int, int]
) -> list[tuple[list[int], list[int]]]:
    """The windows without the document tokens that start outside ``span`` (character
    offsets); windows left empty, or holding only tokens another window holds, are dropped."""
    lo, hi = span
    kept: list[tuple[list[int], list[int], int, int]] = []
    for enc in windows:
        seq = enc.sequence_ids
        keep = [s != 1 or lo <= off[0] < hi for s, off in zip(seq, enc.offsets, strict=True)]
        starts = [off[0] for s, off, k in zip(seq, enc.offsets, keep, strict=True)
                  if k and s == 1]
        if not starts:
            continue
        first, last = starts[0], starts[-1]
        if kept and kept[-1][2] <= first and last <= kept[-1][3]:
            continue  # inside the previous window
        while kept and first <= kept[-1][2] and kept[-1][3] <= last:
            kept.pop()  # the previous window is inside this one
        kept.append(([t for t, k in zip(enc.ids, keep, strict=True) if k],
                     [t for t, k in zip(enc.type_ids, keep, strict=True) if k], first, last))
    if not kept:  # no window reaches into the span: score the first one as it is
        return [(windows[0].ids, windows[0].type_ids)]
    return [(w_ids, w_types) for w_ids, w_types, _, _ in kept]


def _collect_capped(encodings: list[Encoding], keep: int, side: str) -> EncodedPairs:
    """Pairs whose document part is cut to ``keep`` tokens (exact: the same token ids)."""
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    for enc in encodings:
        seq = enc.sequence_ids
        doc = [i for i, s in enumerate(seq) if s == 1]
        if len(doc) <= keep:
            ids.append(enc.ids)
            type_ids.append(enc.type_ids)
            continue
        drop = set(doc[keep:] if side == "right" else doc[: len(doc) - keep])
        ids.append([t for i, t in enumerate(enc.ids) if i not in drop])
        type_ids.append([t for i, t in enumerate(enc.type_ids) if i not in drop])
    return EncodedPairs(ids=ids, type_ids=type_ids, owner=list(range(len(encodings))))


def _pad_id(tokenizer: Tokenizer, folder: Path) -> int:
    """The id used for padding: config.json's ``pad_token_id``, else the tokenizer's pad token."""
    pad = read_model_config(folder).get("pad_token_id")
    if isinstance(pad, int):
        return pad
    for token in ("[PAD]", "<pad>", "<|padding|>", "[pad]"):
        tid = tokenizer.token_to_id(token)
        if tid is not None:
            return tid
    return 0
