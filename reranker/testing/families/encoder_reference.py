"""An independent float64 numpy forward pass: the scores tests compare against.

It reads ``config.json`` and ``model.safetensors`` (never the ONNX file) and follows the Hugging
Face modelling code one example and one head at a time, so that it shares no code and no
vectorisation tricks with the ONNX graph builder. Tokenization goes through
``transformers.AutoTokenizer``, the reference tokenizer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["reference_encode", "reference_logits"]

_math_erf = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional; math.erf is exact but slow on big models
        return _math_erf(x).astype(np.float64)
    return np.asarray(erf(x), dtype=np.float64)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _load(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        tensors.update(load_file(str(folder / shard)))
    return config, {name: t.astype(np.float64) for name, t in tensors.items()}


def _encode_one(
    config: dict[str, Any],
    w: dict[str, np.ndarray],
    ids: np.ndarray,
    mask: np.ndarray,
    types: np.ndarray,
) -> np.ndarray:
    """Logits of one example; ``ids``, ``mask`` and ``types`` are 1-D."""
    model_type = config["model_type"]
    is_bert = model_type == "bert"
    p = {"bert": "bert", "electra": "electra"}.get(model_type, "roberta")
    eps = float(config["layer_norm_eps"])
    heads = int(config["num_attention_heads"])
    if p != "roberta":
        positions = np.arange(len(ids))
    else:
        pad = int(config["pad_token_id"])
        not_pad = (ids != pad).astype(np.int64)
        positions = np.cumsum(not_pad) * not_pad + pad
    x = (
        w[f"{p}.embeddings.word_embeddings.weight"][ids]
        + w[f"{p}.embeddings.position_embeddings.weight"][positions]
        + w[f"{p}.embeddings.token_type_embeddings.weight"][types]
    )
    x = _layer_norm(
        x, w[f"{p}.embeddings.LayerNorm.weight"], w[f"{p}.embeddings.LayerNorm.bias"], eps
    )

    def dense(v: np.ndarray, name: str) -> np.ndarray:
        return v @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    if f"{p}.embeddings_project.weight" in w:  # ELECTRA: embedding width -> hidden width
        x = dense(x, f"{p}.embeddings_project")

    keep = mask.astype(bool)
    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layer.{i}"
        q = dense(x, f"{layer}.attention.self.query")
        k = dense(x, f"{layer}.attention.self.key")
        v = dense(x, f"{layer}.attention.self.value")
        head_dim = x.shape[1] // heads
        context = np.zeros_like(x)
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(head_dim)
            scores[:, ~keep] = -np.inf  # masked keys get exactly zero weight
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            context[:, cols] = probs @ v[:, cols]
        attn = dense(context, f"{layer}.attention.output.dense") + x
        x = _layer_norm(
            attn,
            w[f"{layer}.attention.output.LayerNorm.weight"],
            w[f"{layer}.attention.output.LayerNorm.bias"],
            eps,
        )
        ffn = dense(_gelu(dense(x, f"{layer}.intermediate.dense")), f"{layer}.output.dense") + x
        x = _layer_norm(
            ffn, w[f"{layer}.output.LayerNorm.weight"], w[f"{layer}.output.LayerNorm.bias"], eps
        )
    first = x[0]
    if is_bert:
        return dense(np.tanh(dense(first, "bert.pooler.dense")), "classifier")
    if p == "electra":  # ElectraClassificationHead: GELU where RoBERTa has tanh
        return dense(_gelu(dense(first, "classifier.dense")), "classifier.out_proj")
    return dense(np.tanh(dense(first, "classifier.dense")), "classifier.out_proj")


def _modernbert_one(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray,
                    mask: np.ndarray) -> np.ndarray:
    """Logits of one ModernBERT example, over its real (right-padded) tokens only."""
    keep = mask.astype(bool)
    if not keep[: keep.sum()].all():
        raise ValueError("the reference expects right padding")
    ids = ids[keep]
    n, eps = len(ids), float(config["norm_eps"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config["hidden_size"]) // heads

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        if f"{name}.weight" not in w:
            return x
        bias = w.get(f"{name}.bias", np.zeros(1))
        return _layer_norm(x, w[f"{name}.weight"], bias, eps)

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[f"{name}.weight"].T + w.get(f"{name}.bias", np.zeros(1))

    def rope(x: np.ndarray, theta: float) -> np.ndarray:
        inv = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
        angles = np.arange(n)[:, None] * inv[None, :]
        cos, sin = np.cos(np.concatenate([angles] * 2, 1)), np.sin(np.concatenate([angles] * 2, 1))
        half = head_dim // 2
        return x * cos + np.concatenate([-x[:, half:], x[:, :half]], 1) * sin

    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    x = norm(w["model.embeddings.tok_embeddings.weight"][ids], "model.embeddings.norm")
    every = int(config.get("global_attn_every_n_layers", 3))
    for i in range(int(config["num_hidden_layers"])):
        layer = f"model.layers.{i}"
        is_global = i % every == 0
        theta = float(config["global_rope_theta" if is_global else "local_rope_theta"])
        qkv = dense(norm(x, f"{layer}.attn_norm"), f"{layer}.attn.Wqkv").reshape(n, 3, heads, -1)
        context = np.zeros_like(x)
        for h in range(heads):
            q, k = rope(qkv[:, 0, h], theta), rope(qkv[:, 1, h], theta)
            scores = q @ k.T / math.sqrt(head_dim)
            if not is_global:
                scores[distance > int(config["local_attention"]) // 2] = -np.inf
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            context[:, h * head_dim : (h + 1) * head_dim] = probs @ qkv[:, 2, h]
        x = x + dense(context, f"{layer}.attn.Wo")
        value, gate = np.split(dense(norm(x, f"{layer}.mlp_norm"), f"{layer}.mlp.Wi"), 2, axis=1)
        x = x + dense(_gelu(value) * gate, f"{layer}.mlp.Wo")
    x = norm(x, "model.final_norm")
    pooled = x[0] if config.get("classifier_pooling", "cls") == "cls" else x.mean(axis=0)
    head = norm(_gelu(dense(pooled, "head.dense")), "head.norm")
    return dense(head, "classifier")


def reference_logits(
    folder: str | Path,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    token_type_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Logits ``[batch, num_labels]`` in float64 for a padded batch of token ids.

    Example::

        enc = reference_encode(folder, "query", ["doc a", "doc b"], max_length=128)
        logits = reference_logits(folder, enc["input_ids"], enc["attention_mask"],
                                  enc.get("token_type_ids"))
    """
    config, weights = _load(Path(folder))
    ids = np.asarray(input_ids, dtype=np.int64)
    mask = np.asarray(attention_mask, dtype=np.int64)
    types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, np.int64)
    if config["model_type"] == "modernbert":
        rows = [_modernbert_one(config, weights, ids[b], mask[b]) for b in range(len(ids))]
    else:
        rows = [_encode_one(config, weights, ids[b], mask[b], types[b]) for b in range(len(ids))]
    return np.stack(rows).astype(np.float64)


def reference_encode(
    folder: str | Path,
    query: str,
    doc: str | list[str],
    max_length: int,
    truncation: str = "only_second",
) -> dict[str, np.ndarray]:
    """Tokenize ``(query, doc)`` pairs with ``transformers.AutoTokenizer``, padded to the longest.

    Returns int64 arrays ``input_ids``, ``attention_mask`` and, for BERT, ``token_type_ids``,
    each ``[n_docs, seq]``. The tokenizer is always called with lists: called with two strings,
    transformers encodes an empty document as a single sequence (``[CLS] q [SEP]``) instead of
    a pair (``[CLS] q [SEP] [SEP]``), unlike ``tokenizers`` and unlike its own batch form.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    docs = [doc] if isinstance(doc, str) else list(doc)
    enc = tokenizer(
        [query] * len(docs),
        docs,
        max_length=max_length,
        truncation=truncation,
        padding="longest",
        return_tensors="np",
    )
    return {name: np.asarray(value, dtype=np.int64) for name, value in enc.items()}
