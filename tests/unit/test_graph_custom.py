"""``custom`` models without an ONNX file: the graph is built from safetensors at first use.

Scores are checked against the numpy reference (reranker.testing.families.encoder_reference) to
1e-4, with chunking on and a document past the window, through the public ``Reranker``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reranker import ModelLoadError, Reranker
from reranker.backends.local import fetch_local_model
from reranker.config import CustomConfig
from reranker.errors import ModelNotFoundError
from reranker.testing.families.encoder_models import build_cross_encoder
from reranker.testing.families.encoder_reference import reference_logits
from reranker.testing.families.modernbert import build_modernbert
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4
VARIANTS = {"bert1": ("bert", 1), "xlmr2": ("xlmr", 2), "electra1": ("electra", 1),
            "modernbert2": ("modernbert", 2)}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hub-style checkpoints with and without the ONNX export the test kit writes."""
    root = tmp_path_factory.mktemp("custom")
    built = {}
    for i, (name, (arch, labels)) in enumerate(VARIANTS.items()):
        if arch == "modernbert":  # mean pooling; a 16-token local window inside 48-token windows
            built[name] = build_modernbert(root / name, num_labels=labels, pooling="mean",
                                           seed=20 + i)  # fmt: skip
            continue
        both = build_cross_encoder(root / f"{name}-both", arch=arch, num_labels=labels, seed=20 + i)
        only = root / f"{name}-safetensors"
        shutil.copytree(both, only, ignore=shutil.ignore_patterns("onnx"))
        built[f"{name}-both"], built[name] = both, only
    return built


