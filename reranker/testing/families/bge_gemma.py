"""BAAI's ``bge-reranker-v2-gemma``: a ``GemmaForCausalLM`` scored as FlagEmbedding's
``FlagLLMReranker``.

The rule (``compute_score_single_gpu``): the query becomes ``"A: " + query`` and is cut to
``query_max_length`` tokens (default ``max_length * 3 // 4``), the passage ``"B: " + passage``
to ``max_length`` (default 512); ``[bos] + query`` (when ``bos != pad``) and ``"\\n" + passage``
are joined and cut to ``max_length + len("\\n") + len(prompt)`` tokens (``only_second``: the
passage's end goes), then ``"\\n"`` and the Yes/No prompt are appended. The raw score is the
logit of ``Yes`` at the last position (``normalize=True``: its sigmoid).

Gemma is Llama with ``(1 + w)`` RMSNorm weights, embeddings times ``sqrt(hidden_size)``, a
GELU (tanh) MLP (``hidden_act: "gelu"`` means the tanh form, as transformers reads it) and tied
embeddings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.decoder_family_reference import (
    Variant,
    layer_states,
    load_float64,
    load_tokenizer,
    only_second,
    rms_norm,
)
from reranker.testing.family_checkpoints import decoder_shapes, write_weights
from reranker.testing.family_tokenizers import write_sentencepiece_tokenizer

__all__ = [
    "DEFAULT_PROMPT",
    "NAME",
    "flag_llm_encode",
    "flag_max_length",
    "library_options",
    "make_checkpoint",
    "reference_scores",
]

NAME = "bge_gemma"
NEEDS_RULE = True
"""A ``GemmaForCausalLM``'s files cannot tell this rule: ``custom`` needs ``rule``."""
DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'."
)
PROMPT_WORDS = ("Given", "query", "and", "passage", "determine", "whether", "contains",
                "answer", "to", "the", "by", "providing", "prediction", "of", "either", "Yes",
                "No", "A", "B")


def make_checkpoint(
    folder: Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
    num_kv_heads: int = 1, head_dim: int = 32, seed: int = 0, vocab_size: int | None = None,
    intermediate_size: int | None = None, bfloat16: bool = False,
) -> Path:
    """A random-weight folder laid out like ``BAAI/bge-reranker-v2-gemma`` (multi-query
    attention and ``head_dim * heads != hidden`` as in Gemma 2B, at a tiny size)."""
    folder = Path(folder)
    size = write_sentencepiece_tokenizer(
        folder, style="gemma", specials=("<pad>", "<eos>", "<bos>", "<unk>"), bos="<bos>",
        extra_words=PROMPT_WORDS,
        tokenizer_config={"tokenizer_class": "GemmaTokenizer", "model_max_length": 8192,
                          "add_bos_token": True, "add_eos_token": False,
                          "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                          "unk_token": "<unk>", "padding_side": "left",
                          "clean_up_tokenization_spaces": False,
                          "spaces_between_special_tokens": False})
    vocab = vocab_size or -(-size // 64) * 64
    intermediate = intermediate_size or 4 * hidden_size
    shapes = decoder_shapes(vocab_size=vocab, hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                            intermediate_size=intermediate)
    write_weights(folder, shapes, seed, norm_center=0.0, bfloat16=bfloat16)
    config = {
        "architectures": ["GemmaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "head_dim": head_dim,
        "hidden_act": "gelu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": 8192,
        "model_type": "gemma",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "torch_dtype": "float32",
        "transformers_version": "4.38.2",
        "use_cache": True,
        "vocab_size": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def flag_llm_encode(
    folder: Path, query: str, documents: list[str], *, max_length: int = 512,
    query_max_length: int | None = None, prompt: str | None = None, always_bos: bool = False,
) -> list[list[int]]:
    """FlagEmbedding's decoder-only prompt ids with ``transformers``, one list per document
    (``always_bos``: the layerwise reranker's unconditional ``bos``)."""

    tok = load_tokenizer(folder)
    qmax = max_length * 3 // 4 if query_max_length is None else query_max_length
    prompt_ids = list(tok(prompt or DEFAULT_PROMPT, add_special_tokens=False)["input_ids"])
    sep = list(tok("\n", add_special_tokens=False)["input_ids"])
    limit = max_length + len(sep) + len(prompt_ids)
    bos = [tok.bos_token_id] if always_bos or (
        tok.bos_token_id is not None and tok.bos_token_id != tok.pad_token_id) else []
    rows = []
    for doc in documents:
        q = tok("A: " + query, add_special_tokens=False, max_length=qmax,
                truncation=True)["input_ids"]
        p = tok("B: " + doc, add_special_tokens=False, max_length=max_length,
                truncation=True)["input_ids"]
        rows.append(only_second(bos + list(q), sep + list(p), limit) + sep + prompt_ids)
    return rows


def flag_max_length(folder: Path, window: int, prompt: str | None = None) -> int:
    """FlagEmbedding's ``max_length`` for a prompt of ``window`` tokens: ``"\\n"`` and the
    Yes/No prompt come twice beyond it (inside ``encode_max_length``, then appended)."""
    tok = load_tokenizer(folder)
    extra = sum(len(tok(t, add_special_tokens=False)["input_ids"])
                for t in ("\n", prompt or DEFAULT_PROMPT))
    return window - 2 * extra


def library_options(folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``max_length`` (tokens per prompt, the library's) as FlagEmbedding's ``max_length``."""
    window = options.pop("max_length", None)
    if window is not None:
        options["max_length"] = flag_max_length(folder, window, options.get("prompt"))
    return options


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any) -> np.ndarray:
    """float64 ``Yes`` logits (options: ``max_length``, tokens per prompt as the library
    counts them, default FlagEmbedding's 512 + the prompt; ``prompt``)."""
    options = library_options(folder, dict(options))
    config, w = load_float64(folder)
    tok = load_tokenizer(folder)
    yes = tok("Yes", add_special_tokens=False)["input_ids"][0]
    variant = Variant(norm_offset=1.0, embed_scale=math.sqrt(config["hidden_size"]),
                      activation="gelu_tanh")
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    out = []
    for row in flag_llm_encode(folder, query, documents, **options):
        last = rms_norm(layer_states(config, w, np.asarray(row), variant)[-1][-1],
                        w["model.norm.weight"], float(config["rms_norm_eps"]), 1.0)
        out.append(float(head[yes] @ last))
    return np.asarray(out, dtype=np.float64)
