"""Preset stand-ins: corpus, counted vocabularies and the folder builder (benchmarks/)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.corpus import benchmark_requests, documentation_paragraphs
from benchmarks.standins import (
    PRESET_ARCHITECTURES,
    StandinArchitecture,
    build_preset_standin,
    write_counted_bert_tokenizer,
    write_counted_xlmr_tokenizer,
)
from benchmarks.vocabulary import unigram_pieces, wordpiece_vocab
from reranker import Reranker
from reranker.testing.families.encoder_reference import reference_encode, reference_logits


def test_requests_are_deterministic_and_sized() -> None:
    a = benchmark_requests(3, documents_per_request=100)
    assert a == benchmark_requests(3, documents_per_request=100)
    assert a != benchmark_requests(3, documents_per_request=100, seed=1)
    for req in a:
        assert len(req.documents) == 100 and len(set(req.documents)) == 100
        assert all(40 <= len(d.split()) <= 300 for d in req.documents)
        assert 3 <= len(req.query.split()) <= 12
    assert len(documentation_paragraphs()) > 500


def test_counted_vocabularies_are_ordered_and_padded() -> None:
    words = Counter({"the": 9, "reranker": 4, "reranking": 4, "ranking": 5, "a": 9, "zq": 1})
    vocab = wordpiece_vocab(words, ["[PAD]", "[UNK]"], size=60)
    assert vocab[:2] == ["[PAD]", "[UNK]"] and len(vocab) == 60
    assert vocab.index("a") < vocab.index("the") < vocab.index("ranking")  # count, then text
    assert "zq" not in vocab and "##q" in vocab  # once-seen words are spelled out
    assert vocab[-1].startswith("[unused")
    pieces = unigram_pieces(Counter({"\u2581the": 9, "\u2581ranking": 5}), ["<s>"], size=40)
    assert pieces[0] == ("<s>", 0.0) and pieces[-1] == ("<mask>", 0.0) and len(pieces) == 40
    assert dict(pieces)["\u2581the"] > dict(pieces)["\u2581ranking"]


@pytest.mark.parametrize("writer", [write_counted_bert_tokenizer, write_counted_xlmr_tokenizer])
def test_counted_tokenizers_are_deterministic_and_match_transformers(
    writer: object, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    size = 30522 if writer is write_counted_bert_tokenizer else 250002
    for name in ("a", "b"):
        assert writer(tmp_path / name, size, 512) == size  # type: ignore[operator]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json").read_bytes()
    ours = Tokenizer.from_file(str(tmp_path / "a" / "tokenizer.json"))
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    req = benchmark_requests(1, documents_per_request=20)[0]
    words = sum(len(d.split()) for d in req.documents)
    tokens = 0
    for doc in req.documents:
        ids = ours.encode(req.query, doc).ids
        assert ids == theirs([req.query], [doc])["input_ids"][0]
        tokens += len(ours.encode(doc, add_special_tokens=False).ids)
    # Real English documentation: between one and two tokens per word, as real vocabularies.
    assert 1.2 < tokens / words < 2.0


def test_standin_builder_writes_a_working_preset_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    tiny = StandinArchitecture("bert", 2, 32, 4, 64, 30522, max_length=128)
    monkeypatch.setitem(PRESET_ARCHITECTURES, "tiny", tiny)
    folder = build_preset_standin(tmp_path / "tiny", "tiny", exporter="graph", quantize=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors", "onnx/model.onnx",
                 "onnx/model_quantized.onnx"):
        assert (folder / name).is_file(), name
    req = benchmark_requests(1, documents_per_request=5)[0]
    got = Reranker(str(folder)).backend.score(req.query, req.documents)
    enc = reference_encode(folder, req.query, list(req.documents), 128)
    want = reference_logits(folder, enc["input_ids"], enc["attention_mask"],
                            enc["token_type_ids"])[:, 0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_preset_architectures_match_the_presets() -> None:
    fast, base, large = (PRESET_ARCHITECTURES[n] for n in ("fast", "balanced", "quality"))
    assert (fast.num_layers, fast.hidden_size, fast.vocab_size) == (6, 384, 30522)
    assert 22e6 < fast.parameters < 23e6
    assert 270e6 < base.parameters < 285e6
    assert 555e6 < large.parameters < 565e6
    with pytest.raises(ValueError, match="valid"):
        build_preset_standin("/nonexistent", "huge")
