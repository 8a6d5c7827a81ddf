"""Qwen3-VL rerankers (``Qwen3VLForConditionalGeneration``: Qwen3-VL-Reranker-2B / -8B).

Two graphs from one checkpoint, both cached by :func:`reranker.models.build.built_model`:

- ``head_kind="vision"``: the vision tower and merger
  (:mod:`reranker.models.vision.qwen3_vl_tower`).
- ``head_kind="score_row"`` (the table's head): the Qwen3 text decoder, written from the shared
  layers as :mod:`reranker.models.decoders.stack` writes Qwen3, with what Qwen3-VL changes:

  * the merged image tokens replace the embeddings of the ``<|image_pad|>`` positions
    (``image_embeds [tokens, hidden]`` scattered to the flat positions ``image_index``);
  * the rotary angles come from 3-D positions ``position_ids [3, batch, seq]`` (temporal,
    row, column; text tokens have three equal ones) interleaved as ``mrope_section`` says
    (``apply_interleaved_mrope``: frequency ``j`` takes the row position when ``j % 3 == 1``,
    the column when ``j % 3 == 2``, within the section's length, else the temporal one);
  * DeepStack: after decoder layer ``i < levels`` the vision tower's level-``i`` features are
    added at the image positions (``deepstack_embeds [levels, tokens, hidden]``);
  * the head is the authors' ``score_linear``: one row ``lm_head[yes] - lm_head[no]`` at the
    last position, so the raw score is ``logit_yes - logit_no`` and its sigmoid the model's.

Rows are padded on the left (the last column is every row's last real token); masked keys
follow ``attention_mask``, positions come in as inputs, so padding changes no score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.decoders.stack import DecoderShape, read_decoder_shape
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.attention import (
    GroupedQueryShape,
    decoder_mask,
    grouped_query_attention,
)
from reranker.models.layers.heads import last_position, output_table
from reranker.models.layers.mlp import gated_mlp
from reranker.models.layers.norms import rms_norm
from reranker.models.layers.rope import inverse_frequencies
from reranker.models.sizes import config_mapping, layer_count
from reranker.models.vision.qwen3_vl_tower import vision_graph
from reranker.models.writer import DerivedTensor, GraphWriter, ValueInfo, i64

__all__ = ["graph", "mrope_section", "shape", "text_prefix", "vision_prefix"]


def _text_config(config: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    text = config.get("text_config")
    if not isinstance(text, Mapping):
        raise ModelLoadError(f"config.json of {source} has no text_config object")
    return text


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The text decoder's sizes (``text_config``), checked as Qwen3's are."""
    text = dict(_text_config(config, source))
    if text.get("attention_bias"):
        raise ModelLoadError("attention_bias is on; Qwen3-VL attention has no biases")
    # The M-RoPE section is read by mrope_section; the rotary type itself is the default one.
    for key in ("rope_scaling", "rope_parameters"):
        if isinstance(text.get(key), Mapping):
            text[key] = {k: v for k, v in text[key].items()
                         if k not in ("mrope_section", "mrope_interleaved")}
    if "tie_word_embeddings" not in text and "tie_word_embeddings" in config:
        text["tie_word_embeddings"] = config["tie_word_embeddings"]
    archs = config.get("architectures") or ["Qwen3VLForConditionalGeneration"]
    return read_decoder_shape(text, str(archs[0]), source)


def mrope_section(config: Mapping[str, Any], head_dim: int, source: str = "checkpoint"
                  ) -> tuple[int, int, int]:
    """``mrope_section`` (temporal, height, width frequencies), summing to ``head_dim / 2``."""
    text = _text_config(config, source)
    params = {**config_mapping(text, "rope_scaling", source),
              **config_mapping(text, "rope_parameters", source)}
    section = params.get("mrope_section", [24, 20, 20])
    if (not isinstance(section, list) or len(section) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in section) or sum(section) != head_dim // 2):
        raise ModelLoadError(f"config.json of {source}: mrope_section {section!r} must be three "
                             f"counts summing to head_dim / 2 = {head_dim // 2}")
    if params.get("mrope_interleaved") is False:
        raise ModelLoadError("mrope_interleaved is false; Qwen3-VL interleaves its M-RoPE")
    return (section[0], section[1], section[2])


def _prefix(ck: Checkpoint, new: str, old: str, probe: str) -> str:
    # transformers >= 4.52 saves model.visual / model.language_model; earlier visual / model.
    return new if f"{new}.{probe}" in ck else old


def vision_prefix(ck: Checkpoint) -> str:
    return _prefix(ck, "model.visual", "visual", "patch_embed.proj.weight")


def text_prefix(ck: Checkpoint) -> str:
    return _prefix(ck, "model.language_model", "model", "embed_tokens.weight")


def _selector(section: tuple[int, int, int], half: int) -> np.ndarray:
    """``[3, 1, 1, half]`` one-hot: which of (t, h, w) each rotary frequency reads."""
    pick = np.zeros((3, 1, 1, half), np.float32)
    for j in range(half):
        axis = 0
        for dim in (1, 2):
            if j % 3 == dim and j < 3 * section[dim]:
                axis = dim
        pick[axis, 0, 0, j] = 1.0
    return pick


