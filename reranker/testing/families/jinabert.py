"""Test kit for JinaBERT rerankers (``jinaai/jina-reranker-v1-turbo-en``, ``-tiny-en``).

``make_checkpoint`` writes the repos' layout at toy sizes: ``config.json`` of model type
``bert`` with ``JinaBertForSequenceClassification`` under ``auto_map`` (custom code from
``jinaai/jina-bert-implementation``), ``position_embedding_type: "alibi"``,
``feed_forward_type: "geglu"``, ``model.safetensors`` under the ``bert.`` names (no position
table; ``mlp.gated_layers`` / ``mlp.wo`` / ``mlp.layernorm``), and the lower-casing BERT
WordPiece tokenizer (``[CLS] A [SEP] B [SEP]``, type ids 0 then 1).

``reference_scores`` recomputes in float64 what ``sentence_transformers.CrossEncoder`` (the
card's call) gets from the model: ``tokenizer(query, doc, truncation=True)`` at the tokenizer's
``model_max_length``, then jina-bert-implementation's forward: word + token-type embeddings and
LayerNorm; per layer BERT attention whose scores get the ALiBi bias ``-slope_h * |i - j|``
(slopes of the ALiBi paper, with its rule for a head count that is not a power of two), the
BERT self-output (dense, residual, LayerNorm), then the gated MLP with its own residual and
post-LayerNorm: ``LN(x + wo(act(g[:, :I]) * g[:, I:]))`` with ``g = gated_layers(x)``, the
activation on the first half; BERT pooler (dense + tanh) and classifier. The raw score is the
logit, the card's score its sigmoid.
"""

from __future__ import annotations

import json
import math
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
from reranker.testing.tokenizers import write_bert_tokenizer

__all__ = ["NAME", "REPOS", "alibi_slopes", "make_checkpoint", "reference_scores"]

NAME = "jinabert"
REPOS = ("jinaai/jina-reranker-v1-turbo-en", "jinaai/jina-reranker-v1-tiny-en")
_IMPL = "jinaai/jina-bert-implementation"
_AUTO_MAP = {
    "AutoConfig": f"{_IMPL}--configuration_bert.JinaBertConfig",
    "AutoModel": f"{_IMPL}--modeling_bert.JinaBertModel",
    "AutoModelForMaskedLM": f"{_IMPL}--modeling_bert.JinaBertForMaskedLM",
    "AutoModelForSequenceClassification":
        f"{_IMPL}--modeling_bert.JinaBertForSequenceClassification",
}


def make_checkpoint(
    folder: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 48,
    num_heads: int = 6,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    feed_forward_type: str = "geglu",
    num_labels: int = 1,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a JinaBERT reranker folder; returns it.

    Six heads (not a power of two) exercise ALiBi's interleaved slopes, as the real twelve do.
    Real shape (``jina-reranker-v1-turbo-en``): ``num_layers=6, hidden_size=384, num_heads=12,
    intermediate_size=1536, max_position_embeddings=8192, vocab_size=30528``.
    """
    folder = Path(folder)
    vocab = write_bert_tokenizer(folder, vocab_size=vocab_size,
                                 model_max_length=max_position_embeddings)
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    config: dict[str, Any] = {
        "architectures": ["JinaBertForSequenceClassification"],
        "attention_probs_dropout_prob": 0.0,
        "attn_implementation": None,
        "auto_map": dict(_AUTO_MAP),
        "classifier_dropout": None,
        "emb_pooler": None,
        "feed_forward_type": feed_forward_type,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden_size,
        "id2label": labels,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "label2id": {v: int(k) for k, v in labels.items()},
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_position_embeddings,
        "model_max_length": max_position_embeddings,
        "model_type": "bert",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "pad_token_id": 0,
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "transformers_version": "4.36.2",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab,
    }
    tw = TinyWeights(seed)
    h, p = hidden_size, "bert"
    tw.table(f"{p}.embeddings.word_embeddings", vocab, h)
    tw.table(f"{p}.embeddings.token_type_embeddings", 2, h)
    tw.norm(f"{p}.embeddings.LayerNorm", h)
    for i in range(num_layers):
        layer = f"{p}.encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            tw.linear(f"{layer}.attention.self.{proj}", h, h, gain=2.0)
        tw.linear(f"{layer}.attention.output.dense", h, h)
        tw.norm(f"{layer}.attention.output.LayerNorm", h)
        tw.linear(f"{layer}.mlp.gated_layers", 2 * intermediate_size, h, bias=False)
        tw.linear(f"{layer}.mlp.wo", h, intermediate_size)
        tw.norm(f"{layer}.mlp.layernorm", h)
    tw.linear(f"{p}.pooler.dense", h, h, gain=2.0)
    tw.classifier("classifier", num_labels, h)
    save_checkpoint(folder, config, tw.w)
    return folder


def alibi_slopes(heads: int) -> list[float]:
    """The ALiBi slopes of ``heads`` heads (Press et al.; jina-bert-implementation's rule)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def _logits(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray,
            types: np.ndarray) -> np.ndarray:
    if config.get("position_embedding_type") != "alibi":
        raise NotImplementedError("JinaBERT without ALiBi")
    act = {"geglu": gelu, "reglu": lambda v: np.maximum(v, 0.0)}[config["feed_forward_type"]]
    p, eps, n = "bert", float(config["layer_norm_eps"]), len(ids)
    heads, inter = int(config["num_attention_heads"]), int(config["intermediate_size"])
    x = (w[f"{p}.embeddings.word_embeddings.weight"][ids]
         + w[f"{p}.embeddings.token_type_embeddings.weight"][types])
    x = layer_norm(x, w[f"{p}.embeddings.LayerNorm.weight"], w[f"{p}.embeddings.LayerNorm.bias"],
                   eps)
    # torch builds the slopes as a float32 tensor; the bias is -slope * |i - j|.
    slopes = np.asarray(alibi_slopes(heads), dtype=np.float32).astype(np.float64)
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float64)

    def alibi(h: int, _q: np.ndarray, _k: np.ndarray) -> np.ndarray:
        return -slopes[h] * distance

    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layer.{i}"
        a = f"{layer}.attention"
        context = attention(dense(w, x, f"{a}.self.query"), dense(w, x, f"{a}.self.key"),
                            dense(w, x, f"{a}.self.value"), heads, bias=alibi)
        x = layer_norm(dense(w, context, f"{a}.output.dense") + x,
                       w[f"{a}.output.LayerNorm.weight"], w[f"{a}.output.LayerNorm.bias"], eps)
        g = dense(w, x, f"{layer}.mlp.gated_layers")
        mlp = dense(w, act(g[:, :inter]) * g[:, inter:], f"{layer}.mlp.wo")
        x = layer_norm(mlp + x, w[f"{layer}.mlp.layernorm.weight"],
                       w[f"{layer}.mlp.layernorm.bias"], eps)
    pooled = np.tanh(dense(w, x[0], f"{p}.pooler.dense"))
    return dense(w, pooled, "classifier")


def reference_scores(folder: str | Path, query: str, documents: Sequence[str], *,
                     max_length: int | None = None) -> np.ndarray:
    """Raw logits in float64: ``[n]`` for one label, else ``[n, labels]``."""
    folder = Path(folder)
    config, w = load_checkpoint(folder)
    if max_length is None:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
        max_length = int(tok_config["model_max_length"])
    rows = encode_pairs(folder, query, documents, max_length)
    logits = np.stack([_logits(config, w, r["input_ids"], r["token_type_ids"]) for r in rows])
    return logits[:, 0] if logits.shape[1] == 1 else logits