def _windows_reference(folder: Path, doc: str, max_length: int, overlap: int) -> float:
    """Max over independently cut windows of the reference raw score."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    q_ids = tok(QUERY, add_special_tokens=False)["input_ids"]
    d_ids = tok(doc, add_special_tokens=False)["input_ids"]
    # [CLS] q [SEP] d [SEP] for BERT, ELECTRA and ModernBERT; <s> q </s></s> d </s> for XLM-R.
    bert_like = json.loads((folder / "config.json").read_text())["model_type"] != "xlm-roberta"
    room = max_length - len(q_ids) - (3 if bert_like else 4)
    scores = []
    for start in range(0, max(len(d_ids) - overlap, 1), room - overlap):
        window, cls, sep = d_ids[start : start + room], tok.cls_token_id, tok.sep_token_id
        if bert_like:
            ids = np.array([[cls, *q_ids, sep, *window, sep]])
            types = np.array([[0] * (len(q_ids) + 2) + [1] * (len(window) + 1)])
        else:
            ids, types = np.array([[cls, *q_ids, sep, sep, *window, sep]]), None
        logits = reference_logits(folder, ids, np.ones_like(ids), types)[0]
        scores.append(logits[0] if len(logits) == 1 else logits[1] - logits[0])
    return float(max(scores))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_safetensors_only_folder_scores_like_the_reference_with_chunking(
    folders: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    folder = folders[variant]
    max_length, overlap = 48, 8
    config = {"type": "custom", "model_id": str(folder), "max_length": max_length,
              "long_documents": "chunk", "chunk_overlap": overlap, "max_chunks_per_doc": 500,
              "cache_dir": str(tmp_path)}  # fmt: skip
    docs = [LONG_DOCUMENT, DOCUMENTS[0], "Ünïcödé café naïve текст", ""]
    with Reranker(config) as rr:
        got = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}
        model_file = rr.backend.model_file
    assert model_file.parent.parent == tmp_path / "reranker-optimized"
    assert model_file.parent.name.startswith("built-")
    for i, doc in enumerate(docs):
        expected = _windows_reference(folder, doc, max_length, overlap)
        assert got[i] == pytest.approx(expected, abs=TOL), f"document {i}"


def test_folder_with_onnx_keeps_the_onnx_file_unless_told(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = folders["bert1-both"]
    auto = fetch_local_model(CustomConfig(model_id=str(folder), cache_dir=str(tmp_path)))
    assert auto.model_file == folder / "onnx" / "model.onnx"
    assert not (tmp_path / "reranker-optimized").exists()  # nothing was built
    built = fetch_local_model(
        CustomConfig(model_id=str(folder), cache_dir=str(tmp_path), model_format="safetensors")
    )
    assert built.model_file.parent.name.startswith("built-")
    with Reranker(str(folder)) as a, Reranker(
        {"type": "custom", "model_id": str(folder), "model_format": "safetensors",
         "cache_dir": str(tmp_path)}  # fmt: skip
    ) as b:
        docs = [*DOCUMENTS, LONG_DOCUMENT]
        np.testing.assert_allclose(b.backend.score(QUERY, docs), a.backend.score(QUERY, docs),
                                   atol=1e-5)  # fmt: skip


def test_onnx_format_refuses_a_folder_without_onnx(folders: dict[str, Path]) -> None:
    with pytest.raises(ModelNotFoundError, match="onnx/model.onnx"):
        fetch_local_model(CustomConfig(model_id=str(folders["xlmr2"]), model_format="onnx"))


def test_a_named_model_file_is_never_replaced_by_a_build(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    config = CustomConfig(model_id=str(folders["bert1"]), model_file="onnx/model.onnx",
                          cache_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ModelNotFoundError, match="is missing onnx/model.onnx"):
        fetch_local_model(config)
    assert not (tmp_path / "reranker-optimized").exists()


def test_folder_with_neither_onnx_nor_safetensors(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    shutil.copytree(folders["bert1"], folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="neither onnx/model.onnx nor config.json"):
        fetch_local_model(CustomConfig(model_id=str(folder), cache_dir=str(tmp_path)))


def test_unsupported_architecture_is_a_model_load_error(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "modern"
    shutil.copytree(folders["bert1"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["NewModelForSequenceClassification"], model_type="new-model")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        Reranker({"type": "custom", "model_id": str(folder), "cache_dir": str(tmp_path)})
    message = str(info.value)
    assert "architectures=['NewModelForSequenceClassification']" in message
    assert "model_type='new-model'" in message and "ElectraForSequenceClassification" in message


@pytest.mark.parametrize("optimization", ["fused", "int8"])
def test_built_graph_runs_the_optimized_paths(
    folders: dict[str, Path], tmp_path: Path, optimization: str
) -> None:
    folder = folders["xlmr2"]
    docs = [*DOCUMENTS, LONG_DOCUMENT]
    base = {"type": "custom", "model_id": str(folder), "cache_dir": str(tmp_path)}
    with Reranker(base) as plain, Reranker({**base, "optimization": optimization}) as fast:
        expected = plain.backend.score(QUERY, docs)
        got = fast.backend.score(QUERY, docs)
        assert fast.backend.model.session is not None
    # The built graph's attention is fused as a Hub export's is: one kernel per layer.
    (meta,) = (tmp_path / "reranker-optimized").glob(f"*-{optimization}-*/optimization.json")
    assert json.loads(meta.read_text())["fused_operators"]["MultiHeadAttention"] == 2
    if optimization == "fused":
        np.testing.assert_allclose(got, expected, atol=TOL)
    else:  # quantization moves scores; the ranking of clearly separated ones must hold
        assert np.corrcoef(got, expected)[0, 1] > 0.9


def test_built_graph_fuses_with_the_padding_mask_too(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """The masked form (what CUDA runs): padded batches score as the unfused graph does."""
    import onnx
    import onnxruntime as ort

    from reranker.optimize import optimized_model
    from reranker.testing.families.encoder_reference import reference_encode

    folder = folders["bert1"]
    built = fetch_local_model(CustomConfig(model_id=str(folder), cache_dir=str(tmp_path)))
    fused = optimized_model(built.model_file, "fused", cache_root=tmp_path, padding_free=False)
    ops = [n.op_type for n in onnx.load(str(fused), load_external_data=False).graph.node]
    assert ops.count("MultiHeadAttention") == 2
    enc = reference_encode(folder, QUERY, [*DOCUMENTS, LONG_DOCUMENT], max_length=64)
    assert (enc["attention_mask"] == 0).any()  # the batch is padded

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]

    np.testing.assert_allclose(run(fused), run(built.model_file), atol=TOL)


@pytest.mark.parametrize("torn", ["", "\n", "x" * 64])
def test_a_torn_weights_memo_never_shares_a_built_graph(
    folders: dict[str, Path], tmp_path: Path, torn: str
) -> None:
    """The graph builder kept its own copy of the hash memo, which trusted an empty file: two
    checkpoints would then share one built graph. It now shares the optimizer's checked one."""
    from reranker.models.build import built_model

    cache = tmp_path / "cache"
    a = built_model(folders["bert1"], cache)
    b = built_model(folders["xlmr2"], cache)
    assert a != b
    memos = sorted((cache / "hashes").iterdir())
    assert len(memos) == 2
    for memo in memos:
        memo.write_text(torn)
    assert built_model(folders["xlmr2"], cache) == b
    assert built_model(folders["bert1"], cache) == a
    assert all(len(m.read_text().strip()) == 64 for m in memos)
