"""DeBERTa-v2, mGTE, JinaBERT and jina-reranker-v2 through the library, against their kits'
float64 references (the authors' rule: truncation at the window, head, raw logit; the default
score its sigmoid), and the checkpoints each family must refuse.

Each case builds the family's tiny checkpoint (Hub layout, safetensors only), loads it as a
``custom`` model and scores a mixed-length batch (padded by the runner) with an empty
document, a document past the 128-token window and non-ASCII text, to 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from reranker import Reranker
from reranker.errors import ConfigError, ModelLoadError
from reranker.testing.families import deberta_v2, jina_v2, jinabert, mgte
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4
DOCS = [*DOCUMENTS, LONG_DOCUMENT, "Ünïcödé café 中文 текст", "naïve résumé — déjà vu " * 40]
CASES: list[tuple[ModuleType, dict[str, Any]]] = [
    (deberta_v2, {}),  # mxbai v1 layout: shared keys, p2c|c2p, 8 buckets
    (deberta_v2, {"share_att_key": False, "max_relative_positions": 24}),  # clamped buckets
    (deberta_v2, {"pos_att_type": "c2p", "position_biased_input": True, "type_vocab_size": 2,
                  "norm_rel_ebd": "none", "stray_position_table": True}),
    (mgte, {}),  # NTK rope_scaling factor 8, as the repo
    (mgte, {"rope_scaling": {}, "num_heads": 2}),
    (mgte, {"rope_scaling": {"type": "ntk", "factor": 4.0, "mixed_b": 1.5}}),
    (jinabert, {}),  # 6 heads: ALiBi's rule for a head count that is not a power of two
    (jinabert, {"feed_forward_type": "reglu", "num_heads": 8, "hidden_size": 32}),
    (jina_v2, {}),
    (jina_v2, {"num_labels": 2}),
]


def _ids(case: tuple[ModuleType, dict[str, Any]]) -> str:
    kit, shape = case
    return kit.NAME + ("-" + "-".join(shape) if shape else "")


def _custom(folder: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "custom", "model_id": str(folder), "cache_dir": str(folder.parent / "cache"),
            **extra}


def _by_index(results: list[Any]) -> np.ndarray:
    return np.array([r.score for r in sorted(results, key=lambda r: r.index)])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_scores_equal_the_authors_reference(case: tuple[ModuleType, dict[str, Any]],
                                            tmp_path: Path) -> None:
    kit, shape = case
    folder = kit.make_checkpoint(tmp_path / "model", **shape)
    want = kit.reference_scores(folder, QUERY, DOCS)
    with Reranker(_custom(folder, batch_size=4)) as rr:
        assert rr.backend.max_length == 128
        raw = _by_index(rr.rerank(QUERY, DOCS, raw_scores=True))
        prob = _by_index(rr.rerank(QUERY, DOCS))
    if want.ndim == 2:  # two labels: the raw score is the logit difference, as for XLM-R
        want = want[:, 1] - want[:, 0]
    np.testing.assert_allclose(raw, want, atol=TOL)
    np.testing.assert_allclose(prob, 1.0 / (1.0 + np.exp(-want)), atol=TOL)


@pytest.mark.parametrize("kit", [deberta_v2, mgte, jinabert, jina_v2], ids=lambda k: k.NAME)
def test_int8_stays_close_to_float32(kit: ModuleType, tmp_path: Path) -> None:
    """Dynamic int8 builds for every family; on the tiny random weights probabilities move by
    under 0.1 (top-10 agreement at the real shapes: benchmarks/families.py)."""
    folder = kit.make_checkpoint(tmp_path / "model")
    with Reranker(_custom(folder)) as rr:
        full = _by_index(rr.rerank(QUERY, DOCS))
    with Reranker(_custom(folder, optimization="int8")) as rr:
        quant = _by_index(rr.rerank(QUERY, DOCS))
    assert np.abs(full - quant).max() < 0.1
    assert not np.array_equal(full, quant)  # the int8 graph really ran


def test_jina_v2_is_told_from_xlm_roberta_by_its_config_class(tmp_path: Path) -> None:
    folder = jina_v2.make_checkpoint(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="rule 'xlm_roberta' does not score"):
        Reranker(_custom(folder, rule="xlm_roberta"))
    with Reranker(_custom(folder, rule="jina_v2")) as rr:
        got = _by_index(rr.rerank(QUERY, DOCS[:3], raw_scores=True))
    np.testing.assert_allclose(got, jina_v2.reference_scores(folder, QUERY, DOCS[:3]), atol=TOL)


def test_the_encoder_families_refuse_an_instruction(tmp_path: Path) -> None:
    folder = deberta_v2.make_checkpoint(tmp_path / "model")
    with pytest.raises(ConfigError, match="instruction"):
        Reranker(_custom(folder, instruction="Judge relevance"))


def _tamper(folder: Path, name: str, change: str) -> None:
    path = folder / "model.safetensors"
    if change == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        return
    if change == "layers":
        config = json.loads((folder / "config.json").read_text())
        config["num_hidden_layers"] = 3
        (folder / "config.json").write_text(json.dumps(config))
        return
    weights = load_file(str(path))
    weights[name] = weights[name][:-2] if change == "rows" else weights[name][:, :-1]
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path),
              metadata={"format": "pt"})


# Per family: a weight whose rows the family itself checks, and one a mis-shaped matrix
# would only break at session creation.
_HOSTILE = {
    "deberta_v2": ("deberta.encoder.rel_embeddings.weight",
                   "deberta.encoder.layer.1.attention.self.query_proj.weight"),
    "mgte": ("new.encoder.layer.1.mlp.up_gate_proj.weight",
             "new.encoder.layer.0.attention.qkv_proj.weight"),
    "jinabert": ("bert.encoder.layer.1.mlp.gated_layers.weight",
                 "bert.encoder.layer.0.attention.self.key.weight"),
    "jina_v2": ("roberta.encoder.layers.1.mixer.Wqkv.weight",
                "roberta.encoder.layers.0.mlp.fc2.weight"),
}


@pytest.mark.parametrize("change", ["truncated", "layers", "rows", "columns"])
@pytest.mark.parametrize("kit", [deberta_v2, mgte, jinabert, jina_v2], ids=lambda k: k.NAME)
def test_broken_checkpoints_are_refused(kit: ModuleType, change: str, tmp_path: Path) -> None:
    folder = kit.make_checkpoint(tmp_path / "model")
    rows_checked, other = _HOSTILE[kit.NAME]
    _tamper(folder, rows_checked if change == "rows" else other, change)
    with pytest.raises(ModelLoadError) as info:
        Reranker(_custom(folder))
    if change == "rows":
        assert "rows" in str(info.value)


@pytest.mark.parametrize("kit", [deberta_v2, mgte], ids=lambda k: k.NAME)
@pytest.mark.parametrize("edit", [{"max_position_embeddings": 1 << 20},
                                  {"hidden_size": 1 << 20, "num_attention_heads": 1}])
def test_configs_that_would_size_huge_position_tables_are_refused(
        kit: ModuleType, edit: dict[str, int], tmp_path: Path) -> None:
    """Bucket and rotary tables are sized from config.json: an absurd size is refused before
    any table is built (memory stays bounded)."""
    folder = kit.make_checkpoint(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ModelLoadError, match="max_position_embeddings|hidden_size|wide"):
        Reranker(_custom(folder))
