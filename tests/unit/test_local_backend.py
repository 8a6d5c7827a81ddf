"""Local ONNX reranking checked against an independent reference.

The reference tokenizes with ``transformers`` (the model's own tokenizer class) and runs a numpy
forward pass over the safetensors weights; our path tokenizes with ``tokenizers`` and runs the
ONNX graph with ONNX Runtime. Scores must agree to 1e-4, logits and probabilities.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from reranker import InvalidInputError, ModelLoadError, Reranker, rerank
from reranker.scoring import sigmoid
from reranker.testing.families.encoder_reference import reference_logits
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4


def _auto_tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def _encode(tok, query: str, doc: str, **kwargs):  # type: ignore[no-untyped-def]
    """One pair through transformers the way sentence-transformers' CrossEncoder calls it.

    The batch form matters: a single call with ``text_pair=""`` drops the empty document and
    encodes the query alone, while CrossEncoder (and we) score the pair (query, "").
    """
    enc = tok([query], [doc], **kwargs)
    return {k: v[0] for k, v in enc.items()}


def _reference_logits(folder: Path, query: str, docs: list[str], max_length: int
                      ) -> list[np.ndarray]:
    """Per document: transformers ids, then the numpy forward pass; 1 or 2 logits each."""
    tok = _auto_tokenizer(folder)
    out = []
    for doc in docs:
        enc = _encode(tok, query, doc, truncation="only_second", max_length=max_length)
        ids = np.array([enc["input_ids"]])
        types = np.array([enc["token_type_ids"]]) if "token_type_ids" in enc else None
        out.append(reference_logits(folder, ids, np.ones_like(ids), types)[0])
    return out


def _reference_raw(folder: Path, query: str, docs: list[str], max_length: int) -> np.ndarray:
    """Raw scores: the logit, or the log-odds logit[1] - logit[0] for 2-logit heads."""
    return np.array([lg[0] if len(lg) == 1 else lg[1] - lg[0]
                     for lg in _reference_logits(folder, query, docs, max_length)])


def _reference_probs(folder: Path, query: str, docs: list[str], max_length: int) -> np.ndarray:
    """Sigmoid of a single logit, softmax of two (computed directly, not via the log-odds)."""
    out = []
    for lg in _reference_logits(folder, query, docs, max_length):
        if len(lg) == 1:
            out.append(1 / (1 + np.exp(-lg[0])))
        else:
            e = np.exp(lg - lg.max())
            out.append(e[1] / e.sum())
    return np.array(out)


@pytest.mark.parametrize("variant", ["bert1", "bert2", "xlmr1", "xlmr2", "xlmr1_external"])
def test_scores_equal_reference(model_dirs: dict[str, Path], variant: str) -> None:
    folder = model_dirs[variant]
    rr = Reranker(str(folder))
    docs = [*DOCUMENTS, LONG_DOCUMENT]
    raw = rr.rerank(QUERY, docs, raw_scores=True)
    by_index = np.array([r.score for r in sorted(raw, key=lambda r: r.index)])
    expected = _reference_raw(folder, QUERY, docs, rr.backend.max_length)  # type: ignore[arg-type]
    np.testing.assert_allclose(by_index, expected, atol=TOL)
    probs = rr.rerank(QUERY, docs)
    by_index = np.array([r.score for r in sorted(probs, key=lambda r: r.index)])
    ref_p = _reference_probs(folder, QUERY, docs, rr.backend.max_length)  # type: ignore[arg-type]
    np.testing.assert_allclose(by_index, ref_p, atol=TOL)
    # The ranking is the reference's ranking, not the input order.
    assert [r.index for r in probs] == np.argsort(-ref_p, kind="stable").tolist()
    assert [r.index for r in probs] != list(range(len(docs)))


@pytest.mark.parametrize("variant", ["bert1", "xlmr1"])
def test_token_ids_equal_transformers(model_dirs: dict[str, Path], variant: str) -> None:
    folder = model_dirs[variant]
    rr = Reranker(str(folder))
    tok = _auto_tokenizer(folder)
    max_length = rr.backend.max_length
    texts = [*DOCUMENTS, LONG_DOCUMENT, "", "Ünïcödé café naïve 中文 текст ß"]
    enc = rr.backend.tokenizer.encode(QUERY, texts)  # type: ignore[attr-defined]
    for row, doc in zip(enc.ids, texts, strict=True):
        ref = _encode(tok, QUERY, doc, truncation="only_second", max_length=max_length)[
            "input_ids"]
        assert row == ref
    long_query = " ".join([QUERY] * 40)
    enc = rr.backend.tokenizer.encode(long_query, texts[:2])  # type: ignore[attr-defined]
    for row, doc in zip(enc.ids, texts[:2], strict=True):
        assert row == _encode(tok, long_query, doc, truncation=True, max_length=max_length)[
            "input_ids"]
        assert len(row) <= max_length


def test_embedded_tokenizer_settings_are_ignored(tmp_path: Path) -> None:
    from reranker.testing.families.encoder_models import build_cross_encoder

    plain = build_cross_encoder(tmp_path / "plain", arch="bert", seed=3)
    embedded = build_cross_encoder(
        tmp_path / "embedded", arch="bert", seed=3, embedded_tokenizer_settings=True
    )
    docs = [*DOCUMENTS, LONG_DOCUMENT]
    a = Reranker(str(plain)).rerank(QUERY, docs, raw_scores=True)
    b = Reranker(str(embedded)).rerank(QUERY, docs, raw_scores=True)
    assert [(r.index, r.score) for r in a] == [(r.index, r.score) for r in b]
    expected = _reference_raw(plain, QUERY, docs, Reranker(str(plain)).backend.max_length or 0)
    got = np.array([r.score for r in sorted(b, key=lambda r: r.index)])
    np.testing.assert_allclose(got, expected, atol=TOL)


@pytest.mark.parametrize("variant", ["bert1", "xlmr2"])
def test_long_documents_chunked_max_over_windows(model_dirs: dict[str, Path], variant: str
                                                 ) -> None:
    folder = model_dirs[variant]
    max_length, overlap = 48, 8
    rr = Reranker({"type": "custom", "model_id": str(folder), "max_length": max_length,
                   "long_documents": "chunk", "chunk_overlap": overlap, "max_chunks_per_doc": 500})
    docs = [LONG_DOCUMENT, DOCUMENTS[0], LONG_DOCUMENT[::-1]]
    got = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}

    # Independent windows: cut the document's tokens by hand and add the special tokens.
    tok = _auto_tokenizer(folder)
    q_ids = tok(QUERY, add_special_tokens=False)["input_ids"]
    specials = len(tok(QUERY, "x")["input_ids"]) - len(q_ids) - 1
    room = max_length - specials - len(q_ids)
    for i, doc in enumerate(docs):
        d_ids = tok(doc, add_special_tokens=False)["input_ids"]
        starts = range(0, max(len(d_ids) - overlap, 1), room - overlap)
        window_scores = []
        for s in starts:
            window = d_ids[s : s + room]
            cls, sep = tok.cls_token_id, tok.sep_token_id
            if "token_type_ids" in tok.model_input_names:  # BERT: [CLS] q [SEP] w [SEP]
                ids = [cls, *q_ids, sep, *window, sep]
                types = [0] * (len(q_ids) + 2) + [1] * (len(window) + 1)
            else:  # XLM-R: <s> q </s></s> w </s>
                ids = [cls, *q_ids, sep, sep, *window, sep]
                types = None
            arr = np.array([ids])
            logits = reference_logits(folder, arr, np.ones_like(arr),
                                      None if types is None else np.array([types]))[0]
            window_scores.append(logits[0] if len(logits) == 1 else logits[1] - logits[0])
        assert got[i] == pytest.approx(max(window_scores), abs=TOL), f"document {i}"
    assert len(list(range(0, len(tok(LONG_DOCUMENT, add_special_tokens=False)["input_ids"]),
                          room - overlap))) > 2  # the long document really spans windows


def test_truncate_and_chunk_agree_on_short_documents(model_dirs: dict[str, Path]) -> None:
    folder = model_dirs["bert1"]
    plain = Reranker(str(folder)).rerank(QUERY, DOCUMENTS, raw_scores=True)
    chunked = Reranker({"type": "custom", "model_id": str(folder), "long_documents": "chunk"}
                       ).rerank(QUERY, DOCUMENTS, raw_scores=True)
    assert [(r.index, round(r.score, 5)) for r in plain] == [
        (r.index, round(r.score, 5)) for r in chunked]


def test_scores_do_not_depend_on_batching(model_dirs: dict[str, Path]) -> None:
    folder = model_dirs["xlmr1"]
    docs = [*DOCUMENTS, LONG_DOCUMENT] * 3
    results = []
    for opts in ({"batch_size": 1}, {"batch_size": 32}, {"max_tokens_per_batch": 64}):
        rr = Reranker({"type": "custom", "model_id": str(folder), **opts})
        res = rr.rerank(QUERY, docs, raw_scores=True)
        results.append(np.array([r.score for r in sorted(res, key=lambda r: r.index)]))
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
    np.testing.assert_allclose(results[0], results[2], atol=1e-5)


def test_padding_stays_small_at_default_settings(model_dirs: dict[str, Path]) -> None:
    rr = Reranker(str(model_dirs["bert1"]))
    rng = np.random.default_rng(0)
    words = LONG_DOCUMENT.split()
    docs = [" ".join(words[: int(n)]) for n in rng.integers(5, 120, size=100)]
    rr.rerank(QUERY, docs)
    stats = rr.backend.model.stats  # type: ignore[attr-defined]
    assert stats.padded_tokens <= 1.10 * stats.real_tokens


def test_duplicates_tie_and_keep_input_order(model_dirs: dict[str, Path]) -> None:
    rr = Reranker(str(model_dirs["bert1"]))
    docs = [DOCUMENTS[1], DOCUMENTS[0], DOCUMENTS[1], DOCUMENTS[0]]
    res = rr.rerank(QUERY, docs)
    scores = {r.index: r.score for r in res}
    assert scores[0] == scores[2] and scores[1] == scores[3]
    order = [r.index for r in res]
    assert order.index(0) < order.index(2) and order.index(1) < order.index(3)


def test_api_options(model_dirs: dict[str, Path]) -> None:
    rr = Reranker(str(model_dirs["bert1"]))
    docs = [{"text": d, "id": i} for i, d in enumerate(DOCUMENTS)]
    res = rr.rerank(QUERY, docs, top_k=2)
    assert len(res) == 2 and res[0].score >= res[1].score
    assert res[0].document == docs[res[0].index]
    assert all(r.document is None for r in rr.rerank(QUERY, docs, return_documents=False))
    assert len(rr.rerank(QUERY, DOCUMENTS, top_k=1000)) == len(DOCUMENTS)
    one = rr.rerank(QUERY, ["only one"])
    assert len(one) == 1 and 0.0 < one[0].score < 1.0
    body = [{"body": d} for d in DOCUMENTS]
    assert len(rr.rerank(QUERY, body, text_field="body")) == len(DOCUMENTS)
    async_res = asyncio.run(rr.arerank(QUERY, DOCUMENTS))
    assert [(r.index, r.score) for r in async_res] == [
        (r.index, r.score) for r in rr.rerank(QUERY, DOCUMENTS)]
    module = rerank(QUERY, DOCUMENTS, model=str(model_dirs["bert1"]), top_k=3)
    assert [r.index for r in module] == [r.index for r in rr.rerank(QUERY, DOCUMENTS, top_k=3)]


def test_non_ascii_and_mixed_scripts(model_dirs: dict[str, Path]) -> None:
    folder = model_dirs["xlmr1"]
    docs = ["Le café est très bon", "中文文本 and English", "Привет мир", "ß ü é 中"]
    rr = Reranker(str(folder))
    got = np.array([r.score for r in sorted(rr.rerank("café 中文", docs, raw_scores=True),
                                            key=lambda r: r.index)])
    expected = _reference_raw(folder, "café 中文", docs, rr.backend.max_length or 0)
    np.testing.assert_allclose(got, expected, atol=TOL)


@pytest.mark.parametrize(
    ("query", "docs", "top_k", "param"),
    [
        ("", ["a"], None, "query"),
        ("q", [], None, "documents"),
        ("q", ["a", 7], None, "documents[1]"),
        ("q", ["a"], 0, "top_k"),
    ],
)
def test_bad_input(model_dirs: dict[str, Path], query: str, docs: list[object],
                   top_k: int | None, param: str) -> None:
    rr = Reranker(str(model_dirs["bert1"]))
    with pytest.raises(InvalidInputError) as info:
        rr.rerank(query, docs, top_k=top_k)  # type: ignore[arg-type]
    assert info.value.param == param


def test_ten_thousand_documents(model_dirs: dict[str, Path]) -> None:
    rr = Reranker({"type": "custom", "model_id": str(model_dirs["bert1"]), "max_length": 32})
    docs = [f"{DOCUMENTS[i % len(DOCUMENTS)]} {i}" for i in range(10_000)]
    res = rr.rerank(QUERY, docs, top_k=5)
    assert len(res) == 5
    assert len({r.index for r in rr.rerank(QUERY, docs)}) == 10_000


def test_max_length_beyond_model_window_is_rejected(model_dirs: dict[str, Path]) -> None:
    from reranker import ConfigError

    with pytest.raises(ConfigError, match="exceeds the model's window"):
        Reranker({"type": "custom", "model_id": str(model_dirs["bert1"]), "max_length": 10**6})


def test_broken_models_give_clear_errors(tmp_path: Path) -> None:
    from reranker.testing.families.encoder_models import build_broken_models

    broken = build_broken_models(tmp_path)
    with pytest.raises(ModelLoadError, match="3"):
        Reranker(str(broken["three_logits"]))
    with pytest.raises(ModelLoadError, match="classification head"):
        Reranker(str(broken["no_head"]))
    with pytest.raises(ModelLoadError, match="ONNX model"):
        Reranker(str(broken["not_onnx"]))


def test_missing_model_file(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    from reranker import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="is missing onnx/missing.onnx"):
        Reranker({"type": "custom", "model_id": str(model_dirs["bert1"]),
                  "model_file": "onnx/missing.onnx"})
    with pytest.raises(ModelNotFoundError):
        Reranker(str(tmp_path / "no-such-folder"))


def test_raw_logit_sign_matches_probability(model_dirs: dict[str, Path]) -> None:
    rr = Reranker(str(model_dirs["bert2"]))
    raw = {r.index: r.score for r in rr.rerank(QUERY, DOCUMENTS, raw_scores=True)}
    prob = {r.index: r.score for r in rr.rerank(QUERY, DOCUMENTS)}
    for i in raw:
        assert prob[i] == pytest.approx(float(sigmoid(np.array([raw[i]]))[0]), abs=1e-6)
