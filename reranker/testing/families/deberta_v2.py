"""Test kit for DeBERTa-v2 rerankers (``mixedbread-ai/mxbai-rerank-{xsmall,base,large}-v1``).

``make_checkpoint`` writes what those repos hold, at toy sizes: ``config.json`` with the keys of
``DebertaV2ForSequenceClassification`` (DeBERTa-v3 layout: no absolute positions, no token
types, 256 relative position buckets in the real model, shared attention keys, ``p2c|c2p``),
``model.safetensors`` under the transformers names, and a SentencePiece-style Unigram
``tokenizer.json`` with DeBERTa's pair template ``[CLS] A [SEP] B [SEP]`` (type ids 0 then 1).

``reference_scores`` is mixedbread's ``MxbaiRerankV1.predict`` recomputed in float64: the pair
tokenized with ``truncation=True`` at the tokenizer's ``model_max_length``, the model's
``logits`` as the raw score (the package's score is their sigmoid). The forward pass follows
transformers' ``modeling_deberta_v2.py``: disentangled attention where each score is
``(q.k + q.Kr[idx] + k.Qr[idx']) / sqrt(d * 3)``, ``Kr``/``Qr`` the projected (LayerNorm-ed)
relative embeddings and ``idx`` the log-bucketed relative distance, then BERT-style post-norm
layers and the ``ContextPooler`` (dense + GELU on the first token) before the classifier.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from reranker.testing.families.encoder_numpy import (
    TinyWeights,
    attention,
    dense,
    encode_pairs,
    gelu,
    layer_norm,
    load_checkpoint,
    save_checkpoint,
)
from reranker.testing.tokenizers import xlmr_pieces

__all__ = ["NAME", "REPOS", "bucket_positions", "make_checkpoint", "reference_scores"]

NAME = "deberta_v2"
REPOS = (
    "mixedbread-ai/mxbai-rerank-xsmall-v1",
    "mixedbread-ai/mxbai-rerank-base-v1",
    "mixedbread-ai/mxbai-rerank-large-v1",
)
_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
_MASK = "[MASK]"


def write_tokenizer(folder: Path, *, vocab_size: int | None = None,
                    model_max_length: int = 512) -> int:
    """A DeBERTa-v3 style Unigram tokenizer; returns its size. ``[MASK]`` is the last id.

    The pipeline is the one transformers v5 builds for ``DebertaV2Tokenizer`` from this file's
    vocabulary (``do_lower_case`` and ``split_by_punct`` false, as in the mxbai repos), so the
    reference tokenizer and ``tokenizer.json`` agree; a real repo's file carries SentencePiece's
    precompiled charsmap, which cannot be built offline.
    """
    pieces = [(s, 0.0) for s in _SPECIALS]
    pieces += [p for p in xlmr_pieces()[4:-1]]  # the XLM-R kit's pieces without its specials
    if vocab_size is not None:
        pieces += [(f"<extra_{i}>", -20.0) for i in range(vocab_size - len(pieces) - 1)]
    pieces.append((_MASK, 0.0))
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
        normalizers.NFC(),
        normalizers.Strip(left=False, right=True),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    tok.add_special_tokens([*_SPECIALS, _MASK])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    specials = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]",
                "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": _MASK}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    config = {**specials, "do_lower_case": False, "model_max_length": model_max_length,
              "sp_model_kwargs": {}, "split_by_punct": False,
              "tokenizer_class": "DebertaV2Tokenizer", "vocab_type": "spm"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "added_tokens.json").write_text(json.dumps({_MASK: len(pieces) - 1}) + "\n")
    return len(pieces)


def make_checkpoint(
    folder: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 32,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    position_buckets: int = 8,
    max_relative_positions: int = -1,
    share_att_key: bool = True,
    pos_att_type: str | Sequence[str] = ("p2c", "c2p"),
    position_biased_input: bool = False,
    type_vocab_size: int = 0,
    norm_rel_ebd: str = "layer_norm",
    num_labels: int = 1,
    vocab_size: int | None = None,
    stray_position_table: bool = False,
    seed: int = 0,
) -> Path:
    """Write a DeBERTa-v2 reranker folder; returns it.

    The defaults are ``mxbai-rerank-*-v1``'s layout at toy sizes; with 8 buckets (4 exact
    distances each way) and a 128-token window, log buckets are used from distance 5 on.
    ``max_relative_positions`` below the window also exercises the clamp of bucket indices.
    ``stray_position_table`` adds ``deberta.embeddings.position_embeddings.weight`` although
    ``position_biased_input`` is false, as some DeBERTa-v3 checkpoints carry it unused.
    Real shape (``mxbai-rerank-base-v1``): ``num_layers=12, hidden_size=768, num_heads=12,
    intermediate_size=3072, max_position_embeddings=512, position_buckets=256,
    vocab_size=128100``.
    """
    folder = Path(folder)
    vocab = write_tokenizer(folder, vocab_size=vocab_size,
                            model_max_length=max_position_embeddings)
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    config: dict[str, Any] = {
        "architectures": ["DebertaV2ForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden_size,
        "id2label": labels,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "label2id": {v: int(k) for k, v in labels.items()},
        "layer_norm_eps": 1e-07,
        "max_position_embeddings": max_position_embeddings,
        "max_relative_positions": max_relative_positions,
        "model_type": "deberta-v2",
        "norm_rel_ebd": norm_rel_ebd,
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "pad_token_id": 0,
        "pooler_dropout": 0,
        "pooler_hidden_act": "gelu",
        "pooler_hidden_size": hidden_size,
        "pos_att_type": (pos_att_type if isinstance(pos_att_type, str)
                         else list(pos_att_type)),
        "position_biased_input": position_biased_input,
        "position_buckets": position_buckets,
        "relative_attention": True,
        "share_att_key": share_att_key,
        "torch_dtype": "float32",
        "transformers_version": "4.36.2",
        "type_vocab_size": type_vocab_size,
        "vocab_size": vocab,
    }
    att_types = _att_types(config)
    span = _span(config)
    tw = TinyWeights(seed)
    h, p = hidden_size, "deberta"
    tw.table(f"{p}.embeddings.word_embeddings", vocab, h)
    if position_biased_input or stray_position_table:
        tw.table(f"{p}.embeddings.position_embeddings", max_position_embeddings, h)
    if type_vocab_size > 0:
        tw.table(f"{p}.embeddings.token_type_embeddings", type_vocab_size, h)
    tw.norm(f"{p}.embeddings.LayerNorm", h)
    for i in range(num_layers):
        layer = f"{p}.encoder.layer.{i}"
        for proj in ("query_proj", "key_proj", "value_proj"):
            tw.linear(f"{layer}.attention.self.{proj}", h, h, gain=2.0)
        if not share_att_key:
            if "c2p" in att_types:
                tw.linear(f"{layer}.attention.self.pos_key_proj", h, h, gain=2.0)
            if "p2c" in att_types:
                tw.linear(f"{layer}.attention.self.pos_query_proj", h, h, gain=2.0)
        tw.linear(f"{layer}.attention.output.dense", h, h)
        tw.norm(f"{layer}.attention.output.LayerNorm", h)
        tw.linear(f"{layer}.intermediate.dense", intermediate_size, h)
        tw.linear(f"{layer}.output.dense", h, intermediate_size)
        tw.norm(f"{layer}.output.LayerNorm", h)
    tw.table(f"{p}.encoder.rel_embeddings", 2 * span, h, std=1.0)
    if "layer_norm" in _norm_rel(config):
        tw.norm(f"{p}.encoder.LayerNorm", h)
    tw.linear("pooler.dense", h, h, gain=2.0)
    tw.classifier("classifier", num_labels, h)
    save_checkpoint(folder, config, tw.w)
    return folder


def _att_types(config: dict[str, Any]) -> list[str]:
    raw = config.get("pos_att_type") or []
    if isinstance(raw, str):  # DeBERTa-v2 configs write "p2c|c2p"
        raw = raw.lower().split("|")
    return [str(x).strip() for x in raw]


def _norm_rel(config: dict[str, Any]) -> list[str]:
    return [x.strip() for x in str(config.get("norm_rel_ebd", "none")).lower().split("|")]


def _max_relative(config: dict[str, Any]) -> int:
    value = int(config.get("max_relative_positions", -1))
    return int(config["max_position_embeddings"]) if value < 1 else value


def _span(config: dict[str, Any]) -> int:
    buckets = int(config.get("position_buckets", -1))
    return buckets if buckets > 0 else _max_relative(config)


def bucket_positions(relative: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
    """transformers' ``make_log_bucket_position``, in float32 as torch computes it, so a
    distance that lands on a bucket edge rounds the way the authors' model rounds it."""
    rel = np.asarray(relative, dtype=np.int64)
    if bucket_size <= 0 or max_position <= 0:
        return rel
    mid = bucket_size // 2
    f32 = np.float32
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    ratio = np.log(abs_pos.astype(f32) / f32(mid)) / np.log(f32((max_position - 1) / mid))
    log_pos = np.ceil(ratio * f32(mid - 1)) + f32(mid)
    bucketed = np.where(abs_pos <= mid, rel.astype(f32), log_pos * np.sign(rel).astype(f32))
    return bucketed.astype(np.int64)


