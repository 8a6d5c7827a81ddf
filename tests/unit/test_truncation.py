"""Per-request truncation: Cohere's max_tokens_per_doc, TEI's truncate and truncation_direction,
Cohere v1's max_chunks_per_doc.

Expected token ids are built by hand from ``transformers``' tokenization of the query and the
document alone (cut, then wrapped in the model's special tokens), and expected scores come from
the numpy reference forward pass over those ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reranker import InputTooLongError, InvalidInputError, Reranker
from reranker.backends.base import ScoreItem, SingleItemBackend, check_truncation
from reranker.testing.families.encoder_reference import reference_logits
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY
from reranker.tokenization import PairTokenizer
from reranker.types import Truncation

TOL = 1e-4
WINDOW = 64


def _tok(folder: Path):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def _ids(tok, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _pair(tok, q_ids: Sequence[int], d_ids: Sequence[int]) -> tuple[list[int], list[int] | None]:  # type: ignore[no-untyped-def]
    """The pair as the model reads it: BERT ``[CLS] q [SEP] d [SEP]``, XLM-R
    ``<s> q </s></s> d </s>``; type ids for BERT only."""
    cls, sep = tok.cls_token_id, tok.sep_token_id
    if "token_type_ids" in tok.model_input_names:
        return [cls, *q_ids, sep, *d_ids, sep], [0] * (len(q_ids) + 2) + [1] * (len(d_ids) + 1)
    return [cls, *q_ids, sep, sep, *d_ids, sep], None


def _raw(folder: Path, ids: list[int], types: list[int] | None) -> float:
    arr = np.array([ids])
    logits = reference_logits(folder, arr, np.ones_like(arr),
                              None if types is None else np.array([types]))[0]
    return float(logits[0] if len(logits) == 1 else logits[1] - logits[0])


def _room(tok, q_ids: Sequence[int], window: int) -> int:  # type: ignore[no-untyped-def]
    return window - len(_pair(tok, q_ids, [])[0])


@pytest.mark.parametrize("variant", ["bert1", "xlmr1"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_max_document_tokens_keeps_exactly_those_tokens(
    model_dirs: dict[str, Path], variant: str, side: str
) -> None:
    folder = model_dirs[variant]
    tok = _tok(folder)
    pt = PairTokenizer(folder / "tokenizer.json", WINDOW)
    docs = [LONG_DOCUMENT, DOCUMENTS[0], "", "Ünïcödé café naïve 中文 текст ß " * 3]
    q_ids = _ids(tok, QUERY)
    for keep in (1, 7, 20):
        enc = pt.encode(QUERY, docs, truncation=Truncation(max_document_tokens=keep, side=side))
        assert enc.owner == list(range(len(docs)))
        for row, doc in zip(enc.ids, docs, strict=True):
            d_ids = _ids(tok, doc)
            cut = d_ids[:keep] if side == "right" else d_ids[max(len(d_ids) - keep, 0):]
            assert row == _pair(tok, q_ids, cut)[0], (keep, doc[:20])
    # A cap larger than the window leaves the window's cut in place.
    big = pt.encode(QUERY, docs, truncation=Truncation(max_document_tokens=10_000, side=side))
    plain = pt.encode(QUERY, docs, truncation=Truncation(side=side))
    assert big.ids == plain.ids


@pytest.mark.parametrize("variant", ["bert1", "xlmr1"])
def test_left_side_keeps_the_end_of_long_documents(
    model_dirs: dict[str, Path], variant: str
) -> None:
    folder = model_dirs[variant]
    tok = _tok(folder)
    pt = PairTokenizer(folder / "tokenizer.json", WINDOW)
    q_ids = _ids(tok, QUERY)
    room = _room(tok, q_ids, WINDOW)
    d_ids = _ids(tok, LONG_DOCUMENT)
    assert len(d_ids) > room
    left = pt.encode(QUERY, [LONG_DOCUMENT], truncation=Truncation(side="left"))
    right = pt.encode(QUERY, [LONG_DOCUMENT])
    assert left.ids[0] == _pair(tok, q_ids, d_ids[-room:])[0]
    assert right.ids[0] == _pair(tok, q_ids, d_ids[:room])[0]
    # A query that takes most of the window: both sides are cut, from the left.
    long_query = " ".join([QUERY] * 10)
    enc = pt.encode(long_query, [LONG_DOCUMENT], truncation=Truncation(side="left"))
    assert len(enc.ids[0]) == WINDOW
    assert enc.ids[0][-3:] == _pair(tok, [], d_ids[-2:])[0][-3:]


def test_not_allowing_truncation_refuses_long_pairs(model_dirs: dict[str, Path]) -> None:
    folder = model_dirs["bert1"]
    pt = PairTokenizer(folder / "tokenizer.json", WINDOW)
    strict = Truncation(allow=False, field="texts", index_offset=5)
    short = pt.encode(QUERY, ["short one", "another short text"], truncation=strict)
    assert short.ids == pt.encode(QUERY, ["short one", "another short text"]).ids
    with pytest.raises(InputTooLongError) as info:
        pt.encode(QUERY, ["short one", LONG_DOCUMENT], truncation=strict)
    assert info.value.param == "texts"
    assert "texts[6]" in str(info.value) and f"at most {WINDOW}" in str(info.value)
    # Chunking: fine while the windows needed stay within max_chunks, refused beyond.
    windows = len(pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=8, max_chunks=100).ids)
    assert windows > 2
    ok = pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=8, max_chunks=windows,
                   truncation=Truncation(allow=False))
    assert len(ok.ids) == windows
    with pytest.raises(InputTooLongError, match=r"documents\[0\] needs"):
        pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=8, max_chunks=windows - 1,
                  truncation=Truncation(allow=False))


@pytest.mark.parametrize("variant", ["bert1", "xlmr1"])
def test_chunking_a_capped_document_windows_only_its_first_tokens(
    model_dirs: dict[str, Path], variant: str
) -> None:
    folder = model_dirs[variant]
    tok = _tok(folder)
    overlap = 8
    pt = PairTokenizer(folder / "tokenizer.json", WINDOW)
    q_ids = _ids(tok, QUERY)
    room = _room(tok, q_ids, WINDOW)
    d_ids = _ids(tok, LONG_DOCUMENT)
    for keep in (room // 2, room, room + 5, 2 * room + 3):
        enc = pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=overlap, max_chunks=100,
                        truncation=Truncation(max_document_tokens=keep))
        cut = d_ids[:keep]
        starts = range(0, max(len(cut) - overlap, 1), room - overlap)
        expected = [_pair(tok, q_ids, cut[s : s + room])[0] for s in starts]
        assert enc.ids == expected, keep
    # Keeping the end instead: the document's own windows, less the tokens before the last
    # ``keep``; together they hold exactly those tokens, each a contiguous run of them.
    keep = room + 5
    enc = pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=overlap, max_chunks=100,
                    truncation=Truncation(max_document_tokens=keep, side="left"))
    tail = d_ids[-keep:]
    head = len(_pair(tok, q_ids, [])[0]) - 1
    parts = [row[head:-1] for row in enc.ids]
    assert len(parts) == 2
    assert all(row[:head] == _pair(tok, q_ids, [])[0][:head] for row in enc.ids)
    assert parts[0] == tail[: len(parts[0])] and parts[-1] == tail[-len(parts[-1]):]
    assert len(parts[0]) + len(parts[1]) >= keep
    # Fewer windows per request with the end kept: the last windows.
    every = pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=overlap, max_chunks=100)
    last_two = pt.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=overlap, max_chunks=100,
                         truncation=Truncation(side="left", max_chunks=2))
    assert last_two.ids == every.ids[-2:]


@pytest.mark.parametrize("variant", ["bert2", "xlmr1"])
def test_reranker_max_tokens_per_doc_scores_equal_reference(
    model_dirs: dict[str, Path], variant: str
) -> None:
    folder = model_dirs[variant]
    tok = _tok(folder)
    docs = [LONG_DOCUMENT, *DOCUMENTS]
    keep = 12
    q_ids = _ids(tok, QUERY)
    expected = [_raw(folder, *_pair(tok, q_ids, _ids(tok, d)[:keep])) for d in docs]
    with Reranker({"type": "custom", "model_id": str(folder), "score_cache_size": 100}) as rr:
        full = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}
        got = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True,
                                                  max_tokens_per_doc=keep)}
        np.testing.assert_allclose([got[i] for i in range(len(docs))], expected, atol=TOL)
        assert abs(full[0] - got[0]) > 1e-3  # the long document really was cut
        # The score cache keeps the two apart, in both orders.
        again = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}
        assert again == full
        async_got = asyncio.run(rr.arerank(QUERY, docs, raw_scores=True,
                                           max_tokens_per_doc=keep))
        assert {r.index: r.score for r in async_got} == got


class _ProviderLike(SingleItemBackend):
    """A backend that cuts documents itself, like a provider API."""

    name = "provider-like"
    max_length = None
    scores_are_probabilities = True

    def score(self, query: str, documents: Sequence[str],
              truncation: Truncation | None = None) -> np.ndarray:
        check_truncation(self.name, self.truncation_fields, truncation)
        return np.linspace(0.1, 0.9, len(documents), dtype=np.float32)

    async def ascore(self, query: str, documents: Sequence[str],
                     truncation: Truncation | None = None) -> np.ndarray:
        return self.score(query, documents, truncation)

    def close(self) -> None:
        pass


def test_max_tokens_per_doc_is_refused_where_it_cannot_apply(
    model_dirs: dict[str, Path]
) -> None:
    rr = Reranker(backend=_ProviderLike())
    assert [r.index for r in rr.rerank(QUERY, ["a", "b"])] == [1, 0]
    with pytest.raises(InvalidInputError) as info:
        rr.rerank(QUERY, ["a", "b"], max_tokens_per_doc=5)
    assert info.value.param == "max_tokens_per_doc"
    local = Reranker(str(model_dirs["bert1"]))
    for bad in (0, -3, 2.5, True, "7"):
        with pytest.raises(InvalidInputError, match="max_tokens_per_doc"):
            local.rerank(QUERY, ["a"], max_tokens_per_doc=bad)  # type: ignore[arg-type]


def test_batched_items_keep_their_own_truncation(model_dirs: dict[str, Path]) -> None:
    """The Serve batcher merges requests; each keeps its own cut, and one refused item fails
    alone."""
    with Reranker(str(model_dirs["bert1"])) as rr:
        backend = rr.backend
        docs = [LONG_DOCUMENT, DOCUMENTS[0]]
        items = [
            ScoreItem(QUERY, docs),
            ScoreItem(QUERY, docs, Truncation(max_document_tokens=5)),
            ScoreItem(QUERY, docs, Truncation(allow=False)),
            ScoreItem(QUERY, docs[1:], Truncation(allow=False)),
        ]
        out = asyncio.run(backend.ascore_batch(items))
        alone = [backend.score(QUERY, docs),
                 backend.score(QUERY, docs, Truncation(max_document_tokens=5)),
                 None,
                 backend.score(QUERY, docs[1:])]
        np.testing.assert_allclose(out[0], alone[0], atol=1e-5)
        np.testing.assert_allclose(out[1], alone[1], atol=1e-5)
        assert isinstance(out[2], InputTooLongError)
        np.testing.assert_allclose(out[3], alone[3], atol=1e-5)
        assert not np.allclose(out[0], out[1])
        provider_out = asyncio.run(_ProviderLike().ascore_batch(
            [ScoreItem(QUERY, docs), ScoreItem(QUERY, docs, Truncation(
                max_document_tokens=5, field="documents"))]))
        assert isinstance(provider_out[0], np.ndarray)
        assert isinstance(provider_out[1], InvalidInputError)