def _scatter(g: GraphWriter, x: str, index: str, values: str, hidden: int, *, add: bool) -> str:
    flat = g.op("Reshape", x, g.constant("/vl/flat", i64(-1, hidden)))
    rows = g.op("Unsqueeze", index, g.constant("/vl/last_axis", i64(-1)))
    kwargs = {"reduction": "add"} if add else {}
    return g.op("Reshape", g.op("ScatterND", flat, rows, values, **kwargs), g.op("Shape", x))


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The vision tower (``head_kind="vision"``) or the scoring text decoder."""
    ck = checkpoint
    if options.head_kind == "vision":
        return vision_graph(ck, vision_prefix(ck))
    if options.head_kind != "score_row" or len(options.token_ids) != 2:
        raise ModelLoadError("a Qwen3-VL reranker's head is the (no, yes) score row")
    s = shape(ck.config, ck.source)
    section = mrope_section(ck.config, s.head_dim, ck.source)
    p = text_prefix(ck)
    g = GraphWriter()
    layers = layer_count(replace(ck, config=_text_config(ck.config, ck.source)), f"{p}.layers.")
    attention = GroupedQueryShape(num_heads=s.num_heads, num_kv_heads=s.num_kv_heads,
                                  head_dim=s.head_dim, rms_norm_eps=s.rms_norm_eps, qk_norm=True)

    def norm(x: str, name: str) -> str:
        return rms_norm(g, ck, x, name, s.rms_norm_eps)

    half = s.head_dim // 2
    inv = g.constant("/vl/inv_freq", inverse_frequencies(s.head_dim, s.rope_theta))
    freqs = g.op("Mul", g.op("Unsqueeze", g.op("Cast", "position_ids", to=1),
                             g.constant("/vl/last_axis", i64(-1))), inv)  # [3, b, seq, half]
    freqs = g.op("ReduceSum", g.op("Mul", freqs, g.constant("/vl/mrope", _selector(section, half))),
                 g.constant("/vl/axis0", i64(0)), keepdims=0)
    emb = g.op("Concat", freqs, freqs, axis=-1)
    rope_axes = g.constant("/vl/rope_axes", i64(1, 2))  # -> [b, 1, 1, seq, head_dim]
    cos = g.op("Unsqueeze", g.op("Cos", emb), rope_axes)
    sin = g.op("Unsqueeze", g.op("Sin", emb), rope_axes)
    last_start, last_end = g.constant("/vl/last", i64(-1)), g.constant("/vl/end", i64(2**62))
    seq_axis = g.constant("/vl/rope_seq_axis", i64(3))
    cos_last = g.op("Slice", cos, last_start, last_end, seq_axis)
    sin_last = g.op("Slice", sin, last_start, last_end, seq_axis)
    mask = decoder_mask(g, causal=True)
    mask_last = g.op("Slice", mask, last_start, last_end, seq_axis)

    x = g.op("Gather", g.weight(f"{p}.embed_tokens.weight", ck[f"{p}.embed_tokens.weight"]),
             "input_ids")
    x = _scatter(g, x, "image_index", "image_embeds", s.hidden_size, add=False)
    seq = g.constant("/vl/seq_axis", i64(1))
    levels = deepstack_levels(ck)
    for i in range(layers):
        layer = f"{p}.layers.{i}"
        h = norm(x, f"{layer}.input_layernorm")
        if i < layers - 1 or not options.last_position_only:
            x = g.op("Add", x, grouped_query_attention(
                g, ck, h, h, (cos, sin, cos, sin), mask, f"{layer}.self_attn", attention))
        else:  # the score reads the last position, which is never an image token
            x = g.op("Slice", x, last_start, last_end, seq)
            x = g.op("Add", x, grouped_query_attention(
                g, ck, h, g.op("Slice", h, last_start, last_end, seq),
                (cos, sin, cos_last, sin_last), mask_last, f"{layer}.self_attn", attention))
        x = g.op("Add", x, gated_mlp(g, ck, norm(x, f"{layer}.post_attention_layernorm"),
                                     f"{layer}.mlp", "silu"))
        if i < levels and (i < layers - 1 or not options.last_position_only):
            level = g.op("Gather", "deepstack_embeds",
                         g.constant(f"/vl/level{i}", np.array(i, np.int64)), axis=0)
            x = _scatter(g, x, "image_index", level, s.hidden_size, add=True)
    hidden = last_position(g, norm(x, f"{p}.norm"))
    table = output_table(ck, f"{p}.embed_tokens.weight", s.tie_word_embeddings)
    no, yes = options.token_ids
    if not (0 <= no < table.shape[0] and 0 <= yes < table.shape[0]):
        raise ModelLoadError(f"{ck.source}: token ids {[no, yes]} are outside the output matrix")
    row = DerivedTensor(table, (table.shape[1], 1), lambda a: (a[yes] - a[no])[:, None])
    g.output(g.op("MatMul", hidden, g.weight("head.score_row", row)), "logits")
    dims = ["batch_size", "sequence_length"]
    inputs: list[ValueInfo] = [
        ("input_ids", 7, dims), ("attention_mask", 7, dims),
        ("position_ids", 7, [3, *dims]),
        ("image_embeds", 1, ["image_tokens", s.hidden_size]),
        ("image_index", 7, ["image_tokens"]),
        ("deepstack_embeds", 1, ["levels", "image_tokens", s.hidden_size]),
    ]
    return g, inputs, [("logits", 1, ["batch_size", 1])]


def deepstack_levels(ck: Checkpoint) -> int:
    """How many DeepStack levels the checkpoint's tower produces."""
    vision = ck.config.get("vision_config")
    indexes = vision.get("deepstack_visual_indexes", []) if isinstance(vision, Mapping) else []
    return len(indexes) if isinstance(indexes, list) else 0
