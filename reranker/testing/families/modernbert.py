"""A tiny ModernBERT cross-encoder folder (``ModernBertForSequenceClassification``), Hub-style.

What ``Alibaba-NLP/gte-reranker-modernbert-base`` holds, at toy sizes: ``config.json`` (with the
Hub's keys: ``global_rope_theta``, ``local_attention``...), ``model.safetensors`` under the
transformers names, and a tokenizer. The tokenizer is the test kit's BERT WordPiece one: it has
ModernBERT's pair template (``[CLS] q [SEP] d [SEP]``), and the graph ignores token types.
Four layers with ``global_attn_every_n_layers=3`` give global, local, local, global attention.

Example::

    folder = build_modernbert(tmp_path / "modernbert", pooling="mean", num_labels=2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.tokenizers import write_tokenizer

__all__ = [
    "NAME",
    "build_modernbert",
    "make_checkpoint",
    "modernbert_config",
    "modernbert_weights",
    "reference_scores",
]

NAME = "modernbert"


def modernbert_config(
    *,
    vocab_size: int,
    num_labels: int = 1,
    num_layers: int = 4,
    hidden_size: int = 32,
    num_heads: int = 4,
    intermediate_size: int = 48,
    max_position_embeddings: int = 128,
    local_attention: int = 16,
    pooling: str = "cls",
    biases: bool = False,
) -> dict[str, object]:
    """``config.json`` of a ModernBERT classifier, in the Hub's (transformers 4.x) keys."""
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    return {
        "architectures": ["ModernBertForSequenceClassification"],
        "model_type": "modernbert",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size,
        "hidden_activation": "gelu",
        "max_position_embeddings": max_position_embeddings,
        "norm_eps": 1e-5,
        "norm_bias": biases,
        "attention_bias": biases,
        "mlp_bias": biases,
        "classifier_bias": biases,
        "classifier_activation": "gelu",
        "classifier_pooling": pooling,
        "global_attn_every_n_layers": 3,
        "local_attention": local_attention,
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "cls_token_id": 2,
        "sep_token_id": 3,
        "id2label": labels,
        "label2id": {name: int(i) for i, name in labels.items()},
        "torch_dtype": "float32",
    }


def modernbert_weights(config: dict[str, object], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float32 weights under the transformers names."""
    rng = np.random.RandomState(seed)
    h, inter = int(config["hidden_size"]), int(config["intermediate_size"])  # type: ignore[call-overload]
    biases = bool(config["norm_bias"])
    w: dict[str, np.ndarray] = {}

    def linear(name: str, out_dim: int, in_dim: int, gain: float = 1.0) -> None:
        w[f"{name}.weight"] = rng.normal(0.0, gain / np.sqrt(in_dim), (out_dim, in_dim))
        if biases:
            w[f"{name}.bias"] = rng.normal(0.0, 0.05, (out_dim,))

    def norm(name: str) -> None:
        w[f"{name}.weight"] = 1.0 + rng.normal(0.0, 0.1, (h,))
        if biases:
            w[f"{name}.bias"] = rng.normal(0.0, 0.05, (h,))

    vocab = int(config["vocab_size"])  # type: ignore[call-overload]
    w["model.embeddings.tok_embeddings.weight"] = rng.normal(0.0, 0.2, (vocab, h))
    norm("model.embeddings.norm")
    for i in range(int(config["num_hidden_layers"])):  # type: ignore[call-overload]
        layer = f"model.layers.{i}"
        if i:
            norm(f"{layer}.attn_norm")
        linear(f"{layer}.attn.Wqkv", 3 * h, h, gain=2.0)  # peaked attention
        linear(f"{layer}.attn.Wo", h, h)
        norm(f"{layer}.mlp_norm")
        linear(f"{layer}.mlp.Wi", 2 * inter, h)
        linear(f"{layer}.mlp.Wo", h, inter)
    norm("model.final_norm")
    linear("head.dense", h, h, gain=2.0)
    norm("head.norm")
    labels = len(config["id2label"])  # type: ignore[arg-type]
    w["classifier.weight"] = rng.normal(0.0, 2.0 / np.sqrt(h), (labels, h))
    # The classifier always has a bias; a clearly non-zero one catches a runtime that drops it.
    w["classifier.bias"] = 0.5 - 0.4 * np.arange(labels) + rng.normal(0.0, 0.1, (labels,))
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in w.items()}


def build_modernbert(
    folder: str | Path,
    *,
    num_labels: int = 1,
    pooling: str = "cls",
    biases: bool = False,
    max_position_embeddings: int = 128,
    local_attention: int = 16,
    seed: int = 0,
) -> Path:
    """Write the folder (config, tokenizer, safetensors; no ONNX file); returns it."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    vocab = write_tokenizer(folder, "bert", model_max_length=max_position_embeddings)
    config = modernbert_config(
        vocab_size=vocab, num_labels=num_labels, pooling=pooling, biases=biases,
        max_position_embeddings=max_position_embeddings, local_attention=local_attention,
    )  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(modernbert_weights(config, seed), str(folder / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    return folder


def make_checkpoint(folder: Path, **shape: Any) -> Path:
    """The family kit's checkpoint: :func:`build_modernbert` with ``shape``'s keywords."""
    return build_modernbert(folder, **shape)


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any
                     ) -> np.ndarray:
    """Raw scores in float64 (``[n, labels]`` for several labels); ``options``:
    ``max_length``."""
    from reranker.testing.families._encoder_kit import scores

    return scores(Path(folder), query, documents, **options)
