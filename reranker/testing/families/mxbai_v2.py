"""mixedbread's mxbai-rerank v2 (``mixedbread-ai/mxbai-rerank-base-v2`` / ``-large-v2``).

A ``Qwen2ForCausalLM`` (q/k/v biases, tied embeddings) scored as mixedbread's ``mxbai-rerank``
package's ``MxbaiRerankV2`` does: the query part ``query: {q}`` (``instruction: {i}\\nquery:
{q}`` with an instruction) tokenized alone and cut to ``max_length * 3 // 4`` tokens, the
document part ``document: {d}`` cut to ``min(model_max_length - len(query), max_length)``, the two
joined by ``\\n`` and cut to ``max_length`` (``only_second``: the document's end goes), then
wrapped in the Qwen chat prefix, ``\\n`` + the task prompt and the chat suffix. The raw score is
``logit("1") - logit("0")`` at the last position.

:func:`make_checkpoint` writes a tiny folder in the real layout; :func:`reference_scores`
repeats that rule with the ``transformers`` tokenizer and a float64 numpy forward pass.
"""

from __future__ import annotations

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
from reranker.testing.family_tokenizers import write_bytelevel_tokenizer

__all__ = [
    "CHAT_PREFIX",
    "CHAT_SUFFIX",
    "NAME",
    "TASK_PROMPT",
    "encode",
    "make_checkpoint",
    "package_max_length",
    "reference_scores",
]

NAME = "mxbai_v2"
NEEDS_RULE = True
"""A ``Qwen2ForCausalLM``'s files cannot tell this rule: ``custom`` needs ``rule``."""
CHAT_PREFIX = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n<|im_start|>user\n")
CHAT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
TASK_PROMPT = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
_WORDS = ("You", "are", "Qwen", "created", "by", "Alibaba", "Cloud", "helpful", "assistant",
          "search", "relevance", "expert", "who", "evaluates", "how", "well", "documents",
          "match", "queries", "For", "each", "query", "document", "pair", "carefully",
          "analyze", "semantic", "relationship", "between", "them", "then", "provide", "your",
          "binary", "judgment", "for", "not", "relevant", "Relevance", "instruction", "system",
          "user")
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def make_checkpoint(
    folder: Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
    num_kv_heads: int = 2, head_dim: int = 16, seed: int = 0, vocab_size: int | None = None,
    intermediate_size: int | None = None, bfloat16: bool = False, model_max_length: int = 32768,
    max_position_embeddings: int = 32768,
) -> Path:
    """A random-weight mxbai-rerank-v2 folder laid out like ``mixedbread-ai/mxbai-rerank-base-v2``
    (``head_dim`` must be ``hidden_size / num_heads``, as Qwen2 derives it)."""
    folder = Path(folder)
    size = write_bytelevel_tokenizer(
        folder, specials=_SPECIALS, extra_words=_WORDS,
        tokenizer_config={"tokenizer_class": "Qwen2Tokenizer", "model_max_length": model_max_length,
                          "bos_token": None, "eos_token": "<|im_end|>",
                          "pad_token": "<|endoftext|>", "unk_token": None,
                          "add_prefix_space": False, "errors": "replace",
                          "split_special_tokens": False, "clean_up_tokenization_spaces": False})
    if head_dim * num_heads != hidden_size:
        raise ValueError("Qwen2 has head_dim = hidden_size / num_heads")
    vocab = vocab_size or -(-size // 64) * 64
    intermediate = intermediate_size or 3 * hidden_size
    shapes = decoder_shapes(vocab_size=vocab, hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                            intermediate_size=intermediate, qkv_bias=True)
    write_weights(folder, shapes, seed, bfloat16=bfloat16)
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": size - 3,
        "eos_token_id": size - 1,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_position_embeddings,
        "max_window_layers": num_layers,
        "model_type": "qwen2",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": max_position_embeddings,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.49.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }
    import json

    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def encode(folder: Path, query: str, documents: list[str], *, max_length: int = 8192,
           instruction: str | None = None) -> list[list[int]]:
    """``MxbaiRerankV2.prepare_inputs`` with ``transformers``: one id list per document."""

    tok = load_tokenizer(folder)

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    prefix, suffix, sep, task = ids(CHAT_PREFIX), ids(CHAT_SUFFIX), ids("\n"), ids(TASK_PROMPT)
    model_max = int(tok.model_max_length)
    fixed = len(prefix) + len(task) + len(suffix) + len(sep)
    if max_length + fixed > model_max:
        max_length = model_max - fixed
    query_text = f"query: {query}"
    if instruction:
        query_text = f"instruction: {instruction}\n{query_text}"
    rows = []
    for doc in documents:
        q = tok(query_text, add_special_tokens=False, max_length=max_length * 3 // 4,
                truncation=True)["input_ids"]
        d = tok(f"document: {doc}", add_special_tokens=False, truncation=True,
                max_length=min(model_max - len(q), max_length))["input_ids"]
        rows.append(prefix + only_second(list(q), sep + list(d), max_length) + sep + task + suffix)
    return rows


def package_max_length(folder: Path, window: int) -> int:
    """``MxbaiRerankV2``'s ``max_length`` for a prompt of ``window`` tokens: the window less
    the package's own ``predefined_length`` (chat prefix, task prompt, suffix, separator)."""
    tok = load_tokenizer(folder)
    fixed = sum(len(tok(t, add_special_tokens=False)["input_ids"])
                for t in (CHAT_PREFIX, TASK_PROMPT, CHAT_SUFFIX, "\n"))
    return window - fixed


def reference_scores(folder: Path, query: str, documents: list[str], *,
                     max_length: int | None = None, instruction: str | None = None,
                     ) -> np.ndarray:
    """float64 ``logit("1") - logit("0")`` per document. ``max_length``: tokens per prompt,
    template included (the library's setting; ``None``: the package's default 8192 for query
    and document); ``instruction`` as ``MxbaiRerankV2.predict`` takes it."""
    options: dict[str, Any] = {"instruction": instruction}
    if max_length is not None:
        options["max_length"] = package_max_length(folder, max_length)
    config, w = load_float64(folder)
    tok = load_tokenizer(folder)
    one = tok("1", add_special_tokens=False)["input_ids"][0]
    zero = tok("0", add_special_tokens=False)["input_ids"][0]
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    eps = float(config["rms_norm_eps"])
    out = []
    for row in encode(folder, query, documents, **options):
        last = rms_norm(layer_states(config, w, np.asarray(row), Variant(qkv_bias=True))[-1][-1],
                        w["model.norm.weight"], eps)
        out.append(float(head[one] @ last - head[zero] @ last))
    return np.asarray(out, dtype=np.float64)
