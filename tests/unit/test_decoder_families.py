"""The decoder families through the decoder backend, against their float64 references.

mxbai-rerank v2 (Qwen2), bge-reranker-v2-gemma, bge-reranker-v2-minicpm-layerwise,
llama-nemotron-rerank (bidirectional Llama) and zerank (Qwen3): each tiny kit checkpoint is
built from safetensors and scored on padded mixed-length batches (left padding, as the runner
pads) with documents past the window and non-ASCII text; raw scores and probabilities must be
the kit's float64 reference to 1e-4. Instructions are taken by mxbai v2 only, the layerwise
cutoff is a model option, int8 keeps the top 10, and broken checkpoints end in ModelLoadError.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from reranker.backends.base import ScoreItem
from reranker.config import parse_backend_config
from reranker.errors import ConfigError, InvalidInputError, ModelLoadError
from reranker.registry import build_backend
from reranker.scoring import sigmoid
from reranker.testing.families import bge_gemma, minicpm_layerwise, mxbai_v2, nemotron, zerank
from reranker.testing.wordlist import ENGLISH_WORDS

KITS = (mxbai_v2, bge_gemma, minicpm_layerwise, nemotron, zerank)
QUERY = "is the cat on the mat?"
_rng = random.Random(7)
LONG = " ".join(_rng.choice(ENGLISH_WORDS) for _ in range(400))
DOCS = ["a cat sat on the mat", "water is wet", "日本語の文書 and a cat, naïve café", "",
        LONG, "the mat " * 9]
# Windows small enough that LONG is cut (mxbai's template alone is ~110 tokens).
WINDOW = {"mxbai_v2": 200, "bge_gemma": 140, "minicpm_layerwise": 140, "nemotron": 64,
          "zerank": 64}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {kit.NAME: kit.make_checkpoint(root / kit.NAME) for kit in KITS}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


def _backend(kit: ModuleType, folder: Path, cache: str, **extra: Any) -> Any:
    config: dict[str, Any] = {"type": "custom", "model_id": str(folder),
                              "model_format": "safetensors", "max_length": WINDOW[kit.NAME],
                              "cache_dir": cache, **extra}
    if getattr(kit, "NEEDS_RULE", False):
        config.setdefault("rule", kit.NAME)
    return build_backend(parse_backend_config(config))


@pytest.mark.parametrize("kit", KITS, ids=lambda k: k.NAME)
def test_scores_match_the_reference(kit: ModuleType, built: dict[str, Path], cache: str) -> None:
    folder = built[kit.NAME]
    other_query = "what is water? " * 3
    backend = _backend(kit, folder, cache)
    try:
        got = np.asarray(backend.score(QUERY, DOCS), np.float64)
        # Two requests in one left-padded pass: rows of many lengths share a batch.
        batch = backend.score_batch([ScoreItem(QUERY, DOCS), ScoreItem(other_query, DOCS[:3])])
    finally:
        backend.close()
    want = kit.reference_scores(folder, QUERY, DOCS, max_length=WINDOW[kit.NAME])
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(sigmoid(got), sigmoid(want), atol=1e-4)
    np.testing.assert_allclose(np.asarray(batch[0], np.float64), want, atol=1e-4)
    other = kit.reference_scores(folder, other_query, DOCS[:3], max_length=WINDOW[kit.NAME])
    np.testing.assert_allclose(np.asarray(batch[1], np.float64), other, atol=1e-4)
    assert np.ptp(want) > 1e-3  # the stand-in tells documents apart


def test_mxbai_v2_takes_an_instruction(built: dict[str, Path], cache: str) -> None:
    folder = built["mxbai_v2"]
    backend = _backend(mxbai_v2, folder, cache)
    try:
        got = np.asarray(backend.score(QUERY, DOCS[:3], instruction="find cats"), np.float64)
        plain = np.asarray(backend.score(QUERY, DOCS[:3]), np.float64)
    finally:
        backend.close()
    want = mxbai_v2.reference_scores(folder, QUERY, DOCS[:3], max_length=WINDOW["mxbai_v2"],
                                     instruction="find cats")
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(got - plain).max() > 1e-4


@pytest.mark.parametrize("kit", [bge_gemma, minicpm_layerwise, nemotron, zerank],
                         ids=lambda k: k.NAME)
def test_other_families_refuse_an_instruction(kit: ModuleType, built: dict[str, Path],
                                              cache: str) -> None:
    backend = _backend(kit, built[kit.NAME], cache)
    try:
        assert backend.takes_instruction is False
        with pytest.raises(InvalidInputError, match="instruction"):
            backend.score(QUERY, DOCS[:2], instruction="find cats")
    finally:
        backend.close()
    with pytest.raises(ConfigError, match="instruction"):
        _backend(kit, built[kit.NAME], cache, instruction="find cats")


def test_layerwise_cutoff_is_a_model_option(built: dict[str, Path], cache: str) -> None:
    folder = built["minicpm_layerwise"]
    backend = _backend(minicpm_layerwise, folder, cache, cutoff_layer=3)
    try:
        got = np.asarray(backend.score(QUERY, DOCS), np.float64)
    finally:
        backend.close()
    want = minicpm_layerwise.reference_scores(folder, QUERY, DOCS, cutoff_layer=3,
                                              max_length=WINDOW["minicpm_layerwise"])
    np.testing.assert_allclose(got, want, atol=1e-4)
    last = minicpm_layerwise.reference_scores(folder, QUERY, DOCS,
                                              max_length=WINDOW["minicpm_layerwise"])
    assert np.abs(want - last).max() > 1e-3  # another layer, another score
    with pytest.raises(ModelLoadError, match="cutoff_layer 9 is outside"):
        _backend(minicpm_layerwise, folder, cache, cutoff_layer=9)
    with pytest.raises(ConfigError, match="cutoff_layer"):
        _backend(zerank, built["zerank"], cache, cutoff_layer=1)


def test_side_is_refused_where_the_prompt_cannot_cut_the_start(built: dict[str, Path],
                                                               cache: str) -> None:
    from reranker.types import Truncation

    backend = _backend(bge_gemma, built["bge_gemma"], cache)
    try:
        with pytest.raises(InvalidInputError, match="truncation_direction|side"):
            backend.score(QUERY, DOCS[:2], truncation=Truncation(side="left"))
    finally:
        backend.close()


@pytest.mark.parametrize("kit", KITS, ids=lambda k: k.NAME)
def test_int8_keeps_the_top_ten(kit: ModuleType, built: dict[str, Path], cache: str) -> None:
    rng = random.Random(1)
    docs = [" ".join(rng.choice(ENGLISH_WORDS) for _ in range(rng.randint(5, 30)))
            for _ in range(30)]
    scores = {}
    for optimization in ("none", "int8"):
        backend = _backend(kit, built[kit.NAME], cache, optimization=optimization)
        try:
            scores[optimization] = np.asarray(backend.score("the cat and the water", docs))
        finally:
            backend.close()

    def top(s: np.ndarray) -> set[int]:
        return {int(i) for i in np.argsort(-s, kind="stable")[:10]}

    # Measured on these stand-ins: 0.9 (mxbai_v2, minicpm_layerwise), 1.0 (the others).
    assert len(top(scores["none"]) & top(scores["int8"])) >= 9


def _truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _misshape(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    name = "model.layers.0.mlp.down_proj.weight"
    tensors[name] = tensors[name][:, :-1].copy()
    save_file(tensors, str(path))


@pytest.mark.parametrize("breaks", [_truncate, _misshape], ids=["truncated", "misshaped"])
@pytest.mark.parametrize("kit", KITS, ids=lambda k: k.NAME)
def test_a_broken_checkpoint_is_a_model_load_error(kit: ModuleType, breaks: Any,
                                                   tmp_path: Path) -> None:
    folder = kit.make_checkpoint(tmp_path / "model")
    breaks(folder)
    with pytest.raises(ModelLoadError):
        _backend(kit, folder, str(tmp_path / "cache"))


@pytest.mark.parametrize("kit", [mxbai_v2, bge_gemma, zerank], ids=lambda k: k.NAME)
def test_a_generic_architecture_needs_the_rule(kit: ModuleType, built: dict[str, Path],
                                               cache: str) -> None:
    """A local Qwen2 / Gemma folder cannot tell its rule: the error lists the rules; a Qwen3
    causal LM stays Qwen3-Reranker's unless the rule says zerank."""
    folder = built[kit.NAME]
    config = {"type": "custom", "model_id": str(folder), "model_format": "safetensors",
              "max_length": WINDOW[kit.NAME], "cache_dir": cache}
    if kit is zerank:
        backend = build_backend(parse_backend_config({**config, "max_length": 200}))
        try:
            assert backend.family.name == "qwen3"
        finally:
            backend.close()
        return
    with pytest.raises(ModelLoadError, match=f"set the custom model's 'rule' to one of {kit.NAME}"):
        build_backend(parse_backend_config(config))


