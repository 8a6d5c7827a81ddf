"""reranker.models.build: ONNX graphs built from safetensors folders, against the numpy reference.

The folders are Hub-style checkpoints (config.json, model.safetensors, tokenizer files) of each
supported architecture with random weights; the ONNX file the test kit also writes is deleted,
so nothing but the checkpoint reaches the builder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from reranker.errors import ModelLoadError
from reranker.models.build import build_onnx, built_model
from reranker.models.checkpoint import open_checkpoint
from reranker.testing.families.encoder_models import build_cross_encoder
from reranker.testing.families.encoder_reference import reference_encode, reference_logits
from reranker.testing.families.modernbert import build_modernbert
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4
DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café naïve текст 中文", ""]
ARCHS = [("bert", 1), ("bert", 2), ("xlmr", 1), ("xlmr", 2), ("electra", 1), ("electra", 2)]
# ModernBERT: CLS pooling without biases, and mean pooling with every optional bias.
MODERNBERT = {"modernbert-cls1": ("cls", 1, False), "modernbert-mean2": ("mean", 2, True)}
VARIANTS = [f"{a}{n}" for a, n in ARCHS] + list(MODERNBERT)


def _checkpoint(root: Path, arch: str, num_labels: int, seed: int = 3) -> Path:
    folder = build_cross_encoder(root / f"{arch}{num_labels}", arch=arch, num_labels=num_labels,
                                 seed=seed, max_position_embeddings=64)  # fmt: skip
    shutil.rmtree(folder / "onnx")
    return folder


def _run(model: Path, enc: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return np.asarray(session.run(["logits"], {n: enc[n] for n in names})[0], dtype=np.float64)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    built = {f"{a}{n}": _checkpoint(root, a, n) for a, n in ARCHS}
    for name, (pooling, labels, biases) in MODERNBERT.items():
        # A 16-token local window, so sequences of 64 tokens use it.
        built[name] = build_modernbert(
            root / name, pooling=pooling, num_labels=labels, biases=biases,
            max_position_embeddings=64, seed=5,
        )  # fmt: skip
    return built


@pytest.mark.parametrize("variant", VARIANTS)
def test_built_graph_equals_reference(
    checkpoints: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    folder = checkpoints[variant]
    model = build_onnx(folder, tmp_path / "model.onnx")
    # Padded batch with a document past the 64-token window, an empty one and mixed scripts.
    enc = reference_encode(folder, QUERY, DOCS, max_length=64)
    expected = reference_logits(folder, enc["input_ids"], enc["attention_mask"],
                                enc.get("token_type_ids"))  # fmt: skip
    got = _run(model, enc)
    assert got.shape == expected.shape == (len(DOCS), int(variant[-1]))
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert np.ptp(got[:, -1]) > 0.1  # the scores tell the documents apart
    inputs = {i.name for i in ort.InferenceSession(str(model)).get_inputs()}
    expected_inputs = {"input_ids", "attention_mask"} | (
        set() if variant.startswith(("xlmr", "modernbert")) else {"token_type_ids"}
    )
    assert inputs == expected_inputs


def test_sharded_checkpoint_builds_the_same_graph(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    source = checkpoints["xlmr1"]
    folder = tmp_path / "sharded"
    shutil.copytree(source, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}  # fmt: skip
    weight_map = {}
    for shard, part in shards.items():
        save_file({n: tensors[n] for n in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    enc = reference_encode(source, QUERY, DOCS, max_length=64)
    whole = _run(build_onnx(source, tmp_path / "whole.onnx"), enc)
    sharded = _run(build_onnx(folder, tmp_path / "sharded.onnx"), enc)
    np.testing.assert_array_equal(sharded, whole)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_are_read_as_float32(
    checkpoints: dict[str, Path], tmp_path: Path, dtype: str
) -> None:
    from safetensors.numpy import load_file

    source = checkpoints["bert1"]
    folder = tmp_path / dtype
    shutil.copytree(source, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    if dtype == "float16":
        stored = {n: t.astype(np.float16) for n, t in tensors.items()}
        upcast = {n: t.astype(np.float32) for n, t in stored.items()}
        _write_raw_safetensors(folder / "model.safetensors", stored, "F16")
    else:  # numpy has no bfloat16: keep the upper 16 bits of each float32
        stored = {n: (t.view(np.uint32) >> 16).astype(np.uint16) for n, t in tensors.items()}
        upcast = {n: (s.astype(np.uint32) << 16).view(np.float32) for n, s in stored.items()}
        _write_raw_safetensors(folder / "model.safetensors", stored, "BF16")
    checkpoint = open_checkpoint(folder)
    for name, value in upcast.items():
        np.testing.assert_array_equal(checkpoint[name].numpy(), value)
    assert set(checkpoint.tensors) == set(tensors)


def _write_raw_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name, t in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}  # fmt: skip
        offset += t.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t).tobytes())


def test_external_data_above_the_threshold(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reranker.models.checkpoint as checkpoint_module

    folder = checkpoints["bert2"]
    small = build_onnx(folder, tmp_path / "inline" / "model.onnx")
    # Stream every weight in pieces of 7 values, as a large model's are, odd sizes included.
    monkeypatch.setattr(checkpoint_module, "_CHUNK_ELEMENTS", 7)
    split = build_onnx(folder, tmp_path / "split" / "model.onnx", external_data_bytes=1000)
    assert not (tmp_path / "inline" / "model.onnx_data").exists()
    data = tmp_path / "split" / "model.onnx_data"
    # The weights moved: the graph file is a small fraction of the inline model.
    sizes = [p.stat().st_size for p in (small, split, data)]
    assert sizes[1] * 10 < sizes[0] < sizes[1] + sizes[2]
    enc = reference_encode(folder, QUERY, DOCS, max_length=64)
    np.testing.assert_array_equal(_run(split, enc), _run(small, enc))


def test_built_model_is_cached_by_weights(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = checkpoints["bert1"]
    first = built_model(folder, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert built_model(folder, tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == stamp
    assert json.loads((first.parent / "config.json").read_text())["model_type"] == "bert"
    other = built_model(checkpoints["bert2"], tmp_path / "cache")
    assert other != first
    assert not list((tmp_path / "cache").glob(".build-*"))


def test_unsupported_architecture_names_it_and_lists_the_supported(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "deberta"
    shutil.copytree(checkpoints["bert1"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["DebertaV2ForSequenceClassification"], model_type="deberta-v2")
    # ModernBERT is built; DeBERTa-v2 (disentangled relative attention) is not.
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        build_onnx(folder, tmp_path / "model.onnx")
    message = str(info.value)
    assert "DebertaV2ForSequenceClassification" in message and "deberta-v2" in message
    assert "BertForSequenceClassification" in message
    assert "XLMRobertaForSequenceClassification" in message
    assert "ModernBertForSequenceClassification" in message


def test_bert_without_pooler_weights_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _checkpoint(tmp_path, "bert", 1)
    tensors = load_file(str(folder / "model.safetensors"))
    kept = {n: t for n, t in tensors.items() if not n.startswith("bert.pooler.")}
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="pooler"):
        build_onnx(folder, tmp_path / "model.onnx")


def test_missing_or_cut_weights_are_load_errors(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, "xlmr", 1)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="offsets"):
        build_onnx(folder, tmp_path / "model.onnx")
    weights.unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        build_onnx(folder, tmp_path / "model.onnx")


@pytest.mark.torch
@pytest.mark.parametrize("variant", VARIANTS)
def test_built_graph_equals_transformers(
    checkpoints: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers")
    folder = checkpoints[variant]
    enc = reference_encode(folder, QUERY, DOCS, max_length=64)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(folder), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.double()
    got = _run(build_onnx(folder, tmp_path / "model.onnx"), enc)
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL)