def _activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "gelu":
        return gelu(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    raise NotImplementedError(f"activation {name!r}")


def _logits(config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray,
            types: np.ndarray | None) -> np.ndarray:
    if int(config.get("conv_kernel_size", 0)) > 0 or "embedding_size" in config:
        raise NotImplementedError("DeBERTa-v2 conv layer / embedding projection")
    p, eps = "deberta", float(config["layer_norm_eps"])
    heads, n = int(config["num_attention_heads"]), len(ids)
    x = w[f"{p}.embeddings.word_embeddings.weight"][ids]
    if config.get("position_biased_input", True):
        x = x + w[f"{p}.embeddings.position_embeddings.weight"][np.arange(n)]
    if int(config["type_vocab_size"]) > 0:
        t = np.zeros(n, dtype=np.int64) if types is None else types
        x = x + w[f"{p}.embeddings.token_type_embeddings.weight"][t]
    x = layer_norm(x, w[f"{p}.embeddings.LayerNorm.weight"], w[f"{p}.embeddings.LayerNorm.bias"],
                   eps)
    att_types = _att_types(config)
    span = _span(config)
    rel_emb = w[f"{p}.encoder.rel_embeddings.weight"][: 2 * span]
    if "layer_norm" in _norm_rel(config):
        rel_emb = layer_norm(rel_emb, w[f"{p}.encoder.LayerNorm.weight"],
                             w[f"{p}.encoder.LayerNorm.bias"], eps)
    positions = np.arange(n)
    bucket = bucket_positions(positions[:, None] - positions[None, :],
                              int(config.get("position_buckets", -1)), _max_relative(config))
    c2p_index = np.clip(bucket + span, 0, 2 * span - 1)  # [query i, key j]
    # p2c gathers row j of k.Qr^T at span - bucket(j - i), then transposes (see modeling code).
    p2c_index = np.clip(span - bucket.T, 0, 2 * span - 1)
    d = x.shape[1] // heads
    scale = 1.0 / np.sqrt(d * (1 + len([a for a in att_types if a in ("c2p", "p2c")])))
    share = bool(config.get("share_att_key", False))
    for i in range(int(config["num_hidden_layers"])):
        a = f"{p}.encoder.layer.{i}.attention"
        q = dense(w, x, f"{a}.self.query_proj")
        k = dense(w, x, f"{a}.self.key_proj")
        v = dense(w, x, f"{a}.self.value_proj")
        pos_k = dense(w, rel_emb, f"{a}.self.key_proj" if share else f"{a}.self.pos_key_proj") \
            if "c2p" in att_types else None
        pos_q = dense(w, rel_emb, f"{a}.self.query_proj" if share else f"{a}.self.pos_query_proj") \
            if "p2c" in att_types else None

        def relative(h: int, qh: np.ndarray, kh: np.ndarray, pos_k: np.ndarray | None = pos_k,
                     pos_q: np.ndarray | None = pos_q) -> np.ndarray:
            cols = slice(h * d, (h + 1) * d)
            out = np.zeros((n, n))
            if pos_k is not None:
                c2p = qh @ pos_k[:, cols].T  # [i, bucket]
                out += np.take_along_axis(c2p, c2p_index, axis=1)
            if pos_q is not None:
                p2c = kh @ pos_q[:, cols].T  # [j, bucket]
                out += np.take_along_axis(p2c, p2c_index.T, axis=1).T
            return out * scale

        context = attention(q, k, v, heads, bias=relative, scale=scale)
        x = layer_norm(dense(w, context, f"{a}.output.dense") + x,
                       w[f"{a}.output.LayerNorm.weight"], w[f"{a}.output.LayerNorm.bias"], eps)
        layer = f"{p}.encoder.layer.{i}"
        hidden = _activation(str(config["hidden_act"]), dense(w, x, f"{layer}.intermediate.dense"))
        x = layer_norm(dense(w, hidden, f"{layer}.output.dense") + x,
                       w[f"{layer}.output.LayerNorm.weight"], w[f"{layer}.output.LayerNorm.bias"],
                       eps)
    pooled = _activation(str(config.get("pooler_hidden_act", "gelu")),
                         dense(w, x[0], "pooler.dense"))
    return dense(w, pooled, "classifier")


def reference_scores(folder: str | Path, query: str, documents: Sequence[str], *,
                     max_length: int | None = None) -> np.ndarray:
    """Raw scores in float64 (``[n]`` for one label, else ``[n, labels]``), as
    ``MxbaiRerankV1`` computes them (its returned score is the sigmoid of the single logit)."""
    folder = Path(folder)
    config, w = load_checkpoint(folder)
    if max_length is None:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
        max_length = int(tok_config["model_max_length"])
    rows = encode_pairs(folder, query, documents, max_length)
    logits = np.stack([_logits(config, w, r["input_ids"], r.get("token_type_ids")) for r in rows])
    return logits[:, 0] if logits.shape[1] == 1 else logits