def test_raw_scores_and_probabilities_through_the_api(built: dict[str, Path],
                                                      cache: str) -> None:
    from reranker import Reranker

    folder = built["zerank"]
    config = {"type": "custom", "model_id": str(folder), "model_format": "safetensors",
              "max_length": WINDOW["zerank"], "cache_dir": cache, "rule": "zerank"}
    want = zerank.reference_scores(folder, QUERY, DOCS[:3], max_length=WINDOW["zerank"])
    with Reranker(config) as rr:
        raw = {r.index: r.score for r in rr.rerank(QUERY, DOCS[:3], raw_scores=True)}
        prob = {r.index: r.score for r in rr.rerank(QUERY, DOCS[:3])}
    np.testing.assert_allclose([raw[i] for i in range(3)], want, atol=1e-4)
    # The authors' score: sigmoid(Yes logit / 5).
    np.testing.assert_allclose([prob[i] for i in range(3)], sigmoid(want), atol=1e-4)


@pytest.mark.parametrize("size", ["4B", "8B"])
def test_qwen3_reranker_seq_cls_conversions_of_4b_and_8b_load(size: str) -> None:
    """The ``*-seq-cls`` conversions of Qwen3-Reranker-4B/8B: their config (Qwen3-4B ties the
    embeddings, 8B does not; both have ``head_dim`` 128 and grouped-query attention) resolves
    to the qwen3 family's score head with the sizes the graph needs."""
    from reranker.models.architectures import resolve
    from reranker.models.decoders import qwen3

    shapes = {"4B": (2560, 36, 32, 8, 9728, True), "8B": (4096, 36, 32, 8, 12288, False)}
    hidden, layers, heads, kv, inter, tied = shapes[size]
    config = {"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3",
              "attention_bias": False, "attention_dropout": 0.0, "head_dim": 128,
              "hidden_act": "silu", "hidden_size": hidden, "intermediate_size": inter,
              "max_position_embeddings": 40960, "max_window_layers": layers,
              "num_attention_heads": heads, "num_hidden_layers": layers,
              "num_key_value_heads": kv, "rms_norm_eps": 1e-06, "rope_scaling": None,
              "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": tied,
              "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
              "vocab_size": 151669, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
              "pad_token_id": 151643}
    family = resolve(config)
    assert family.name == "qwen3" and family.head_for(config["architectures"][0]) == "score"
    s = qwen3.shape(config)
    assert (s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim) == (
        hidden, layers, heads, kv, 128)
