"""Tiny Qwen3-Reranker stand-ins, written offline: a byte-level BPE tokenizer and random weights.

A built folder is laid out like ``Qwen/Qwen3-Reranker-0.6B``: ``config.json``,
``model.safetensors`` with Hugging Face weight names, ``tokenizer.json`` (byte-level BPE with the
Qwen2 pre-tokenizer regex and NFC), ``tokenizer_config.json`` and ``special_tokens_map.json``.
The chat tokens ``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>`` are special added tokens and
``<think>``/``</think>`` plain added ones, as in Qwen3; ``yes`` and ``no`` are single tokens.

The shapes keep Qwen3-0.6B's ratios at a tiny size: ``head_dim * heads = 2 * hidden``, twice
as many query heads as key/value heads, ``intermediate = 3 * hidden``. A ``seq_cls`` folder is
the ``*-seq-cls`` conversion of the same weights: ``Qwen3ForSequenceClassification`` with
``score.weight = lm_head[yes] - lm_head[no]``, so both give the same scores.

Example::

    folder = build_qwen3_reranker(tmp_path / "qwen3", seq_cls=False)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.wordlist import ENGLISH_WORDS, NON_ASCII_WORDS, SUFFIXES

__all__ = [
    "QWEN2_PRETOKENIZE_REGEX",
    "build_qwen3_reranker",
    "qwen3_checkpoint",
    "qwen3_shapes",
    "save_bf16_safetensors",
    "write_qwen3_tokenizer",
]

QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
EMBEDDING_SCALE = 0.05
_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_THINK = ("<think>", "</think>")
# Words of the scoring template, merged early so that prompts take few tokens.
_TEMPLATE_WORDS = (
    "yes", "no", "Judge", "whether", "the", "Document", "meets", "requirements", "based", "on",
    "Query", "and", "Instruct", "provided", "Note", "that", "answer", "can", "only", "be",
    "system", "user", "assistant", "Given", "web", "search", "query", "retrieve", "relevant",
    "passages", "answer",
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (the byte-level alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    byte_map = _bytes_to_unicode()
    vocab = {byte_map[b]: i for i, b in enumerate(sorted(byte_map))}
    merges: list[tuple[str, str]] = []
    space = byte_map[ord(" ")]

    def add(left: str, right: str) -> str:
        merged = left + right
        if merged not in vocab:
            vocab[merged] = len(vocab)
            merges.append((left, right))
        return merged

    def merge_word(text: str) -> str:
        pieces = [byte_map[b] for b in text.encode("utf-8")]
        current = pieces[0]
        for piece in pieces[1:]:
            current = add(current, piece)
        return current

    words = list(_TEMPLATE_WORDS) + list(ENGLISH_WORDS) + list(NON_ASCII_WORDS)
    for word in words:
        for form in dict.fromkeys((word, word.capitalize())):
            # As in a trained BPE: the word first, then the space joins it as one token.
            add(space, merge_word(form))
    for suffix in SUFFIXES:
        merge_word(suffix)
    return vocab, merges


def write_qwen3_tokenizer(folder: str | Path, *, model_max_length: int = 131072) -> int:
    """Write a Qwen2-style byte-level BPE tokenizer into ``folder``; returns its size."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _bpe_vocab()
    tok = Tokenizer(models.BPE(vocab, merges, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in _THINK])
    tok.save(str(folder / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": t in _SPECIAL,
        }
        for t in (*_SPECIAL, *_THINK)
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "split_special_tokens": False,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    return int(tok.get_vocab_size(with_added_tokens=True))


def qwen3_shapes(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int,
    tie_word_embeddings: bool,
) -> dict[str, tuple[int, ...]]:
    """Qwen3ForCausalLM tensor names and shapes, in checkpoint order."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab_size, hidden_size)}
    for i in range(num_layers):
        p = f"model.layers.{i}"
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
    shapes["model.norm.weight"] = (hidden_size,)
    if not tie_word_embeddings:
        shapes["lm_head.weight"] = (vocab_size, hidden_size)
    return shapes


def _draw(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 1:  # RMSNorm weights
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name == "model.embed_tokens.weight":
        # Small embeddings, so attention (what reads the document) dominates the residuals.
        return (EMBEDDING_SCALE * rng.standard_normal(shape)).astype(np.float32)
    return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])).astype(np.float32)


def qwen3_checkpoint(*, seed: int, **sizes: Any) -> dict[str, np.ndarray]:
    """Random float32 Qwen3ForCausalLM weights under Hugging Face names (see
    :func:`qwen3_shapes` for ``sizes``)."""
    rng = np.random.default_rng(seed)
    return {name: _draw(name, shape, rng) for name, shape in qwen3_shapes(**sizes).items()}


def save_bf16_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    """Draw the tensors of ``shapes`` one at a time into a bfloat16 safetensors file, as the
    Hub's Qwen3 rerankers ship (a 0.6B-shaped model never sits in memory whole)."""
    rng = np.random.default_rng(seed)
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * ((-len(raw)) % 8)
    with path.open("wb") as out:
        out.write(len(raw).to_bytes(8, "little") + raw)
        for name, shape in shapes.items():
            bits = _draw(name, shape, rng).view(np.uint32)
            # Round to nearest even, as torch's float32 -> bfloat16 conversion does.
            rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            out.write(rounded.astype("<u2").tobytes())


def build_qwen3_reranker(
    folder: str | Path,
    *,
    seq_cls: bool = False,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 32,
    tie_word_embeddings: bool = True,
    max_position_embeddings: int = 4096,
    rope_theta: float = 1_000_000.0,
    seed: int = 0,
    vocab_size: int | None = None,
    bfloat16: bool = False,
) -> Path:
    """Write a random-weight Qwen3 reranker folder; returns ``folder``.

    Args:
        seq_cls: write the ``Qwen3ForSequenceClassification`` conversion of the same weights.
        vocab_size: rows of the embedding table (Qwen3: 151,936); default the tokenizer's size
            rounded up to 64.
        bfloat16: stream the weights into a bfloat16 file (big benchmark models; causal-LM).
    """
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    folder = Path(folder)
    size = write_qwen3_tokenizer(folder)
    vocab_size = vocab_size or -(-size // 64) * 64  # Qwen pads its table past the tokenizer
    intermediate = 3 * hidden_size
    sizes: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
        num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
        intermediate_size=intermediate, tie_word_embeddings=tie_word_embeddings,
    )
    if bfloat16 and seq_cls:
        raise ValueError("bfloat16 stand-ins are causal-LM checkpoints only")
    w = {} if bfloat16 else qwen3_checkpoint(seed=seed, **sizes)

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    special_ids = {t: tok.token_to_id(t) for t in _SPECIAL}
    if seq_cls:
        yes, no = tok.token_to_id("yes"), tok.token_to_id("no")
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        w = {k: v for k, v in w.items() if k != "lm_head.weight"}
        w["score.weight"] = (head[yes] - head[no])[None, :].astype(np.float32)
    config = {
        "architectures": ["Qwen3ForSequenceClassification" if seq_cls else "Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": special_ids["<|endoftext|>"],
        "eos_token_id": special_ids["<|im_end|>"],
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_position_embeddings,
        "max_window_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "sliding_window": None,
        "tie_word_embeddings": tie_word_embeddings and not seq_cls,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }
    if seq_cls:
        config["pad_token_id"] = special_ids["<|endoftext|>"]
        config["id2label"] = {"0": "LABEL_0"}
        config["label2id"] = {"LABEL_0": 0}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if bfloat16:
        config["torch_dtype"] = "bfloat16"
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_bf16_safetensors(folder / "model.safetensors", qwen3_shapes(**sizes), seed)
    else:
        save_file(w, str(folder / "model.safetensors"))
    return folder
