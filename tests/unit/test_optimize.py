"""Fused and int8 variants (reranker.optimize), device selection, parallel runs, score cache.

Fused float32 scores are checked against the independent numpy reference to 1e-4; int8 scores
only for agreement, since quantization moves them. The attention fusion needs a graph exported
by torch (as the Hub's are), so those tests are skipped without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reranker import ConfigError, ModelLoadError, Reranker
from reranker.onnx_model import OnnxCrossEncoder, execution_providers
from reranker.optimize import default_cache_root, optimized_model
from reranker.testing.families.encoder_reference import reference_encode, reference_logits
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4
DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café naïve текст"]


def _reference(folder: Path, docs: list[str], max_length: int) -> np.ndarray:
    out = []
    for doc in docs:  # one pair at a time: no padding in the reference either
        enc = reference_encode(folder, QUERY, [doc], max_length)
        logits = reference_logits(
            folder, enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")
        )[0]
        out.append(logits[0] if len(logits) == 1 else logits[1] - logits[0])
    return np.array(out)


def _scores(folder: Path, cache: Path, **options: object) -> np.ndarray:
    config = {"type": "custom", "model_id": str(folder), "cache_dir": str(cache), **options}
    with Reranker(config) as rr:
        return rr.backend.score(QUERY, DOCS)


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT cross-encoder whose ONNX graph torch exported, like the Hub files."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from benchmarks.standins import export_with_torch
    from reranker.testing.families.encoder_models import build_cross_encoder

    folder = build_cross_encoder(
        tmp_path_factory.mktemp("torch") / "bert", arch="bert", num_labels=1, seed=11
    )
    export_with_torch(folder)
    return folder


def test_none_returns_the_source(bert_model: Path, tmp_path: Path) -> None:
    source = bert_model / "onnx" / "model.onnx"
    assert optimized_model(source, "none", cache_root=tmp_path) == source
    assert not any(tmp_path.iterdir())


def test_variant_is_cached_by_content(bert_model: Path, tmp_path: Path) -> None:
    source = bert_model / "onnx" / "model.onnx"
    first = optimized_model(source, "fused", cache_root=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert optimized_model(source, "fused", cache_root=tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    meta = json.loads((first.parent / "optimization.json").read_text())
    assert meta["optimization"] == "fused" and len(meta["sha256"]) == 64
    # The same bytes elsewhere share the entry; different bytes get their own.
    copy = tmp_path / "copy" / "model.onnx"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    assert optimized_model(copy, "fused", cache_root=tmp_path) == first
    from reranker.testing.families.encoder_models import build_cross_encoder

    other = build_cross_encoder(tmp_path / "other", seed=99) / "onnx" / "model.onnx"
    assert optimized_model(other, "fused", cache_root=tmp_path) != first
    copy.write_text("not a model")
    with pytest.raises(ModelLoadError):
        optimized_model(copy, "fused", cache_root=tmp_path)
    assert not list(tmp_path.glob(".build-*")), "a failed build leaves nothing behind"


def test_quantized_source_is_refused(tmp_path: Path) -> None:
    from reranker.testing.families.encoder_models import build_cross_encoder

    folder = build_cross_encoder(tmp_path / "q", quantize=True)
    with pytest.raises(ModelLoadError, match="already quantized"):
        optimized_model(folder / "onnx" / "model_quantized.onnx", "int8", cache_root=tmp_path)


def test_default_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_root(tmp_path) == tmp_path / "reranker-optimized"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "reranker" / "optimized"


@pytest.mark.parametrize("variant", ["bert1", "xlmr2"])
def test_fused_handwritten_graph_equals_reference(
    model_dirs: dict[str, Path], variant: str, tmp_path: Path
) -> None:
    folder = model_dirs[variant]
    got = _scores(folder, tmp_path, optimization="fused")
    np.testing.assert_allclose(got, _reference(folder, DOCS, 128), atol=TOL)


@pytest.mark.torch
def test_torch_export_fuses_attention_without_mask(torch_model: Path, tmp_path: Path) -> None:
    import onnx

    path = optimized_model(torch_model / "onnx" / "model.onnx", "fused", cache_root=tmp_path)
    graph = onnx.load(str(path)).graph
    assert sum(n.op_type == "MultiHeadAttention" for n in graph.node) == 2
    assert "attention_mask" not in {i.name for i in graph.input}
    model = OnnxCrossEncoder(path, max_tokens_per_batch=100_000, batch_size=64)
    assert model.max_padding == 0.0  # no mask: only rows of equal length share a run


@pytest.mark.torch
@pytest.mark.parametrize(
    "options",
    [
        {"optimization": "fused"},
        {"optimization": "fused", "parallel_runs": 1, "max_tokens_per_batch": 8192},
        {"optimization": "none", "max_tokens_per_batch": 8192},
    ],
)
def test_torch_export_scores_equal_reference(
    torch_model: Path, tmp_path: Path, options: dict[str, object]
) -> None:
    got = _scores(torch_model, tmp_path, **options)
    np.testing.assert_allclose(got, _reference(torch_model, DOCS, 128), atol=TOL)


@pytest.mark.torch
def test_masked_fusion_handles_padded_batches(torch_model: Path, tmp_path: Path) -> None:
    from reranker.tokenization import PairTokenizer

    path = optimized_model(
        torch_model / "onnx" / "model.onnx", "fused", cache_root=tmp_path, padding_free=False
    )
    tok = PairTokenizer(torch_model / "tokenizer.json", 128)
    enc = tok.encode(QUERY, DOCS)
    model = OnnxCrossEncoder(path, batch_size=32, max_tokens_per_batch=100_000, parallel_runs=1)
    got = model.run(enc.ids, enc.type_ids)
    assert model.stats.batches < len(DOCS)  # rows of different lengths were padded together
    np.testing.assert_allclose(got, _reference(torch_model, DOCS, 128), atol=TOL)


@pytest.mark.torch
def test_int8_agrees_with_float32(torch_model: Path, tmp_path: Path) -> None:
    fp32 = _scores(torch_model, tmp_path)
    int8 = _scores(torch_model, tmp_path, optimization="int8")
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    assert np.abs(int8 - fp32).max() < 0.25
    assert np.argmax(int8) == np.argmax(fp32)
    again = _scores(torch_model, tmp_path, optimization="int8")
    np.testing.assert_array_equal(int8, again)  # per-row runs: batching cannot change scores


def test_parallel_runs_do_not_change_scores(bert_model: Path, tmp_path: Path) -> None:
    docs = DOCS * 5
    results = []
    for runs in (1, 2, 4):
        config = {"type": "custom", "model_id": str(bert_model), "parallel_runs": runs,
                  "threads": 2}
        with Reranker(config) as rr:
            results.append(rr.backend.score(QUERY, docs))
            stats = rr.backend.model.stats  # type: ignore[attr-defined]
            assert stats.real_tokens <= stats.padded_tokens <= 1.1 * stats.real_tokens
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_execution_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert execution_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        execution_providers("cuda")
    with_gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: with_gpu)
    assert execution_providers("auto") == with_gpu
    assert execution_providers("cuda") == with_gpu


def test_device_config_reaches_the_session(
    bert_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        Reranker({"type": "custom", "model_id": str(bert_model), "device": "cuda"})
    seen: dict[str, object] = {}
    real = OnnxCrossEncoder.__init__

    def spy(self: OnnxCrossEncoder, *args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        kwargs["providers"] = ["CPUExecutionProvider"]  # no GPU here; the choice is what counts
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OnnxCrossEncoder, "__init__", spy)
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: gpu)
    Reranker({"type": "custom", "model_id": str(bert_model), "device": "auto"})
    assert seen["providers"] == gpu
    with pytest.raises(ConfigError, match="CPU only"):
        Reranker({"type": "custom", "model_id": str(bert_model), "device": "cuda",
                  "optimization": "int8"})


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_batching_defaults_follow_the_device(bert_model: Path) -> None:
    path = bert_model / "onnx" / "model.onnx"
    cpu = OnnxCrossEncoder(path, threads=2)
    assert (cpu.max_tokens_per_batch, cpu.parallel_runs) == (512, 2)
    # onnxruntime without CUDA warns and runs on CPU; the settings are what is checked.
    gpu = OnnxCrossEncoder(path, threads=2, providers=["CUDAExecutionProvider",
                                                       "CPUExecutionProvider"])
    assert (gpu.max_tokens_per_batch, gpu.parallel_runs) == (16384, 1)


def test_score_cache_counts_hits_and_keeps_scores(bert_model: Path) -> None:
    plain = Reranker(str(bert_model)).backend.score(QUERY, DOCS)
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "score_cache_size": 100})
    backend = rr.backend
    first = backend.score(QUERY, DOCS)
    np.testing.assert_array_equal(first, plain)
    assert backend.score_cache.stats.misses == len(DOCS)  # type: ignore[attr-defined]
    mixed = [DOCS[0], "a document never seen", DOCS[0], DOCS[3]]
    again = backend.score(QUERY, mixed)
    stats = backend.score_cache.stats  # type: ignore[attr-defined]
    assert (stats.hits, stats.misses) == (3, len(DOCS) + 1)
    np.testing.assert_array_equal(again[[0, 2, 3]], plain[[0, 0, 3]])
    # Another query is another key.
    backend.score("another query", DOCS[:2])
    assert backend.score_cache.stats.misses == len(DOCS) + 3  # type: ignore[attr-defined]


def test_score_cache_evicts_least_recently_used() -> None:
    from reranker.backends.local import ScoreCache

    cache = ScoreCache(2)
    keys = [ScoreCache.key("q", d) for d in ("a", "b", "c")]
    cache.put_many(keys[:2], [1.0, 2.0])
    assert cache.get_many([keys[0]]) == [1.0]  # "a" is now the most recent
    cache.put_many([keys[2]], [3.0])
    assert cache.get_many(keys) == [1.0, None, 3.0]
    assert cache.stats.size == 2
    assert ScoreCache.key("ab", "c") != ScoreCache.key("a", "bc")


@pytest.mark.parametrize("torn", ["", "\n", "3f2a", "x" * 64, "regression"])
def test_a_torn_hash_memo_never_shares_an_entry(
    bert_model: Path, tmp_path: Path, torn: str
) -> None:
    """An empty or torn memo once gave the digest "" to every model, so model B was served
    model A's optimized file."""
    from reranker.testing.families.encoder_models import build_cross_encoder

    a = bert_model / "onnx" / "model.onnx"
    b = build_cross_encoder(tmp_path / "b", seed=42) / "onnx" / "model.onnx"
    cache = tmp_path / "cache"
    entry_a = optimized_model(a, "fused", cache_root=cache)
    entry_b = optimized_model(b, "fused", cache_root=cache)
    assert entry_a != entry_b
    memos = sorted((cache / "hashes").iterdir())
    assert len(memos) == 2
    for memo in memos:
        assert len(memo.read_text().strip()) == 64
        memo.write_text(torn)
    assert optimized_model(b, "fused", cache_root=cache) == entry_b
    assert optimized_model(a, "fused", cache_root=cache) == entry_a
    for entry, source in ((entry_a, a), (entry_b, b)):
        meta = json.loads((entry.parent / "optimization.json").read_text())
        assert meta["source"] == str(source)
    # The memos were rewritten whole, and no temporary file is left beside them.
    assert sorted((cache / "hashes").iterdir()) == memos
    assert all(len(m.read_text().strip()) == 64 for m in memos)
