"""The decoder families' float64 references against transformers' own modelling code (torch).

Each test kit's ``reference_scores`` is compared with the ``transformers`` class of the real
repository (``Qwen2ForCausalLM``, ``GemmaForCausalLM``, ``Qwen3ForCausalLM``; Nemotron's
bidirectional Llama as its ``llama_bidirectional_model.py`` builds it: ``LlamaModel`` with every
layer's ``is_causal`` off, an all-visible mask, mean pooling and the score row), on the same
prompt ids, in float64. MiniCPM has no ``transformers`` class; its reference is checked by the
default suite only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from reranker.testing.families import bge_gemma, mxbai_v2, nemotron, zerank  # noqa: E402

pytestmark = pytest.mark.torch

ATOL = 2e-6
"""transformers computes RoPE angles in float32 even in a float64 model."""

QUERY = "what is the capital of france?"
DOCS = ["paris is the capital of france", "bananas are yellow", "Ünïcödé 東京 ça va? naïve café",
        "the river runs to the sea " * 12]


def _causal_lm(cls_name: str, folder: Path) -> object:
    import transformers

    model = getattr(transformers, cls_name).from_pretrained(str(folder), dtype=torch.float64)
    return model.eval()


def _last_logits(model: object, rows: list[list[int]]) -> np.ndarray:
    out = []
    with torch.no_grad():
        for row in rows:
            logits = model(input_ids=torch.tensor([row])).logits  # type: ignore[operator]
            out.append(logits[0, -1].numpy())
    return np.stack(out)


def test_mxbai_v2_reference_matches_qwen2_for_causal_lm(tmp_path: Path) -> None:
    folder = mxbai_v2.make_checkpoint(tmp_path / "m")
    window = 180  # tokens per prompt; the package's max_length is that less its template
    rows = mxbai_v2.encode(folder, QUERY, DOCS, instruction="find the answer",
                           max_length=mxbai_v2.package_max_length(folder, window))
    logits = _last_logits(_causal_lm("Qwen2ForCausalLM", folder), rows)
    from reranker.testing.decoder_family_reference import load_tokenizer

    tok = load_tokenizer(folder)
    one, zero = tok("1", add_special_tokens=False)["input_ids"][0], tok("0")["input_ids"][0]
    expected = logits[:, one] - logits[:, zero]
    got = mxbai_v2.reference_scores(folder, QUERY, DOCS, max_length=window,
                                    instruction="find the answer")
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.ptp(got) > 1e-3  # the documents score differently


def test_bge_gemma_reference_matches_gemma_for_causal_lm(tmp_path: Path) -> None:
    folder = bge_gemma.make_checkpoint(tmp_path / "g")
    rows = bge_gemma.flag_llm_encode(folder, QUERY, DOCS,
                                     max_length=bge_gemma.flag_max_length(folder, 120))
    logits = _last_logits(_causal_lm("GemmaForCausalLM", folder), rows)
    from reranker.testing.decoder_family_reference import load_tokenizer

    yes = load_tokenizer(folder)("Yes", add_special_tokens=False)["input_ids"][0]
    got = bge_gemma.reference_scores(folder, QUERY, DOCS, max_length=120)
    np.testing.assert_allclose(got, logits[:, yes], atol=ATOL)
    assert np.ptp(got) > 1e-3


def test_zerank_reference_matches_qwen3_for_causal_lm(tmp_path: Path) -> None:
    folder = zerank.make_checkpoint(tmp_path / "z")
    rows = zerank.encode(folder, QUERY, DOCS)
    logits = _last_logits(_causal_lm("Qwen3ForCausalLM", folder), rows)
    from reranker.testing.decoder_family_reference import load_tokenizer

    yes = load_tokenizer(folder).encode("Yes", add_special_tokens=False)[0]
    got = zerank.reference_scores(folder, QUERY, DOCS)
    np.testing.assert_allclose(got, logits[:, yes] / zerank.TEMPERATURE, atol=ATOL)
    assert np.ptp(got) > 1e-3


def test_nemotron_reference_matches_bidirectional_llama(tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from transformers import LlamaConfig, LlamaModel

    folder = nemotron.make_checkpoint(tmp_path / "n")
    fields = json.loads((folder / "config.json").read_text())
    for key in ("architectures", "auto_map", "model_type", "pooling", "temperature"):
        fields.pop(key)
    model = LlamaModel(LlamaConfig(**fields)).to(torch.float64).eval()
    weights = load_file(str(folder / "model.safetensors"))
    state = {k.removeprefix("model."): torch.from_numpy(v).to(torch.float64)
             for k, v in weights.items() if k.startswith("model.")}
    model.load_state_dict(state)
    for layer in model.layers:
        layer.self_attn.is_causal = False
    score = torch.from_numpy(weights["score.weight"]).to(torch.float64)
    expected = []
    with torch.no_grad():
        for row in nemotron.encode(folder, QUERY, DOCS, max_length=48):
            n = len(row)
            visible = torch.ones((1, 1, n, n), dtype=torch.bool)
            hidden = model(input_ids=torch.tensor([row]), attention_mask=visible).last_hidden_state
            expected.append(float(hidden[0].mean(dim=0) @ score[0]))
    got = nemotron.reference_scores(folder, QUERY, DOCS, max_length=48)
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.ptp(got) > 1e-3
