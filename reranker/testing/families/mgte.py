"""Test kit for mGTE rerankers (``Alibaba-NLP/gte-multilingual-reranker-base``).

``make_checkpoint`` writes the repo's layout at toy sizes: ``config.json`` of model type ``new``
(``NewForSequenceClassification``, custom code under ``auto_map`` pointing at
``Alibaba-NLP/new-impl``, rotary positions with NTK ``rope_scaling``, packed ``qkv_proj``),
``model.safetensors`` under the ``new.`` names, and the XLM-R tokenizer the repo uses
(``<s> A </s></s> B </s>``, no token types).

``reference_scores`` recomputes in float64 what the model card's call returns
(``tokenizer(pairs, padding=True, truncation=True, max_length=...)`` then
``model(**inputs).logits``): new-impl's ``NewModel`` (word + type-0 embeddings, LayerNorm; per
layer rotary attention on a packed projection, residual and ``attn_ln``, a gated MLP
``down(act(gate) * up)`` with ``up, gate = split(up_gate_proj(x))``, residual and ``mlp_ln``),
then ``NewPooler`` (dense + tanh on the first token) and the classifier. The rotary table is
built as new-impl builds it: with ``rope_scaling`` of type ``ntk`` the cache covers
``max_position_embeddings * factor`` positions, so the scaled frequencies are used at every
length (``base * factor`` and ``/ factor ** (2 / dim)``, or the ``mixed_b`` form); angles are
float32 as torch computes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families.encoder_numpy import (
    TinyWeights,
    attention,
    dense,
    encode_pairs,
    gelu,
    layer_norm,
    load_checkpoint,
    save_checkpoint,
)
from reranker.testing.tokenizers import write_xlmr_tokenizer

__all__ = ["NAME", "REPOS", "make_checkpoint", "reference_scores", "rotary_tables"]

NAME = "mgte"
REPOS = ("Alibaba-NLP/gte-multilingual-reranker-base",)
_IMPL = "Alibaba-NLP/new-impl"
_AUTO_MAP = {
    "AutoConfig": f"{_IMPL}--configuration.NewConfig",
    "AutoModel": f"{_IMPL}--modeling.NewModel",
    "AutoModelForMaskedLM": f"{_IMPL}--modeling.NewForMaskedLM",
    "AutoModelForMultipleChoice": f"{_IMPL}--modeling.NewForMultipleChoice",
    "AutoModelForQuestionAnswering": f"{_IMPL}--modeling.NewForQuestionAnswering",
    "AutoModelForSequenceClassification": f"{_IMPL}--modeling.NewForSequenceClassification",
    "AutoModelForTokenClassification": f"{_IMPL}--modeling.NewForTokenClassification",
}


def make_checkpoint(
    folder: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 32,
    num_heads: int = 4,
    intermediate_size: int = 48,
    max_position_embeddings: int = 128,
    rope_theta: float = 160000.0,
    rope_scaling: dict[str, Any] | None = None,
    num_labels: int = 1,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write an mGTE reranker folder; returns it.

    ``rope_scaling`` defaults to the repo's ``{"type": "ntk", "factor": 8.0}``; pass ``{}`` for
    none. Real shape: ``num_layers=12, hidden_size=768, num_heads=12,
    intermediate_size=3072, max_position_embeddings=8192, vocab_size=250048``.
    """
    folder = Path(folder)
    vocab = write_xlmr_tokenizer(folder, vocab_size=vocab_size,
                                 model_max_length=max_position_embeddings)
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    scaling = {"factor": 8.0, "type": "ntk"} if rope_scaling is None else rope_scaling
    config: dict[str, Any] = {
        "architectures": ["NewForSequenceClassification"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": dict(_AUTO_MAP),
        "classifier_dropout": 0.0,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden_size,
        "id2label": labels,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "label2id": {v: int(k) for k, v in labels.items()},
        "layer_norm_eps": 1e-12,
        "layer_norm_type": "layer_norm",
        "logn_attention_clip1": False,
        "logn_attention_scale": False,
        "max_position_embeddings": max_position_embeddings,
        "model_type": "new",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "pack_qkv": True,
        "pad_token_id": 1,
        "position_embedding_type": "rope",
        "rope_scaling": scaling or None,
        "rope_theta": rope_theta,
        "torch_dtype": "float32",
        "transformers_version": "4.39.1",
        "type_vocab_size": 1,
        "unpad_inputs": False,
        "use_memory_efficient_attention": False,
        "vocab_size": vocab,
    }
    tw = TinyWeights(seed)
    h, p = hidden_size, "new"
    tw.table(f"{p}.embeddings.word_embeddings", vocab, h)
    tw.table(f"{p}.embeddings.token_type_embeddings", 1, h)
    tw.norm(f"{p}.embeddings.LayerNorm", h)
    for i in range(num_layers):
        layer = f"{p}.encoder.layer.{i}"
        tw.linear(f"{layer}.attention.qkv_proj", 3 * h, h, gain=2.0)
        tw.linear(f"{layer}.attention.o_proj", h, h)
        tw.linear(f"{layer}.mlp.up_gate_proj", 2 * intermediate_size, h, bias=False)
        tw.linear(f"{layer}.mlp.down_proj", h, intermediate_size)
        tw.norm(f"{layer}.attn_ln", h)
        tw.norm(f"{layer}.mlp_ln", h)
    tw.linear(f"{p}.pooler.dense", h, h, gain=2.0)
    tw.classifier("classifier", num_labels, h)
    save_checkpoint(folder, config, tw.w)
    return folder


def rotary_tables(config: dict[str, Any], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` of shape ``[length, head_dim]`` as new-impl's rotary module caches them."""
    f32 = np.float32
    dim = int(config["hidden_size"]) // int(config["num_attention_heads"])
    base = float(config.get("rope_theta", 10000.0))
    max_pos = int(config["max_position_embeddings"])
    exponents = np.arange(0, dim, 2, dtype=f32) / f32(dim)
    inv_freq = f32(1.0) / np.power(f32(base), exponents)
    scaling = config.get("rope_scaling")
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind != "ntk":
            raise NotImplementedError(f"rope_scaling type {kind!r}")
        factor = float(scaling["factor"])
        # The cache is built for max_position_embeddings * factor positions (or the input's
        # length when longer) and rebuilt with scaled frequencies whenever that exceeds
        # max_position_embeddings.
        if max(max_pos * factor, length) > max_pos:
            mixed_b = scaling.get("mixed_b")
            if mixed_b is None:
                inv_freq = f32(1.0) / np.power(f32(base * factor), exponents)
                inv_freq = inv_freq / f32(factor ** (2 / dim))
            else:
                a = np.log(f32(factor)) / f32((dim / 2) ** mixed_b)
                lam = np.exp(a * np.arange(1, dim // 2 + 1, dtype=f32) ** f32(mixed_b))
                inv_freq = inv_freq / lam.astype(f32)
    angles = np.arange(length, dtype=f32)[:, None] * inv_freq[None, :].astype(f32)
    emb = np.concatenate([angles, angles], axis=1).astype(np.float64)
    return np.cos(emb), np.sin(emb)


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return x * cos + np.concatenate([-x[:, half:], x[:, :half]], axis=1) * sin


def _norm(config: dict[str, Any], w: dict[str, np.ndarray], x: np.ndarray, name: str) -> np.ndarray:
    eps = float(config["layer_norm_eps"])
    if config.get("layer_norm_type", "layer_norm") == "rms_norm":
        return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * w[f"{name}.weight"]
    return layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps)


def _logits(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    if config.get("position_embedding_type", "rope") != "rope" or config.get(
            "logn_attention_scale"):
        raise NotImplementedError("mGTE without rope / with logn attention scale")
    if config.get("hidden_act", "gelu") != "gelu":
        raise NotImplementedError(f"hidden_act {config['hidden_act']!r}")
    p, n = "new", len(ids)
    heads, h = int(config["num_attention_heads"]), int(config["hidden_size"])
    d, inter = h // heads, int(config["intermediate_size"])
    x = w[f"{p}.embeddings.word_embeddings.weight"][ids]
    if int(config.get("type_vocab_size", 0)) > 0:
        x = x + w[f"{p}.embeddings.token_type_embeddings.weight"][0]
    x = _norm(config, w, x, f"{p}.embeddings.LayerNorm")
    cos, sin = rotary_tables(config, n)
    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layer.{i}"
        qkv = dense(w, x, f"{layer}.attention.qkv_proj")
        q, k, v = qkv[:, :h].copy(), qkv[:, h:2 * h].copy(), qkv[:, 2 * h:]
        for head in range(heads):
            cols = slice(head * d, (head + 1) * d)
            q[:, cols] = _rotate(q[:, cols], cos, sin)
            k[:, cols] = _rotate(k[:, cols], cos, sin)
        x = _norm(config, w, x + dense(w, attention(q, k, v, heads), f"{layer}.attention.o_proj"),
                  f"{layer}.attn_ln")
        up_gate = dense(w, x, f"{layer}.mlp.up_gate_proj")
        up, gate = up_gate[:, :inter], up_gate[:, inter:]
        x = _norm(config, w, x + dense(w, gelu(gate) * up, f"{layer}.mlp.down_proj"),
                  f"{layer}.mlp_ln")
    pooled = np.tanh(dense(w, x[0], f"{p}.pooler.dense"))
    return dense(w, pooled, "classifier")


def reference_scores(folder: str | Path, query: str, documents: Sequence[str], *,
                     max_length: int | None = None) -> np.ndarray:
    """Raw logits in float64 (``[n]`` for one label, else ``[n, labels]``; the card prints
    these, the library's default score is their sigmoid)."""
    folder = Path(folder)
    config, w = load_checkpoint(folder)
    if max_length is None:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
        max_length = int(tok_config["model_max_length"])
    rows = encode_pairs(folder, query, documents, max_length)
    logits = np.stack([_logits(config, w, r["input_ids"]) for r in rows])
    return logits[:, 0] if logits.shape[1] == 1 else logits
