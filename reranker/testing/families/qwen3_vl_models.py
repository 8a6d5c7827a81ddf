"""Tiny Qwen3-VL-Reranker stand-ins, written offline: the Qwen3 test tokenizer plus the vision
tokens, a real-layout ``config.json`` and ``preprocessor_config.json``, and random weights.

A folder is laid out like ``Qwen/Qwen3-VL-Reranker-2B``: ``config.json``
(``Qwen3VLForConditionalGeneration`` with ``text_config`` and ``vision_config``),
``preprocessor_config.json`` (patch 16, temporal patch 2, merge 2, mean/std 0.5),
``model.safetensors`` under transformers' names (``model.visual.*``,
``model.language_model.*``, tied ``lm_head``), ``tokenizer.json`` with
``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>`` as special
tokens. Patch size and merge size are the real ones, so the real preprocessing runs; widths,
depths and the position table are tiny.

Example::

    folder = build_qwen3_vl_reranker(tmp_path / "qwen3-vl")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families.qwen3_models import write_qwen3_tokenizer

__all__ = ["VISION_TOKENS", "build_qwen3_vl_reranker", "qwen3_vl_shapes"]

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _write_tokenizer(folder: Path) -> dict[str, int]:
    from tokenizers import AddedToken, Tokenizer

    write_qwen3_tokenizer(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in VISION_TOKENS])
    tok.save(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    for t in VISION_TOKENS:
        config["added_tokens_decoder"][str(tok.token_to_id(t))] = {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}
    config["model_max_length"] = 262144
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    ids = {t: tok.token_to_id(t) for t in (*VISION_TOKENS, "<|endoftext|>", "<|im_end|>")}
    out = {t: int(i) for t, i in ids.items() if i is not None}
    return out | {"size": int(tok.get_vocab_size(with_added_tokens=True))}


def qwen3_vl_shapes(*, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int,
                    num_kv_heads: int, head_dim: int, intermediate_size: int,
                    vision_hidden: int, vision_heads: int, vision_intermediate: int,
                    vision_depth: int, deepstack: tuple[int, ...], position_table: int,
                    patch_size: int = 16, temporal_patch_size: int = 2, merge_size: int = 2,
                    tie_word_embeddings: bool = True) -> dict[str, tuple[int, ...]]:
    """``Qwen3VLForConditionalGeneration`` tensor names and shapes (transformers >= 4.57)."""
    v, t = "model.visual", "model.language_model"
    wide = vision_hidden * merge_size**2
    shapes: dict[str, tuple[int, ...]] = {
        f"{v}.patch_embed.proj.weight": (vision_hidden, 3, temporal_patch_size, patch_size,
                                         patch_size),
        f"{v}.patch_embed.proj.bias": (vision_hidden,),
        f"{v}.pos_embed.weight": (position_table, vision_hidden),
    }
    for i in range(vision_depth):
        b = f"{v}.blocks.{i}"
        for norm in ("norm1", "norm2"):
            shapes[f"{b}.{norm}.weight"] = shapes[f"{b}.{norm}.bias"] = (vision_hidden,)
        shapes[f"{b}.attn.qkv.weight"] = (3 * vision_hidden, vision_hidden)
        shapes[f"{b}.attn.qkv.bias"] = (3 * vision_hidden,)
        shapes[f"{b}.attn.proj.weight"] = (vision_hidden, vision_hidden)
        shapes[f"{b}.attn.proj.bias"] = (vision_hidden,)
        shapes[f"{b}.mlp.linear_fc1.weight"] = (vision_intermediate, vision_hidden)
        shapes[f"{b}.mlp.linear_fc1.bias"] = (vision_intermediate,)
        shapes[f"{b}.mlp.linear_fc2.weight"] = (vision_hidden, vision_intermediate)
        shapes[f"{b}.mlp.linear_fc2.bias"] = (vision_hidden,)
    mergers = [f"{v}.merger"] + [f"{v}.deepstack_merger_list.{j}" for j in range(len(deepstack))]
    for k, m in enumerate(mergers):
        width = vision_hidden if k == 0 else wide
        shapes[f"{m}.norm.weight"] = shapes[f"{m}.norm.bias"] = (width,)
        shapes[f"{m}.linear_fc1.weight"] = (wide, wide)
        shapes[f"{m}.linear_fc1.bias"] = (wide,)
        shapes[f"{m}.linear_fc2.weight"] = (hidden_size, wide)
        shapes[f"{m}.linear_fc2.bias"] = (hidden_size,)
    shapes[f"{t}.embed_tokens.weight"] = (vocab_size, hidden_size)
    for i in range(num_layers):
        p = f"{t}.layers.{i}"
        shapes[f"{p}.input_layernorm.weight"] = (hidden_size,)
        shapes[f"{p}.self_attn.q_proj.weight"] = (num_heads * head_dim, hidden_size)
        shapes[f"{p}.self_attn.k_proj.weight"] = (num_kv_heads * head_dim, hidden_size)
        shapes[f"{p}.self_attn.v_proj.weight"] = (num_kv_heads * head_dim, hidden_size)
        shapes[f"{p}.self_attn.o_proj.weight"] = (hidden_size, num_heads * head_dim)
        shapes[f"{p}.self_attn.q_norm.weight"] = (head_dim,)
        shapes[f"{p}.self_attn.k_norm.weight"] = (head_dim,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (hidden_size,)
        shapes[f"{p}.mlp.gate_proj.weight"] = (intermediate_size, hidden_size)
        shapes[f"{p}.mlp.up_proj.weight"] = (intermediate_size, hidden_size)
        shapes[f"{p}.mlp.down_proj.weight"] = (hidden_size, intermediate_size)
    shapes[f"{t}.norm.weight"] = (hidden_size,)
    if not tie_word_embeddings:
        shapes["lm_head.weight"] = (vocab_size, hidden_size)
    return shapes


def _draw(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 1:
        if name.endswith(".bias"):
            return (0.02 * rng.standard_normal(shape)).astype(np.float32)
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith("embed_tokens.weight"):
        return (0.05 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith("pos_embed.weight"):
        return (0.5 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def build_qwen3_vl_reranker(
    folder: str | Path, *, num_layers: int = 3, hidden_size: int = 64, num_heads: int = 4,
    num_kv_heads: int = 2, head_dim: int = 32, mrope_section: tuple[int, int, int] = (6, 5, 5),
    vision_hidden: int = 32, vision_heads: int = 2, vision_depth: int = 3,
    deepstack: tuple[int, ...] = (0, 1), position_table: int = 64, seed: int = 0,
    rope_theta: float = 5_000_000.0, tie_word_embeddings: bool = True,
) -> Path:
    """Write a random-weight Qwen3-VL-Reranker folder; returns ``folder``."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = _write_tokenizer(folder)
    vocab_size = -(-ids["size"] // 64) * 64
    intermediate = 3 * hidden_size
    shapes = qwen3_vl_shapes(
        vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
        num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
        intermediate_size=intermediate, vision_hidden=vision_hidden, vision_heads=vision_heads,
        vision_intermediate=4 * vision_hidden, vision_depth=vision_depth, deepstack=deepstack,
        position_table=position_table, tie_word_embeddings=tie_word_embeddings)
    rng = np.random.default_rng(seed)
    save_file({n: _draw(n, s, rng) for n, s in shapes.items()}, str(folder / "model.safetensors"))
    text_config: dict[str, Any] = {
        "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "head_dim": head_dim, "hidden_act": "silu", "hidden_size": hidden_size,
        "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": 262144, "model_type": "qwen3_vl_text",
        "num_attention_heads": num_heads, "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads, "rms_norm_eps": 1e-6,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": list(mrope_section),
                         "rope_type": "default"},
        "rope_theta": rope_theta, "tie_word_embeddings": tie_word_embeddings,
        "use_cache": True, "vocab_size": vocab_size, "dtype": "float32",
    }
    vision_config: dict[str, Any] = {
        "deepstack_visual_indexes": list(deepstack), "depth": vision_depth,
        "hidden_act": "gelu_pytorch_tanh", "hidden_size": vision_hidden, "in_channels": 3,
        "initializer_range": 0.02, "intermediate_size": 4 * vision_hidden,
        "model_type": "qwen3_vl", "num_heads": vision_heads,
        "num_position_embeddings": position_table, "out_hidden_size": hidden_size,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
    }
    config = {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "model_type": "qwen3_vl", "text_config": text_config,
        "tie_word_embeddings": tie_word_embeddings, "transformers_version": "4.57.0",
        "vision_config": vision_config,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    preprocessor = {
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "Qwen2VLImageProcessorFast", "merge_size": 2,
        "patch_size": 16, "temporal_patch_size": 2, "processor_class": "Qwen3VLProcessor",
        "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    return folder
