"""The encoder-family test kits themselves: checkpoints in the real layout, tokenizers that
agree with transformers, and float64 references checked wherever an independent check exists.

Independent checks: DeBERTa-v2 against transformers' own ``DebertaV2ForSequenceClassification``
(and its bucket function); jina-v2 against stock ``XLMRobertaForSequenceClassification`` on the
same weights renamed back (its architecture is XLM-R's); JinaBERT's ALiBi slopes against
transformers' BLOOM ALiBi; mGTE's rotation against transformers' Llama rotary helper. Those need
torch and skip without it. What no library here can check (mGTE's NTK rule, both gated MLPs'
halves, JinaBERT's MLP residual) is pinned by hand-computed values below and by the reading
written in each kit's docstring.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from tokenizers import Tokenizer

from reranker.testing.families import deberta_v2, jina_v2, jinabert, mgte
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café 中文 текст", "naïve  résumé\tdéjà\nvu"]
KITS: dict[str, ModuleType] = {kit.NAME: kit for kit in (deberta_v2, mgte, jinabert, jina_v2)}
ARCHITECTURES = {
    "deberta_v2": ("DebertaV2ForSequenceClassification", "deberta-v2"),
    "mgte": ("NewForSequenceClassification", "new"),
    "jinabert": ("JinaBertForSequenceClassification", "bert"),
    "jina_v2": ("XLMRobertaForSequenceClassification", "xlm-roberta"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoder-kits")
    return {name: kit.make_checkpoint(root / name) for name, kit in KITS.items()}


@pytest.mark.parametrize("name", KITS)
def test_checkpoint_has_the_hub_layout(folders: dict[str, Path], name: str) -> None:
    from safetensors import safe_open

    config = json.loads((folders[name] / "config.json").read_text())
    assert (config["architectures"][0], config["model_type"]) == ARCHITECTURES[name]
    assert ("auto_map" in config) == (name != "deberta_v2")  # the custom-code families
    with safe_open(str(folders[name] / "model.safetensors"), "np") as f:
        names = set(f.keys())
        assert f.metadata() == {"format": "pt"}
    expected = {
        "deberta_v2": {"deberta.encoder.rel_embeddings.weight", "pooler.dense.weight",
                       "deberta.encoder.layer.1.attention.self.query_proj.weight"},
        "mgte": {"new.encoder.layer.1.attention.qkv_proj.weight",
                 "new.encoder.layer.1.mlp.up_gate_proj.weight", "new.pooler.dense.weight"},
        "jinabert": {"bert.encoder.layer.1.mlp.gated_layers.weight",
                     "bert.encoder.layer.1.mlp.wo.bias", "bert.pooler.dense.weight",
                     "bert.encoder.layer.1.mlp.layernorm.weight"},
        "jina_v2": {"roberta.emb_ln.weight", "roberta.encoder.layers.1.mixer.Wqkv.weight",
                    "roberta.encoder.layers.1.norm2.bias", "classifier.out_proj.weight"},
    }[name]
    assert expected <= names
    assert "bert.embeddings.position_embeddings.weight" not in names  # ALiBi has no table


@pytest.mark.parametrize("name", KITS)
def test_the_same_seed_writes_the_same_bytes(folders: dict[str, Path], tmp_path: Path,
                                             name: str) -> None:
    again = KITS[name].make_checkpoint(tmp_path / name)
    for file in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (again / file).read_bytes() == (folders[name] / file).read_bytes()
    other = KITS[name].make_checkpoint(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()


@pytest.mark.parametrize("name", KITS)
def test_tokenizer_json_encodes_pairs_as_transformers_does(folders: dict[str, Path],
                                                           name: str) -> None:
    """The library reads ``tokenizer.json``; the references go through AutoTokenizer."""
    from transformers import AutoTokenizer

    folder = folders[name]
    auto = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for doc in DOCS:
        expected = auto([QUERY], [doc])
        got = plain.encode(QUERY, doc)
        assert got.ids == expected["input_ids"][0], doc
        if "token_type_ids" in expected:
            assert got.type_ids == expected["token_type_ids"][0]


@pytest.mark.parametrize("name", KITS)
def test_reference_scores_truncate_at_the_window(folders: dict[str, Path], name: str) -> None:
    kit = KITS[name]
    scores = kit.reference_scores(folders[name], QUERY, DOCS)
    assert scores.shape == (len(DOCS),) and np.isfinite(scores).all()
    assert np.ptp(scores) > 0.5  # the tiny weights separate documents
    # LONG_DOCUMENT is cut at the window: more text past the cut changes nothing.
    longer = kit.reference_scores(folders[name], QUERY, [LONG_DOCUMENT + " and more words"])
    np.testing.assert_allclose(longer[0], scores[len(DOCUMENTS)], atol=1e-12)
    # A shorter window sees less of it.
    short = kit.reference_scores(folders[name], QUERY, [LONG_DOCUMENT], max_length=24)
    assert abs(short[0] - scores[len(DOCUMENTS)]) > 1e-6


def test_deberta_buckets_hand_computed() -> None:
    rel = np.array([-63, -5, -4, -3, 0, 3, 4, 5, 20, 63])
    # mid = 4: exact up to 4, then ceil(log(|r| / 4) / log(63 / 4) * 3) + 4.
    expected = [-7, -5, -4, -3, 0, 3, 4, 5, 6, 7]
    assert deberta_v2.bucket_positions(rel, 8, 64).tolist() == expected
    assert deberta_v2.bucket_positions(rel, -1, 64).tolist() == rel.tolist()
    real = deberta_v2.bucket_positions(np.arange(-511, 512), 256, 512)
    assert real[511 + 128] == 128 and real[511 + 129] == 129 and real[-1] == 255
    assert (np.diff(real) >= 0).all() and (real == -real[::-1]).all()


def test_alibi_slopes_hand_computed() -> None:
    assert jinabert.alibi_slopes(8) == [2.0**-i for i in range(1, 9)]
    # Not a power of two: the 8-head slopes, then every other one of the 16-head slopes.
    twelve = jinabert.alibi_slopes(12)
    assert twelve[:8] == [2.0**-i for i in range(1, 9)]
    np.testing.assert_allclose(twelve[8:], [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5])
    np.testing.assert_allclose(jinabert.alibi_slopes(6), [0.25, 0.0625, 2.0**-6, 2.0**-8,
                                                          2.0**-1, 2.0**-3])


def test_mgte_ntk_frequencies_hand_computed() -> None:
    config = {"hidden_size": 32, "num_attention_heads": 4, "rope_theta": 160000.0,
              "max_position_embeddings": 64, "rope_scaling": {"type": "ntk", "factor": 8.0}}
    cos, sin = mgte.rotary_tables(config, 3)
    dim = 8
    inv = [(160000.0 * 8.0) ** (-i / dim) / 8.0 ** (2 / dim) for i in range(0, dim, 2)]
    np.testing.assert_allclose(np.arccos(np.clip(cos[1, :4], -1, 1)), inv, rtol=1e-5)
    np.testing.assert_allclose(sin[2, 4:], np.sin(2 * np.array(inv)), atol=1e-6)
    plain = mgte.rotary_tables({**config, "rope_scaling": None}, 2)[1]
    np.testing.assert_allclose(np.arcsin(plain[1, :4]),
                               [160000.0 ** (-i / dim) for i in range(0, dim, 2)], rtol=1e-5)
    mixed = {**config, "rope_scaling": {"type": "ntk", "factor": 8.0, "mixed_b": 2.0}}
    a = math.log(8.0) / (dim / 2) ** 2.0
    lam = [math.exp(a * j**2.0) for j in range(1, dim // 2 + 1)]
    np.testing.assert_allclose(np.arcsin(mgte.rotary_tables(mixed, 2)[1][1, :4]),
                               [160000.0 ** (-i / dim) / lam[i // 2] for i in range(0, dim, 2)],
                               rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [
    {},
    {"share_att_key": False, "max_relative_positions": 24},
    {"pos_att_type": "c2p", "position_biased_input": True, "type_vocab_size": 2,
     "norm_rel_ebd": "none", "stray_position_table": True},
])
def test_deberta_reference_equals_transformers(tmp_path: Path, shape: dict[str, object]) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers")
    folder = deberta_v2.make_checkpoint(tmp_path / "deberta", **shape)  # type: ignore[arg-type]
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, truncation=True, max_length=128,
              return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits.double().numpy()[:, 0]
    got = deberta_v2.reference_scores(folder, QUERY, DOCS)
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.torch
def test_deberta_buckets_equal_transformers() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    rel = np.arange(-8192, 8193)
    for buckets, max_position in ((256, 512), (8, 64), (8, 24), (64, 1024)):
        expected = make_log_bucket_position(torch.from_numpy(rel), buckets, max_position)
        got = deberta_v2.bucket_positions(rel, buckets, max_position)
        assert (got == expected.long().numpy()).all(), (buckets, max_position)


@pytest.mark.torch
def test_jina_v2_reference_equals_stock_xlm_roberta(folders: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """jina-v2 is XLM-R under flash-attn names: transformers' own XLM-R on the renamed
    weights must give the same logits, padded batch and all."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import load_file, save_file

    source = folders["jina_v2"]
    stock = tmp_path / "stock"
    stock.mkdir()
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (stock / file).write_bytes((source / file).read_bytes())
    config = json.loads((source / "config.json").read_text())
    del config["auto_map"]
    (stock / "config.json").write_text(json.dumps(config))
    weights = load_file(str(source / "model.safetensors"))
    save_file(jina_v2.to_transformers_names(weights, config["num_hidden_layers"]),
              str(stock / "model.safetensors"), metadata={"format": "pt"})
    tok = transformers.AutoTokenizer.from_pretrained(str(stock))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(stock), attn_implementation="eager").eval()
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, truncation=True, max_length=128,
              return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits.double().numpy()[:, 0]
    np.testing.assert_allclose(jina_v2.reference_scores(source, QUERY, DOCS), expected,
                               atol=2e-5)


@pytest.mark.torch
@pytest.mark.parametrize("heads", [6, 8, 12, 16])
def test_alibi_slopes_equal_transformers_bloom(heads: int) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    # BLOOM's bias at key position j (one query, no padding) is slope_h * j.
    alibi = build_alibi_tensor(torch.ones(1, 2), heads, torch.float64)
    np.testing.assert_allclose(alibi[:, 0, 1].numpy(), jinabert.alibi_slopes(heads), rtol=1e-6)


@pytest.mark.torch
def test_mgte_rotation_equals_transformers_llama() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    config = {"hidden_size": 32, "num_attention_heads": 4, "rope_theta": 160000.0,
              "max_position_embeddings": 64, "rope_scaling": {"type": "ntk", "factor": 8.0}}
    cos, sin = mgte.rotary_tables(config, 5)
    x = np.random.RandomState(0).normal(size=(5, 8))
    t = torch.from_numpy(x)[None, None]
    expected, _ = apply_rotary_pos_emb(t, t, torch.from_numpy(cos)[None],
                                       torch.from_numpy(sin)[None])
    np.testing.assert_allclose(mgte._rotate(x, cos, sin), expected[0, 0].numpy(), atol=1e-12)
