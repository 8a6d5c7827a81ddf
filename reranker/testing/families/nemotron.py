"""NVIDIA's ``llama-nemotron-rerank-1b-v2``: a bidirectional Llama with a sequence-classification
head, as its published ``llama_bidirectional_model.py`` computes it.

The pair is one text, ``question:{query} \\n \\n passage:{passage}``, tokenized with the Llama 3
tokenizer (``<|begin_of_text|>`` first) and cut at the end to ``max_length`` tokens. Every layer
attends in both directions (padding masked); the final-normed hidden states are averaged over
the real tokens (``pooling: "avg"``), projected by ``score.weight`` ``[1, hidden]`` and divided
by ``temperature``: that logit is the raw score (the model card's probability: its sigmoid).
Llama 3.2's RoPE uses the ``llama3`` frequency scaling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.decoder_family_reference import (
    Variant,
    layer_states,
    load_float64,
    load_tokenizer,
    rms_norm,
)
from reranker.testing.family_checkpoints import decoder_shapes, write_weights
from reranker.testing.family_tokenizers import LLAMA3_PRETOKENIZE_REGEX, write_bytelevel_tokenizer

__all__ = ["NAME", "encode", "make_checkpoint", "prompt_text", "reference_scores"]

NAME = "nemotron"
_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")
_WORDS = ("question", "passage")


def prompt_text(query: str, passage: str) -> str:
    return f"question:{query} \n \n passage:{passage}"


def make_checkpoint(
    folder: Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
    num_kv_heads: int = 2, head_dim: int = 16, seed: int = 0, vocab_size: int | None = None,
    intermediate_size: int | None = None, bfloat16: bool = False,
    original_max_position_embeddings: int = 64,
) -> Path:
    """A random-weight folder laid out like ``nvidia/llama-nemotron-rerank-1b-v2``.

    ``original_max_position_embeddings`` of the ``llama3`` RoPE scaling is small (8192 in the
    real model) so that the scaling changes the scores of short test prompts."""
    folder = Path(folder)
    size = write_bytelevel_tokenizer(
        folder, specials=_SPECIALS, extra_words=_WORDS, regex=LLAMA3_PRETOKENIZE_REGEX,
        bos="<|begin_of_text|>",
        tokenizer_config={"tokenizer_class": "PreTrainedTokenizerFast",
                          "model_max_length": 131072, "bos_token": "<|begin_of_text|>",
                          "eos_token": "<|end_of_text|>", "pad_token": "<|end_of_text|>",
                          "padding_side": "right", "clean_up_tokenization_spaces": True,
                          "model_input_names": ["input_ids", "attention_mask"]})
    vocab = vocab_size or size
    intermediate = intermediate_size or 4 * hidden_size
    shapes = decoder_shapes(vocab_size=vocab, hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                            intermediate_size=intermediate)
    shapes["score.weight"] = (1, hidden_size)
    write_weights(folder, shapes, seed, head_scale=8.0, bfloat16=bfloat16)
    config = {
        "architectures": ["LlamaBidirectionalForSequenceClassification"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "llama_bidirectional_model.LlamaBidirectionalConfig",
            "AutoModel": "llama_bidirectional_model.LlamaBidirectionalModel",
            "AutoModelForSequenceClassification":
                "llama_bidirectional_model.LlamaBidirectionalForSequenceClassification",
        },
        "bos_token_id": size - 3,
        "eos_token_id": size - 2,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "id2label": {"0": "LABEL_0"},
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "label2id": {"LABEL_0": 0},
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama_bidirec",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "pad_token_id": size - 2,
        "pooling": "avg",
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": original_max_position_embeddings,
                         "rope_type": "llama3"},
        "rope_theta": 500000.0,
        "temperature": 1.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.47.1",
        "use_cache": True,
        "vocab_size": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def encode(folder: Path, query: str, documents: list[str], *, max_length: int = 8192,
           ) -> list[list[int]]:
    """The model card's ``tokenizer(texts, truncation=True, max_length=...)``, per document."""

    tok = load_tokenizer(folder)
    texts = [prompt_text(query, doc) for doc in documents]
    return [list(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any) -> np.ndarray:
    """float64 logits of the mean-pooled bidirectional states (option: ``max_length``)."""
    config, w = load_float64(folder)
    variant = Variant(causal=False)
    eps = float(config["rms_norm_eps"])
    out = []
    for row in encode(folder, query, documents, **options):
        hidden = rms_norm(layer_states(config, w, np.asarray(row), variant)[-1],
                          w["model.norm.weight"], eps)
        pooled = hidden.mean(axis=0)
        out.append(float(w["score.weight"][0] @ pooled) / float(config.get("temperature", 1.0)))
    return np.asarray(out, dtype=np.float64)
