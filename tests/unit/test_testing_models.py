"""The synthetic model folders of ``reranker.testing`` against the independent numpy reference.

The ONNX graph, the safetensors weights and the tokenizer files are all written by
``reranker.testing``; these tests check that they agree with each other, so that later tests can
trust them as stand-ins for the Hub repositories.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from reranker.testing import (
    EMBEDDED_PADDING_LENGTH,
    EMBEDDED_TRUNCATION_MAX_LENGTH,
    build_broken_models,
    build_cross_encoder,
    onnx_model_path,
    reference_encode,
    reference_logits,
    write_bert_tokenizer,
    write_tokenizer,
)

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany.",
    "",
    "How do plants make food? Photosynthesis converts sunlight into sugars.",
    "中文 北京大学 Привет мир café über Straße, “quoted” 123,456.78 ！",
    "A long story about a king who ruled the land for many years. " * 12,
    "Paris",
]
PAIRS = [(QUERY, d) for d in DOCS] + [
    ("", "empty query"),
    ("  spaces\tand\nnewlines  ", "UPPER case Words RUNNING runners quickly"),
    ("naïve façade", "ＦＵＬＬ width ｔｅｘｔ，和标点。"),
]
MAX_LENGTH = 64
TOLERANCE = 1e-4

VARIANTS = {
    "bert-1": {"arch": "bert", "num_labels": 1},
    "bert-2": {"arch": "bert", "num_labels": 2},
    "xlmr-1": {"arch": "xlmr", "num_labels": 1},
    "xlmr-2": {"arch": "xlmr", "num_labels": 2},
    "bert-1-external": {"arch": "bert", "num_labels": 1, "external_data": True},
    "xlmr-2-external": {"arch": "xlmr", "num_labels": 2, "external_data": True},
    "xlmr-1-flat": {"arch": "xlmr", "num_labels": 1, "layout": "flat", "seed": 3},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    options = VARIANTS[request.param]
    folder = build_cross_encoder(tmp_path_factory.mktemp(request.param), **options)
    path = onnx_model_path(folder, options.get("layout", "xenova"))
    return folder, options, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, enc: dict[str, np.ndarray]) -> np.ndarray:
    return session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]


def test_onnx_matches_reference(variant) -> None:
    folder, options, session = variant
    enc = reference_encode(folder, QUERY, DOCS, max_length=MAX_LENGTH)
    assert enc["input_ids"].shape[1] == MAX_LENGTH  # the long document was truncated
    logits = _run(session, enc)
    assert logits.dtype == np.float32
    assert logits.shape == (len(DOCS), options["num_labels"])
    expected = reference_logits(folder, **enc)
    np.testing.assert_allclose(logits, expected, atol=TOLERANCE, rtol=0)
    # Spread out and not saturated: a useful stand-in for a real reranker.
    assert np.ptp(expected[:, 0]) > 0.2
    assert np.abs(expected).max() < 10


def test_padded_rows_equal_unpadded(variant) -> None:
    folder, _, session = variant
    batch = reference_encode(folder, QUERY, DOCS, max_length=MAX_LENGTH)
    padded = _run(session, batch)
    for row, doc in enumerate(DOCS):
        alone = reference_encode(folder, QUERY, doc, max_length=MAX_LENGTH)
        assert alone["attention_mask"].all()
        np.testing.assert_allclose(_run(session, alone)[0], padded[row], atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            reference_logits(folder, **alone)[0], padded[row], atol=TOLERANCE, rtol=0
        )


def test_graph_inputs_and_config(variant) -> None:
    folder, options, session = variant
    arch = options["arch"]
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    assert [i.name for i in session.get_inputs()] == names
    assert all(i.type == "tensor(int64)" and len(i.shape) == 2 for i in session.get_inputs())
    assert all(isinstance(d, str) for i in session.get_inputs() for d in i.shape)
    [output] = session.get_outputs()
    assert output.name == "logits" and output.shape[1] == options["num_labels"]

    config = json.loads((folder / "config.json").read_text())
    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    assert config["vocab_size"] == vocab
    assert len(config["id2label"]) == options["num_labels"]
    if arch == "bert":
        assert config["architectures"] == ["BertForSequenceClassification"]
        assert (config["pad_token_id"], config["type_vocab_size"]) == (0, 2)
        assert (config["layer_norm_eps"], config["max_position_embeddings"]) == (1e-12, 128)
    else:
        assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
        assert (config["pad_token_id"], config["type_vocab_size"]) == (1, 1)
        assert (config["layer_norm_eps"], config["max_position_embeddings"]) == (1e-5, 130)


def test_folder_layout(tmp_path: Path) -> None:
    folder = build_cross_encoder(tmp_path / "m", arch="xlmr", external_data=True)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "config.json",
        "model.safetensors",
        "onnx/model.onnx",
        "onnx/model.onnx_data",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    graph, data = folder / "onnx" / "model.onnx", folder / "onnx" / "model.onnx_data"
    assert graph.stat().st_size < data.stat().st_size / 4
    from safetensors.numpy import load_file

    names = set(load_file(str(folder / "model.safetensors")))
    assert {"classifier.dense.weight", "classifier.out_proj.bias"} <= names
    assert not any("pooler" in n for n in names)
    flat = build_cross_encoder(tmp_path / "flat", layout="flat")
    assert (flat / "model.onnx").is_file() and not (flat / "onnx").exists()
    with pytest.raises(ValueError, match="layout"):
        build_cross_encoder(tmp_path / "bad", layout="nested")


def test_builds_are_deterministic(tmp_path: Path) -> None:
    a = build_cross_encoder(tmp_path / "a", arch="xlmr", seed=7)
    b = build_cross_encoder(tmp_path / "b", arch="xlmr", seed=7)
    c = build_cross_encoder(tmp_path / "c", arch="xlmr", seed=8)
    for name in ("model.safetensors", "onnx/model.onnx", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_transformers_and_tokenizers_agree(tmp_path: Path, arch: str) -> None:
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path, arch)
    reference = AutoTokenizer.from_pretrained(str(tmp_path))
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for query, doc in PAIRS:
        # The batch form: transformers encodes ``tok(query, "")`` as a single sequence.
        expected = {k: v[0] for k, v in reference([query], [doc]).items()}
        got = raw.encode(query, doc)
        assert got.ids == expected["input_ids"], (query, doc)
        assert got.type_ids == expected.get("token_type_ids", [0] * len(got.ids))
    # Real sentences split into several pieces, and mixed scripts mostly avoid the unknown token.
    pieces = raw.encode(QUERY, DOCS[3]).tokens
    assert len(pieces) > len(f"{QUERY} {DOCS[3]}".split()) + 3
    mixed = raw.encode(DOCS[4]).ids
    assert mixed.count(raw.token_to_id("[UNK]" if arch == "bert" else "<unk>")) <= 3
    if arch == "bert":
        assert set(reference(QUERY, DOCS[0])["token_type_ids"]) == {0, 1}


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_embedded_settings_are_written(tmp_path: Path, arch: str) -> None:
    write_tokenizer(tmp_path, arch, embedded_settings=True)
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["truncation"]["max_length"] == EMBEDDED_TRUNCATION_MAX_LENGTH
    assert data["padding"]["strategy"] == {"Fixed": EMBEDDED_PADDING_LENGTH}
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert len(raw.encode("q", DOCS[5]).ids) == EMBEDDED_PADDING_LENGTH
    assert len(raw.encode("q", "a").ids) == EMBEDDED_PADDING_LENGTH


def test_vocab_padding(tmp_path: Path) -> None:
    assert write_bert_tokenizer(tmp_path / "big", vocab_size=5000) == 5000
    assert write_tokenizer(tmp_path / "x", "xlmr", vocab_size=5000) == 5000
    mask = Tokenizer.from_file(str(tmp_path / "x" / "tokenizer.json")).token_to_id("<mask>")
    assert mask == 4999
    with pytest.raises(ValueError, match="smaller than"):
        write_bert_tokenizer(tmp_path / "small", vocab_size=10)


def test_broken_models(tmp_path: Path) -> None:
    broken = build_broken_models(tmp_path)
    enc = reference_encode(broken["three_logits"], QUERY, DOCS[:2], max_length=MAX_LENGTH)
    three = ort.InferenceSession(str(onnx_model_path(broken["three_logits"])))
    assert three.get_outputs()[0].shape == ["batch_size", 3]
    assert _run(three, enc).shape == (2, 3)
    headless = ort.InferenceSession(str(onnx_model_path(broken["no_head"])))
    assert headless.get_outputs()[0].name == "logits"
    assert _run(headless, enc).shape == (2, enc["input_ids"].shape[1], 32)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own untyped errors
        ort.InferenceSession(str(onnx_model_path(broken["not_onnx"])))


def test_quantized_model_is_close(tmp_path: Path) -> None:
    folder = build_cross_encoder(tmp_path, arch="bert", quantize=True)
    session = ort.InferenceSession(str(onnx_model_path(folder, quantized=True)))
    enc = reference_encode(folder, QUERY, DOCS, max_length=MAX_LENGTH)
    np.testing.assert_allclose(_run(session, enc), reference_logits(folder, **enc), atol=0.5)


def test_importable_without_ray() -> None:
    code = "import sys, reranker.testing; assert 'ray' not in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.torch
@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_transformers_model_matches_reference(tmp_path: Path, arch: str) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification

    folder = build_cross_encoder(tmp_path, arch=arch, num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = reference_encode(folder, QUERY, DOCS, max_length=MAX_LENGTH)
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    np.testing.assert_allclose(logits, reference_logits(folder, **enc), atol=TOLERANCE, rtol=0)
