"""ZeroEntropy's ``zerank-*`` rerankers: a ``Qwen3ForCausalLM`` scored by one ``Yes`` logit.

As the repositories' ``modeling_zeranker.py`` formats a pair: the chat template over a system
message (the stripped query) and a user message (the stripped document) with the generation
prompt, tokenized whole; the raw score is the logit of ``Yes`` at the last token and the
documented probability ``sigmoid(logit / 5)``. The authors' code does not truncate; past the
window this reference (and the library) cut the document's end, then the query's.
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
from reranker.testing.family_tokenizers import write_bytelevel_tokenizer

__all__ = ["CHAT_TEMPLATE", "NAME", "TEMPERATURE", "encode", "make_checkpoint",
           "reference_scores"]

NAME = "zerank"
NEEDS_RULE = True
"""A ``Qwen3ForCausalLM`` is Qwen3-Reranker's unless told: ``custom`` needs ``rule``."""
TEMPERATURE = 5.0
"""The authors' probability is ``sigmoid(yes_logit / TEMPERATURE)``."""

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)
"""The part of Qwen3's chat template a system + user conversation renders."""

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_THINK = ("<think>", "</think>")
_WORDS = ("Yes", "No", "yes", "no", "system", "user", "assistant")


def make_checkpoint(
    folder: Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
    num_kv_heads: int = 2, head_dim: int = 32, seed: int = 0, vocab_size: int | None = None,
    intermediate_size: int | None = None, bfloat16: bool = False,
) -> Path:
    """A random-weight folder laid out like ``zeroentropy/zerank-1-small`` (Qwen3-1.7B's config
    keys; ``head_dim * heads = 2 * hidden`` as in Qwen3)."""
    folder = Path(folder)
    size = write_bytelevel_tokenizer(
        folder, specials=_SPECIALS, plain_added=_THINK, extra_words=_WORDS,
        tokenizer_config={"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 131072,
                          "bos_token": None, "eos_token": "<|im_end|>",
                          "pad_token": "<|endoftext|>", "unk_token": None,
                          "add_prefix_space": False, "errors": "replace",
                          "split_special_tokens": False, "clean_up_tokenization_spaces": False,
                          "chat_template": CHAT_TEMPLATE})
    vocab = vocab_size or -(-size // 64) * 64
    intermediate = intermediate_size or 3 * hidden_size
    shapes = decoder_shapes(vocab_size=vocab, hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                            intermediate_size=intermediate, qk_norm=True)
    write_weights(folder, shapes, seed, bfloat16=bfloat16)
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": size - 5,
        "eos_token_id": size - 3,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": 40960,
        "max_window_layers": num_layers,
        "model_type": "qwen3",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def encode(folder: Path, query: str, documents: list[str], *, max_length: int = 40960,
           ) -> list[list[int]]:
    """``format_pointwise_datapoints`` with ``transformers`` (the chat template applied, the
    text tokenized whole), then the window's cut: document end first, then query end."""

    tok = load_tokenizer(folder)
    rows = []
    for doc in documents:
        messages = [{"role": "system", "content": query.strip()},
                    {"role": "user", "content": doc.strip()}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = list(tok(text)["input_ids"])
        over = len(ids) - max_length
        if over > 0:
            # The template splits at special tokens, so the parts tokenize as the whole text.
            q = list(tok(query.strip(), add_special_tokens=False)["input_ids"])
            d = list(tok(doc.strip(), add_special_tokens=False)["input_ids"])
            head = list(tok("<|im_start|>system\n", add_special_tokens=False)["input_ids"])
            mid = list(tok("<|im_end|>\n<|im_start|>user\n", add_special_tokens=False)["input_ids"])
            tail = list(tok("<|im_end|>\n<|im_start|>assistant\n",
                            add_special_tokens=False)["input_ids"])
            if head + q + mid + d + tail != ids:
                raise AssertionError("template parts do not tokenize as the whole prompt")
            cut_d = min(over, len(d))
            d = d[: len(d) - cut_d]
            q = q[: max(0, len(q) - (over - cut_d))]
            ids = head + q + mid + d + tail
        rows.append(ids)
    return rows


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any) -> np.ndarray:
    """float64 ``Yes`` logit / 5 at the last token: the raw score whose sigmoid is the
    authors' (option: ``max_length``, tokens per prompt)."""

    config, w = load_float64(folder)
    tok = load_tokenizer(folder)
    yes = tok.encode("Yes", add_special_tokens=False)[0]
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    out = []
    for row in encode(folder, query, documents, **options):
        last = rms_norm(layer_states(config, w, np.asarray(row), Variant(qk_norm=True))[-1][-1],
                        w["model.norm.weight"], float(config["rms_norm_eps"]))
        out.append(float(head[yes] @ last) / TEMPERATURE)
    return np.asarray(out, dtype=np.float64)
