"""Scores against the reference implementations themselves: transformers (torch) and
sentence-transformers' CrossEncoder on the same weights.

These need torch, which the default test install does not bring; without it they skip, and
tests/unit/test_local_backend.py covers the same behaviour against the numpy forward pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker import Reranker
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
transformers = pytest.importorskip("transformers")

DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café 中文 текст"]


def _transformers_logits(folder: Path, max_length: int) -> np.ndarray:
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, truncation="only_second",
              max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.double().numpy()


@pytest.mark.parametrize("variant", ["bert1", "bert2", "xlmr1", "xlmr2", "xlmr1_external"])
def test_equal_to_transformers(model_dirs: dict[str, Path], variant: str) -> None:
    folder = model_dirs[variant]
    rr = Reranker(str(folder))
    logits = _transformers_logits(folder, rr.backend.max_length or 512)
    if logits.shape[1] == 1:
        raw_ref = logits[:, 0]
        prob_ref = 1 / (1 + np.exp(-raw_ref))
    else:
        raw_ref = logits[:, 1] - logits[:, 0]
        prob_ref = torch.softmax(torch.from_numpy(logits), dim=1)[:, 1].numpy()
    raw = sorted(rr.rerank(QUERY, DOCS, raw_scores=True), key=lambda r: r.index)
    prob = sorted(rr.rerank(QUERY, DOCS), key=lambda r: r.index)
    np.testing.assert_allclose([r.score for r in raw], raw_ref, atol=1e-4)
    np.testing.assert_allclose([r.score for r in prob], prob_ref, atol=1e-4)


@pytest.mark.parametrize("variant", ["bert1", "xlmr2"])
def test_equal_to_sentence_transformers_cross_encoder(model_dirs: dict[str, Path],
                                                      variant: str) -> None:
    st = pytest.importorskip("sentence_transformers")
    folder = model_dirs[variant]
    rr = Reranker(str(folder))
    ce = st.CrossEncoder(str(folder), max_length=rr.backend.max_length, device="cpu")
    pairs = [(QUERY, d) for d in DOCS]
    ref = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=4),
                     dtype=np.float64)
    raw_ref = ref if ref.ndim == 1 else ref[:, 1] - ref[:, 0]
    raw = sorted(rr.rerank(QUERY, DOCS, raw_scores=True), key=lambda r: r.index)
    np.testing.assert_allclose([r.score for r in raw], raw_ref, atol=1e-4)
    probs = np.asarray(ce.predict(pairs, batch_size=4), dtype=np.float64)
    if probs.ndim == 2:  # 2 labels: CrossEncoder returns logits unless told; softmax them
        probs = torch.softmax(torch.from_numpy(ref), dim=1)[:, 1].numpy()
    got = sorted(rr.rerank(QUERY, DOCS), key=lambda r: r.index)
    np.testing.assert_allclose([r.score for r in got], probs, atol=1e-4)


def test_chunked_long_document_equals_transformers_max_over_windows(
    model_dirs: dict[str, Path],
) -> None:
    folder = model_dirs["bert1"]
    max_length, overlap = 48, 8
    rr = Reranker({"type": "custom", "model_id": str(folder), "max_length": max_length,
                   "long_documents": "chunk", "chunk_overlap": overlap,
                   "max_chunks_per_doc": 500})
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = tok([QUERY], [LONG_DOCUMENT], truncation="only_second", max_length=max_length,
              stride=overlap, return_overflowing_tokens=True, padding=True,
              return_tensors="pt")
    enc.pop("overflow_to_sample_mapping", None)
    with torch.no_grad():
        windows = model(**enc).logits[:, 0].double().numpy()
    assert len(windows) > 3
    got = rr.rerank(QUERY, [LONG_DOCUMENT], raw_scores=True)[0].score
    assert got == pytest.approx(windows.max(), abs=1e-4)
