"""BAAI's ``bge-reranker-v2-minicpm-layerwise``, scored as FlagEmbedding's
``LayerWiseFlagLLMReranker``.

The prompt is ``FlagLLMReranker``'s (see :mod:`reranker.testing.families.bge_gemma`) with
``bos`` always first. The model is MiniCPM (Llama with embeddings times ``scale_emb`` and
residual branches times ``scale_depth / sqrt(num_hidden_layers)``) whose heads are one
``[1, hidden]`` row per layer from ``start_layer`` to ``num_hidden_layers``
(``lm_head.{i}.linear_head.weight``; ``head_type: "simple"``, ``head_multi: true``). With cutoff
layer ``k`` the raw score is ``lm_head[k - start_layer] . norm(h_k)`` at the last position,
``h_k`` the hidden state after ``k`` layers and ``norm`` the model's final RMSNorm;
FlagEmbedding's default (``cutoff_layers=None``) is ``k = num_hidden_layers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.decoder_family_reference import Variant, layer_states, load_float64, rms_norm
from reranker.testing.families.bge_gemma import PROMPT_WORDS, flag_llm_encode, library_options
from reranker.testing.family_checkpoints import decoder_shapes, write_weights
from reranker.testing.family_tokenizers import write_sentencepiece_tokenizer

__all__ = ["NAME", "make_checkpoint", "reference_scores"]

NAME = "minicpm_layerwise"


def make_checkpoint(
    folder: Path, *, hidden_size: int = 64, num_layers: int = 4, num_heads: int = 4,
    start_layer: int = 2, seed: int = 0, vocab_size: int | None = None,
    intermediate_size: int | None = None, bfloat16: bool = False, scale_emb: float = 12.0,
    scale_depth: float = 1.4,
) -> Path:
    """A random-weight folder laid out like ``BAAI/bge-reranker-v2-minicpm-layerwise``."""
    folder = Path(folder)
    size = write_sentencepiece_tokenizer(
        folder, style="llama", specials=("<unk>", "<s>", "</s>"), bos="<s>",
        extra_words=PROMPT_WORDS,
        tokenizer_config={"tokenizer_class": "LlamaTokenizer", "model_max_length": 1000000000,
                          "add_bos_token": True, "add_eos_token": False, "legacy": False,
                          "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>",
                          "unk_token": "<unk>", "padding_side": "left",
                          "clean_up_tokenization_spaces": False})
    vocab = vocab_size or size + 1  # MiniCPM's table is not a round size (122753)
    head_dim = hidden_size // num_heads
    intermediate = intermediate_size or 5 * hidden_size // 2
    shapes = decoder_shapes(vocab_size=vocab, hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=num_heads, num_kv_heads=num_heads, head_dim=head_dim,
                            intermediate_size=intermediate)
    for i in range(num_layers - start_layer + 1):
        shapes[f"lm_head.{i}.linear_head.weight"] = (1, hidden_size)
    write_weights(folder, shapes, seed, head_scale=4.0, bfloat16=bfloat16)
    config = {
        "_name_or_path": "openbmb/MiniCPM-2B-dpo-bf16",
        "architectures": ["LayerWiseMiniCPMForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
            "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
            "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
        },
        "bos_token_id": 1,
        "dim_model_base": 256,
        "eos_token_id": 2,
        "head_multi": True,
        "head_type": "simple",
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.1,
        "intermediate_size": intermediate,
        "max_position_embeddings": 2048,
        "model_type": "minicpm",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "scale_depth": scale_depth,
        "scale_emb": scale_emb,
        "start_layer": start_layer,
        "torch_dtype": "float32",
        "transformers_version": "4.38.1",
        "use_cache": False,
        "vocab_size": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any) -> np.ndarray:
    """float64 raw scores of one cutoff layer (options: ``cutoff_layer``, default
    ``num_hidden_layers``; ``max_length``, tokens per prompt as the library counts them;
    ``prompt``)."""
    options = library_options(folder, dict(options))
    config, w = load_float64(folder)
    layers = int(config["num_hidden_layers"])
    cutoff = int(options.pop("cutoff_layer", None) or layers)
    start = int(config["start_layer"])
    if not start <= cutoff <= layers:
        raise ValueError(f"cutoff layer {cutoff} outside [{start}, {layers}]")
    variant = Variant(embed_scale=float(config["scale_emb"]),
                      residual_scale=float(config["scale_depth"]) / np.sqrt(layers))
    head = w[f"lm_head.{cutoff - start}.linear_head.weight"][0]
    out = []
    for row in flag_llm_encode(folder, query, documents, always_bos=True, **options):
        states = layer_states(config, w, np.asarray(row), variant, layers=cutoff)
        last = rms_norm(states[cutoff][-1], w["model.norm.weight"], float(config["rms_norm_eps"]))
        out.append(float(head @ last))
    return np.asarray(out, dtype=np.float64)
