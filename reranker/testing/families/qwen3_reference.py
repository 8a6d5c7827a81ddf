"""An independent float64 numpy Qwen3 reranker: the scores decoder tests compare against.

Tokenization follows Qwen3-Reranker's model card with ``transformers.AutoTokenizer`` (padding
on the left): the text ``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}`` is
tokenized whole, cut to ``max_length - len(prefix) - len(suffix)`` with ``longest_first`` and
wrapped in the prefix and suffix ids. The forward pass reads ``config.json`` and
``model.safetensors`` with the ``safetensors`` package (never the ONNX graph) and follows the
Hugging Face modelling code one pair and one head at a time: RMSNorm, q/k RMSNorm per head,
rotary positions, grouped-query attention with a causal mask, SwiGLU, then the full-vocabulary
logits of the last token, from which the ``yes`` and ``no`` columns are read (or, for
``Qwen3ForSequenceClassification``, the score row at the last token).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_INSTRUCTION",
    "PROMPT_PREFIX",
    "PROMPT_SUFFIX",
    "reference_decoder_encode",
    "reference_decoder_scores",
]

PROMPT_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def reference_decoder_encode(
    folder: str | Path,
    query: str,
    documents: list[str],
    max_length: int,
    instruction: str = DEFAULT_INSTRUCTION,
) -> dict[str, np.ndarray]:
    """The model card's ``process_inputs``: left-padded ``input_ids`` and ``attention_mask``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    prefix = tokenizer.encode(PROMPT_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(PROMPT_SUFFIX, add_special_tokens=False)
    pairs = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"
             for doc in documents]
    inputs = tokenizer(
        pairs, padding=False, truncation="longest_first", return_attention_mask=False,
        max_length=max_length - len(prefix) - len(suffix),
    )
    inputs["input_ids"] = [prefix + ids + suffix for ids in inputs["input_ids"]]
    with warnings.catch_warnings():
        # The model card passes max_length to pad(), which ignores it with padding=True.
        warnings.simplefilter("ignore", UserWarning)
        padded = tokenizer.pad(inputs, padding=True, return_tensors="np", max_length=max_length)
    return {k: np.asarray(v, dtype=np.int64) for k, v in padded.items()}


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * weight


def _rotate(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    dim = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.outer(positions, inv_freq)
    emb = np.concatenate([angles, angles], axis=-1)
    half = dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(emb) + rotated * np.sin(emb)


def _last_hidden(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """The final-normed hidden state of the last token of one unpadded sequence."""
    eps = float(config["rms_norm_eps"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config["num_key_value_heads"])
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    theta = float(config.get("rope_theta") or config["rope_parameters"]["rope_theta"])
    n = len(ids)
    positions = np.arange(n)
    x = w["model.embed_tokens.weight"][ids]
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    for i in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{i}"
        h = _rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = (h @ w[f"{p}.self_attn.q_proj.weight"].T).reshape(n, heads, head_dim)
        k = (h @ w[f"{p}.self_attn.k_proj.weight"].T).reshape(n, kv_heads, head_dim)
        v = (h @ w[f"{p}.self_attn.v_proj.weight"].T).reshape(n, kv_heads, head_dim)
        q = _rms_norm(q, w[f"{p}.self_attn.q_norm.weight"], eps)
        k = _rms_norm(k, w[f"{p}.self_attn.k_norm.weight"], eps)
        context = np.zeros((n, heads, head_dim))
        for head in range(heads):
            kv = head // (heads // kv_heads)  # transformers' repeat_kv order
            qh = _rotate(q[:, head], positions, theta)
            kh = _rotate(k[:, kv], positions, theta)
            scores = qh @ kh.T / math.sqrt(head_dim)
            scores[future] = -np.inf
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            context[:, head] = probs @ v[:, kv]
        x = x + context.reshape(n, heads * head_dim) @ w[f"{p}.self_attn.o_proj.weight"].T
        h = _rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        gate = h @ w[f"{p}.mlp.gate_proj.weight"].T
        up = h @ w[f"{p}.mlp.up_proj.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[f"{p}.mlp.down_proj.weight"].T
    return _rms_norm(x, w["model.norm.weight"], eps)[-1]


def reference_decoder_scores(
    folder: str | Path, input_ids: np.ndarray, attention_mask: np.ndarray
) -> np.ndarray:
    """Log-odds of ``yes`` (``logit_yes - logit_no``; the seq-cls logit) per row, float64.

    Rows may be padded on either side: each is run on its real tokens alone.
    """
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    seq_cls = config["architectures"][0] == "Qwen3ForSequenceClassification"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    yes = tokenizer.convert_tokens_to_ids("yes")
    no = tokenizer.convert_tokens_to_ids("no")
    scores = []
    for ids, mask in zip(np.asarray(input_ids), np.asarray(attention_mask), strict=True):
        last = _last_hidden(config, w, ids[mask.astype(bool)])
        if seq_cls:
            scores.append(float(last @ w["score.weight"][0]))
            continue
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        logits = head @ last  # every vocabulary row, as the model card computes them
        pair = np.array([logits[no], logits[yes]])
        log_probs = pair - np.logaddexp(pair[0], pair[1])  # log_softmax over (no, yes)
        scores.append(float(log_probs[1] - log_probs[0]))
    return np.asarray(scores, dtype=np.float64)
