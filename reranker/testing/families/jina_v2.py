"""Test kit for ``jinaai/jina-reranker-v2-base-multilingual`` (XLM-R, flash implementation).

How it differs from a stock XLM-R cross-encoder, read from
``jinaai/xlm-roberta-flash-implementation``: the config class is ``XLMRobertaFlashConfig``
(``auto_map``; model type still ``xlm-roberta``, ``use_flash_attn``, LoRA fields unused by the
reranker), and the state dict is laid out like
flash-attn's BERT (its ``remap_state_dict``): ``roberta.emb_ln`` for the embedding LayerNorm,
``roberta.encoder.layers.{i}`` with a packed ``mixer.Wqkv`` ([q; k; v] rows), ``mixer.out_proj``,
``norm1``, ``mlp.fc1``, ``mlp.fc2``, ``norm2``. The math is XLM-R's: absolute positions
counted from ``pad_token_id + 1`` over non-pad tokens (``position_embedding_type: "absolute"``;
rotary is the embeddings-v3 variant), one token type, post-norm blocks, GELU, and the RoBERTa
classification head (dense, tanh, out_proj on ``<s>``). ``max_position_embeddings`` is 1026: a
1024-token window, the ``max_length`` of the card's ``compute_score``.

``reference_scores`` recomputes ``compute_score``'s logits in float64 (``truncation=True`` at
the tokenizer's ``model_max_length``); its returned score is their sigmoid.
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

__all__ = ["NAME", "REPOS", "make_checkpoint", "reference_scores", "to_transformers_names"]

NAME = "jina_v2"
REPOS = ("jinaai/jina-reranker-v2-base-multilingual",)
_IMPL = "jinaai/xlm-roberta-flash-implementation"
_AUTO_MAP = {
    "AutoConfig": f"{_IMPL}--configuration_xlm_roberta.XLMRobertaFlashConfig",
    "AutoModel": f"{_IMPL}--modeling_xlm_roberta.XLMRobertaModel",
    "AutoModelForSequenceClassification":
        f"{_IMPL}--modeling_xlm_roberta.XLMRobertaForSequenceClassification",
}


def make_checkpoint(
    folder: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 32,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_length: int = 128,
    num_labels: int = 1,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a jina-reranker-v2 folder (window ``max_length``; the table has two more rows).

    Real shape: ``num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
    max_length=1024, vocab_size=250002``.
    """
    folder = Path(folder)
    vocab = write_xlmr_tokenizer(folder, vocab_size=vocab_size, model_max_length=max_length)
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    config: dict[str, Any] = {
        "architectures": ["XLMRobertaForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "auto_map": dict(_AUTO_MAP),
        "bos_token_id": 0,
        "classifier_dropout": None,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden_size,
        "id2label": labels,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "label2id": {v: int(k) for k, v in labels.items()},
        "layer_norm_eps": 1e-05,
        "load_trained_adapters": False,
        "lora_adaptations": None,
        "lora_alpha": 1,
        "lora_dropout_p": 0.0,
        "lora_main_params_trainable": False,
        "lora_rank": 4,
        "matryoshka_dimensions": None,
        "max_position_embeddings": max_length + 2,
        "model_type": "xlm-roberta",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.40.2",
        "truncate_dim": None,
        "type_vocab_size": 1,
        "use_cache": False,
        "use_flash_attn": True,
        "vocab_size": vocab,
    }
    tw = TinyWeights(seed)
    h, p = hidden_size, "roberta"
    tw.table(f"{p}.embeddings.word_embeddings", vocab, h)
    tw.table(f"{p}.embeddings.position_embeddings", max_length + 2, h)
    tw.table(f"{p}.embeddings.token_type_embeddings", 1, h)
    tw.norm(f"{p}.emb_ln", h)
    for i in range(num_layers):
        layer = f"{p}.encoder.layers.{i}"
        tw.linear(f"{layer}.mixer.Wqkv", 3 * h, h, gain=2.0)
        tw.linear(f"{layer}.mixer.out_proj", h, h)
        tw.norm(f"{layer}.norm1", h)
        tw.linear(f"{layer}.mlp.fc1", intermediate_size, h)
        tw.linear(f"{layer}.mlp.fc2", h, intermediate_size)
        tw.norm(f"{layer}.norm2", h)
    tw.linear("classifier.dense", h, h, gain=2.0)
    tw.classifier("classifier.out_proj", num_labels, h)
    save_checkpoint(folder, config, tw.w)
    return folder


def to_transformers_names(weights: dict[str, np.ndarray], num_layers: int) -> dict[str, np.ndarray]:
    """The same weights under stock ``XLMRobertaForSequenceClassification`` names (flash-attn's
    ``inv_remap_state_dict``), for the optional check against transformers."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        name = name.replace("roberta.emb_ln.", "roberta.embeddings.LayerNorm.")
        out[name] = value
    for i in range(num_layers):
        src, dst = f"roberta.encoder.layers.{i}", f"roberta.encoder.layer.{i}"
        for kind in ("weight", "bias"):
            q, k, v = np.split(out.pop(f"{src}.mixer.Wqkv.{kind}"), 3, axis=0)
            out[f"{dst}.attention.self.query.{kind}"] = q
            out[f"{dst}.attention.self.key.{kind}"] = k
            out[f"{dst}.attention.self.value.{kind}"] = v
            for old, new in (("mixer.out_proj", "attention.output.dense"),
                             ("norm1", "attention.output.LayerNorm"),
                             ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"),
                             ("norm2", "output.LayerNorm")):
                out[f"{dst}.{new}.{kind}"] = out.pop(f"{src}.{old}.{kind}")
    return out


def _logits(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise NotImplementedError("rotary XLM-R flash (jina-embeddings-v3) is not a reranker")
    if config.get("hidden_act", "gelu") != "gelu":
        raise NotImplementedError(f"hidden_act {config['hidden_act']!r}")
    p, eps = "roberta", float(config["layer_norm_eps"])
    heads, h = int(config["num_attention_heads"]), int(config["hidden_size"])
    pad = int(config["pad_token_id"])
    not_pad = (ids != pad).astype(np.int64)
    positions = np.cumsum(not_pad) * not_pad + pad
    x = (w[f"{p}.embeddings.word_embeddings.weight"][ids]
         + w[f"{p}.embeddings.position_embeddings.weight"][positions]
         + w[f"{p}.embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w[f"{p}.emb_ln.weight"], w[f"{p}.emb_ln.bias"], eps)
    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layers.{i}"
        qkv = dense(w, x, f"{layer}.mixer.Wqkv")
        context = attention(qkv[:, :h], qkv[:, h:2 * h], qkv[:, 2 * h:], heads)
        x = layer_norm(x + dense(w, context, f"{layer}.mixer.out_proj"),
                       w[f"{layer}.norm1.weight"], w[f"{layer}.norm1.bias"], eps)
        mlp = dense(w, gelu(dense(w, x, f"{layer}.mlp.fc1")), f"{layer}.mlp.fc2")
        x = layer_norm(x + mlp, w[f"{layer}.norm2.weight"], w[f"{layer}.norm2.bias"], eps)
    return dense(w, np.tanh(dense(w, x[0], "classifier.dense")), "classifier.out_proj")


def reference_scores(folder: str | Path, query: str, documents: Sequence[str], *,
                     max_length: int | None = None) -> np.ndarray:
    """Raw logits in float64: ``[n]`` for one label, else ``[n, labels]``."""
    folder = Path(folder)
    config, w = load_checkpoint(folder)
    if max_length is None:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
        max_length = int(tok_config["model_max_length"])
    rows = encode_pairs(folder, query, documents, max_length)
    logits = np.stack([_logits(config, w, r["input_ids"]) for r in rows])
    return logits[:, 0] if logits.shape[1] == 1 else logits
