"""Pair tokenization: (query, document) text to token ids with the model's own tokenizer.json.

What the model is fed must not depend on settings a repo's ``tokenizer.json`` happens to carry,
so padding is switched off and truncation is decided here:

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

The cut is made on the ids of the query and of each document, encoded apart, and only then is the
pair put in the model's template (its special tokens and type ids, read from the tokenizer's
post-processor). ``tokenizers``' own truncation would build every overflow window of both texts,
in every combination, before all but the first are dropped: about 770 windows, 12 s and 4.5 GB
for a 10,000-character query with four 100,000-character documents. Here the work is one pass
over each text plus the windows that are kept (at most ``max_chunks`` per document), and the ids
are the ones ``tokenizers`` would keep. Every window carries the template's type ids, where
``tokenizers`` gives a chunk's later windows the raw pair type (1) even for XLM-R, whose template
says 0 and whose type table may have a single row.

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
# Documents are encoded this many at a time, so a request's full token lists are never all held
# at once: only the windows kept from them are.
_ENCODE_GROUP = 16
_PROBE_TEXTS = ("a", "hello", "0", ".", "x y")


@dataclass
class EncodedPairs:
    """Token ids for a set of pairs, one row per scored window.

    ``owner[i]`` is the document that row ``i`` belongs to; without chunking it is ``i``.
    ``char_spans[i]``, when chunking, is the character span ``(start, end)`` of row ``i``'s
    window in its document (from the tokenizer's offsets); ``None`` without chunking.
    """

    ids: list[list[int]]
    type_ids: list[list[int]]
    owner: list[int]
    char_spans: list[tuple[int, int]] | None = None

    @property
    def tokens(self) -> int:
        """Tokens over every row: what the model runs, special tokens included."""
        return sum(len(row) for row in self.ids)

    def best_spans(self, rows: np.ndarray, documents: int) -> list[tuple[int, int] | None] | None:
        """Per document, the character span of its best-scoring window (the first of equal
        ones); ``None`` without chunking."""
        if self.char_spans is None:
            return None
        best: list[tuple[int, int] | None] = [None] * documents
        top = np.full(documents, -np.inf)
        for row, (doc, span) in enumerate(zip(self.owner, self.char_spans, strict=True)):
            if best[doc] is None or rows[row] > top[doc]:
                best[doc], top[doc] = span, rows[row]
        return best

    def per_document(self, rows: np.ndarray, documents: int) -> np.ndarray:
        """One score per document from one score per row: a document keeps its best window's."""
        if len(rows) == documents:
            return np.asarray(rows, dtype=np.float32)
        per_doc = np.full(documents, -np.inf, dtype=np.float32)
        np.maximum.at(per_doc, np.asarray(self.owner, dtype=np.int64), rows)
        return per_doc


@dataclass
class TokenizerWork:
    """What a :class:`PairTokenizer` has built so far: pair windows and their tokens."""

    windows: int = 0
    tokens: int = 0


# One piece of a pair template: special tokens (``sequence`` None) or a sequence (0 the query,
# 1 the document) with the type id its tokens get.
_Piece = tuple[int | None, list[int], list[int]]


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
        self._template = _pair_template(base, tokenizer_file)
        self.work = TokenizerWork()
        self.pad_id = _pad_id(base, Path(tokenizer_file).parent)

    def query_length(self, query: str) -> int:
        """Tokens of the query alone, without special tokens."""
        return len(self._plain.encode(query, add_special_tokens=False).ids)

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
        q_ids = self._plain.encode(query, add_special_tokens=False).ids
        room = self.max_length - self.specials - len(q_ids)
        longest_first = room < self.max_length // 2
        stride = min(overlap, room // 2)
        out = EncodedPairs(ids=[], type_ids=[], owner=[], char_spans=[] if chunk else None)
        for first in range(0, len(documents), _ENCODE_GROUP):
            group = self._plain.encode_batch(
                list(documents[first : first + _ENCODE_GROUP]), add_special_tokens=False)
            for i, enc in enumerate(group, start=first):
                d_ids = enc.ids
                if longest_first:
                    pairs = [self._longest_first(q_ids, d_ids, cut, i)]
                    if out.char_spans is not None:
                        kept = len(pairs[0][1])
                        start = 0 if cut.side == "right" else len(d_ids) - kept
                        out.char_spans += _char_spans(
                            enc, [(start, start + kept)], len(documents[i]))
                elif chunk:
                    windows = self._chunk_spans(len(d_ids), room, stride, max_chunks, cut, i)
                    pairs = [(q_ids, d_ids[a:b]) for a, b in windows]
                    if out.char_spans is not None:
                        out.char_spans += _char_spans(enc, windows, len(documents[i]))
                else:
                    pairs = [(q_ids, self._only_second(q_ids, d_ids, room, cut, i))]
                for q_part, d_part in pairs:
                    ids, type_ids = self._assemble(q_part, d_part)
                    out.ids.append(ids)
                    out.type_ids.append(type_ids)
                    out.owner.append(i)
        return out

    def _assemble(self, q_ids: list[int], d_ids: list[int]) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        type_ids: list[int] = []
        for sequence, piece_ids, piece_types in self._template:
            if sequence is None:
                ids += piece_ids
                type_ids += piece_types
            else:
                part = q_ids if sequence == 0 else d_ids
                ids += part
                type_ids += piece_types * len(part)
        self.work.windows += 1
        self.work.tokens += len(ids)
        return ids, type_ids

    def _only_second(
        self, q_ids: list[int], d_ids: list[int], room: int, cut: Truncation, i: int
    ) -> list[int]:
        if len(d_ids) > room and not cut.allow:
            self._refuse(len(q_ids) + len(d_ids), cut, i)
        keep = room if cut.max_document_tokens is None else min(room, cut.max_document_tokens)
        return _cut(d_ids, keep, cut.side)

    def _longest_first(
        self, q_ids: list[int], d_ids: list[int], cut: Truncation, i: int
    ) -> tuple[list[int], list[int]]:
        """Both texts cut as ``tokenizers``' ``longest_first`` cuts them (its arithmetic, not
        the one-token-at-a-time loop of ``transformers``' slow tokenizers)."""
        limit = self.max_length - self.specials
        n_q, n_d = len(q_ids), len(d_ids)
        if n_q + n_d > limit:
            if not cut.allow:
                self._refuse(n_q + n_d, cut, i)
            short, long_ = min(n_q, n_d), max(n_q, n_d)
            long_ = short if short > limit else max(short, limit - short)
            if short + long_ > limit:
                short, long_ = limit // 2, limit // 2 + limit % 2
            n_q, n_d = (short, long_) if len(q_ids) <= len(d_ids) else (long_, short)
        keep = n_d if cut.max_document_tokens is None else min(n_d, cut.max_document_tokens)
        return _cut(q_ids, n_q, cut.side), _cut(d_ids, keep, cut.side)

    def _chunk_spans(
        self, length: int, room: int, stride: int, max_chunks: int, cut: Truncation, i: int
    ) -> list[tuple[int, int]]:
        """The document's windows as (start, stop) token positions, only those that are kept."""
        spans = _window_spans(length, room, stride)
        if not cut.allow and len(spans) > max_chunks:
            field = cut.field
            raise InputTooLongError(
                f"{field}[{i + cut.index_offset}] needs {len(spans)} windows of "
                f"{self.max_length} tokens; at most {max_chunks} are scored per document "
                "(truncation was not allowed)",
                param=field,
            )
        keep = cut.max_document_tokens
        if keep is not None and length > keep:
            if cut.side == "right":
                spans = _window_spans(keep, room, stride)
            else:
                spans = _clip_to_tail(spans, length - keep)
        if len(spans) > max_chunks:
            spans = spans[-max_chunks:] if cut.side == "left" else spans[:max_chunks]
        return spans

    def _refuse(self, total_text: int, cut: Truncation, i: int) -> None:
        field = cut.field
        raise InputTooLongError(
            f"{field}[{i + cut.index_offset}] and the query take {total_text + self.specials} "
            f"tokens; the model reads at most {self.max_length} (allow truncation to cut the "
            "document)",
            param=field,
        )


def _char_spans(
    enc: Encoding, windows: list[tuple[int, int]], length: int
) -> list[tuple[int, int]]:
    """Token windows as character spans of the document they were cut from."""
    if len(windows) == 1 and windows[0] == (0, len(enc.ids)):
        return [(0, length)]  # the whole text: no offsets needed
    # Two tokens' offsets per window: the whole offset list of a long text costs more than
    # the encoding it came with.
    spans: list[tuple[int, int]] = []
    for a, b in windows:
        first = enc.token_to_chars(a) if b > a else None
        last = enc.token_to_chars(b - 1) if b > a else None
        spans.append((first[0], last[1]) if first and last else (0, 0))
    return spans


def _cut(ids: list[int], keep: int, side: str) -> list[int]:
    if len(ids) <= keep:
        return ids
    return ids[:keep] if side == "right" else ids[len(ids) - keep :]


def _window_spans(length: int, room: int, stride: int) -> list[tuple[int, int]]:
    """``tokenizers``' overflow windows of a text of ``length`` tokens: ``room`` tokens each,
    each starting ``room - stride`` after the last, until one reaches the end."""
    if length <= room:
        return [(0, length)]
    spans: list[tuple[int, int]] = []
    for start in range(0, length, room - stride):
        spans.append((start, min(start + room, length)))
        if start + room >= length:
            break
    return spans


def _clip_to_tail(spans: list[tuple[int, int]], lo: int) -> list[tuple[int, int]]:
    """The windows less their tokens before position ``lo``; windows left empty, or inside
    another window once clipped, are dropped."""
    kept: list[tuple[int, int]] = []
    for start, stop in spans:
        start = max(start, lo)
        if start >= stop:
            continue
        if kept and kept[-1][0] <= start and stop <= kept[-1][1]:
            continue  # inside the previous window
        while kept and start <= kept[-1][0] and kept[-1][1] <= stop:
            kept.pop()  # the previous window is inside this one
        kept.append((start, stop))
    return kept


def _pair_template(tokenizer: Tokenizer, source: str | Path) -> list[_Piece]:
    """The model's pair layout, read by running its post-processor on two probe texts: where
    its special tokens go and which type id each text's tokens get."""
    probes = [enc for enc in (tokenizer.encode(t, add_special_tokens=False)
                              for t in _PROBE_TEXTS) if enc.ids]
    if not probes:
        raise ModelLoadError(f"tokenizer {source} gives no tokens for any probe text")
    first, second = probes[0], probes[-1]
    pair = tokenizer.post_process(first, second, add_special_tokens=True)
    pieces: list[_Piece] = []
    texts: list[int] = []
    for tid, type_id, special in zip(pair.ids, pair.type_ids, pair.special_tokens_mask,
                                     strict=True):
        last = pieces[-1] if pieces else None
        if special:
            if last is not None and last[0] is None:
                last[1].append(tid)
                last[2].append(type_id)
            else:
                pieces.append((None, [tid], [type_id]))
            continue
        sequence = 0 if len(texts) < len(first.ids) else 1
        texts.append(tid)
        if last is None or last[0] != sequence:
            pieces.append((sequence, [], [type_id]))
        elif last[2] != [type_id]:
            raise ModelLoadError(f"tokenizer {source}: mixed type ids within one text")
    specials = sum(len(ids) for sequence, ids, _ in pieces if sequence is None)
    if (texts != first.ids + second.ids
            or [seq for seq, _, _ in pieces if seq is not None] != [0, 1]
            or specials != tokenizer.num_special_tokens_to_add(is_pair=True)):
        raise ModelLoadError(f"tokenizer {source}: cannot read its pair template from {pair.ids}")
    return pieces


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
