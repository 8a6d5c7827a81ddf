"""The decoder body every decoder family shares: sizes from ``config.json``, and the graph.

:func:`decoder_graph` computes only what the score needs. Every layer runs over all tokens
except the last one, which runs for the last position only (its keys and values still cover the
whole sequence); the final norm and the head see one hidden state per pair. Inputs are
``input_ids`` and ``attention_mask`` ``[batch, seq]``, padded on the left, so the last column is
every pair's last real token. Positions count real tokens only (``cumsum(mask) - 1``), so
scores do not depend on how much padding a batch adds. Plain ONNX operators only (opset 17);
ONNX Runtime fuses the RMSNorm pattern into ``SimplifiedLayerNormalization`` by itself.

``GraphOptions.cutoff_layer`` is the layerwise hook: the graph stops after that many layers and
applies the final norm and head there.

A family is a :class:`DecoderVariant` (what differs between Llama, Qwen2, Qwen3, Gemma: q/k
norms, biases, the ``(1 + w)`` norm, an embedding scale, the MLP activation, causal or
bidirectional attention) and a head (:mod:`reranker.models.layers.heads`).

With ``GraphOptions.kv_cache`` the graph of a causal decoder also takes the keys and values of
a prompt prefix run before (``past_key.<i>``/``past_value.<i>``, ``[1, kv_heads, 1, past,
head_dim]``, shared by every row) and outputs the keys and values it attended to
(``present_key.<i>``/``present_value.<i>``): the runner runs a request's shared prefix once
with an empty past and every document's rest after it. Positions then start after the prefix
and every prefix key is visible, so scores equal a run over the whole prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.family import BuiltGraph, FamilyModule, GraphOptions
from reranker.models.layers.attention import (
    GroupedQueryShape,
    decoder_mask,
    grouped_query_attention,
)
from reranker.models.layers.heads import last_position, output_table, score_row, token_rows
from reranker.models.layers.linear import Bias
from reranker.models.layers.mlp import gated_mlp
from reranker.models.layers.norms import rms_norm
from reranker.models.layers.rope import inverse_frequencies, llama3_frequencies, rope_cos_sin
from reranker.models.sizes import (
    config_float,
    config_int,
    config_mapping,
    expect_shape,
    layer_count,
)
from reranker.models.writer import GraphWriter, ValueInfo, f32, i64, transposed

__all__ = [
    "DecoderFamilyModule",
    "DecoderShape",
    "DecoderVariant",
    "decoder_graph",
    "read_decoder_shape",
    "score_row_head",
    "token_rows_head",
]


@dataclass(frozen=True)
class DecoderShape:
    """The sizes of a decoder, as its ``config.json`` gives them."""

    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    #: ``rope_type: "llama3"`` settings (``factor``, ``low_freq_factor``, ``high_freq_factor``,
    #: ``original_max_position_embeddings``); empty: plain RoPE.
    rope_scaling: tuple[tuple[str, float], ...] = ()

    def inverse_frequencies(self) -> np.ndarray:
        """The RoPE frequencies, Llama 3's scaling applied when the config asks for it."""
        inv = inverse_frequencies(self.head_dim, self.rope_theta)
        return llama3_frequencies(inv, **dict(self.rope_scaling)) if self.rope_scaling else inv

    def run_memory_bytes(self, rows: int, length: int) -> int:
        """Peak transient memory of one run of ``rows`` pairs of ``length`` tokens (float32):
        one layer's attention scores and probabilities plus its widest activations."""
        attention = 2 * self.num_heads * length * length
        activations = length * (3 * self.intermediate_size + 4 * self.num_heads * self.head_dim
                                + 4 * self.hidden_size)
        return 4 * rows * (attention + activations)


class DecoderFamilyModule(FamilyModule, Protocol):
    """A decoder family module: ``graph`` and ``shape``."""

    def shape(self, config: Mapping[str, Any], source: str = ...) -> DecoderShape: ...


_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                "original_max_position_embeddings")


def _rope_scaling(config: Mapping[str, Any], source: str) -> tuple[tuple[str, float], ...]:
    """Llama 3's RoPE scaling settings, checked; empty for plain RoPE."""
    params = config_mapping(config, "rope_parameters", source)
    scaling = config_mapping(config, "rope_scaling", source)
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return ()
    if kind != "llama3":
        raise ModelLoadError(
            f"rope_type {kind!r} is not supported by the decoder builder; only 'default' and "
            "'llama3' RoPE")
    values = {**scaling, **params}
    out = []
    for key in _LLAMA3_KEYS:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ModelLoadError(f"config.json of {source}: rope_scaling {key}={value!r} is not "
                                 "a number > 0")
        out.append((key, float(value)))
    if dict(out)["high_freq_factor"] <= dict(out)["low_freq_factor"]:
        raise ModelLoadError(f"config.json of {source}: rope_scaling high_freq_factor must "
                             "exceed low_freq_factor")
    return tuple(out)


def _rope_theta(config: Mapping[str, Any], source: str) -> float:
    # transformers v5 writes rope settings under ``rope_parameters``; v4 at the top level.
    params = config_mapping(config, "rope_parameters", source)
    where = params if "rope_theta" in params else config
    return config_float(where, "rope_theta", source, default=10000.0, minimum=1.0, maximum=1e12)


def read_decoder_shape(config: Mapping[str, Any], architecture: str, source: str = "checkpoint"
                       ) -> DecoderShape:
    """Read and bound a decoder's sizes (``ModelLoadError`` naming the field otherwise)."""
    if config.get("use_sliding_window"):
        raise ModelLoadError("use_sliding_window is on; the decoder builder needs full attention")

    def size(key: str, default: int | None = None) -> int:
        return config_int(config, key, source, default=default)

    heads, hidden = size("num_attention_heads"), size("hidden_size")
    kv_heads = size("num_key_value_heads", heads) if config.get("num_key_value_heads") else heads
    if heads % kv_heads:
        raise ModelLoadError(
            f"config.json of {source}: num_attention_heads={heads} is not a multiple of "
            f"num_key_value_heads={kv_heads}")
    head_dim = size("head_dim") if config.get("head_dim") else hidden // heads
    if head_dim < 2 or head_dim % 2:
        raise ModelLoadError(f"config.json of {source}: head_dim {head_dim} must be even")
    eps = config_float(config, "rms_norm_eps", source, default=1e-6, minimum=0.0, maximum=1.0)
    return DecoderShape(
        architecture=architecture,
        hidden_size=hidden,
        num_layers=size("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=size("intermediate_size"),
        vocab_size=size("vocab_size"),
        rms_norm_eps=eps,
        rope_theta=_rope_theta(config, source),
        max_position_embeddings=size("max_position_embeddings", 32768),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_scaling=_rope_scaling(config, source),
    )


@dataclass(frozen=True)
class DecoderVariant:
    """What one decoder family changes in the shared body."""

    qk_norm: bool = False
    qkv_bias: Bias = "none"
    norm_unit_offset: bool = False
    embedding_scale: bool = False  # Gemma: embeddings times sqrt(hidden_size)
    mlp_activation: str = "silu"
    causal: bool = True
    prefix: str = "model."
    #: MiniCPM: embeddings times ``scale_emb`` (a number from its config).
    embedding_multiplier: float = 1.0
    #: MiniCPM: attention and MLP outputs times ``scale_depth / sqrt(num_hidden_layers)``
    #: before they join the residual stream.
    residual_multiplier: float = 1.0


Head = Callable[[GraphWriter, Checkpoint, str, DecoderShape, GraphOptions], tuple[str, int]]


def token_rows_head(g: GraphWriter, ck: Checkpoint, hidden: str, shape: DecoderShape,
                    options: GraphOptions, prefix: str = "model.") -> tuple[str, int]:
    """The logits of ``options.token_ids`` at the last position (``(no, yes)`` rerankers)."""
    table = output_table(ck, f"{prefix}embed_tokens.weight", shape.tie_word_embeddings)
    if tuple(table.shape) != (shape.vocab_size, shape.hidden_size):
        raise ModelLoadError(
            f"the output matrix of {ck.source} has shape {list(table.shape)}, but config.json "
            f"implies {[shape.vocab_size, shape.hidden_size]}")
    if options.vocabulary_head:
        # Benchmarks only: what a causal-LM forward computes before picking the columns.
        vocab = g.weight("head.vocabulary_t", transposed(table))
        logits = last_position(g, g.op("MatMul", hidden, vocab))
        picked = g.constant("/token_ids", i64(*options.token_ids))
        return g.op("Gather", logits, picked, axis=1), len(options.token_ids)
    return token_rows(g, ck, last_position(g, hidden), table, options.token_ids), len(
        options.token_ids)


def score_row_head(g: GraphWriter, ck: Checkpoint, hidden: str, shape: DecoderShape,
                   options: GraphOptions) -> tuple[str, int]:
    """A seq-cls conversion's score row at the last position."""
    if "score.weight" in ck and ck["score.weight"].shape[1:] != (shape.hidden_size,):
        raise ModelLoadError(f"score.weight of {ck.source} has shape "
                             f"{list(ck['score.weight'].shape)}; expected [1, {shape.hidden_size}]")
    return score_row(g, ck, last_position(g, hidden)), 1


def decoder_graph(ck: Checkpoint, shape: DecoderShape, variant: DecoderVariant,
                  options: GraphOptions, head: Head) -> BuiltGraph:
    """The decoder body of ``variant`` with ``head`` on the final norm's output."""
    g, s, p = GraphWriter(), shape, variant.prefix
    layers = layer_count(ck, f"{p}layers.")
    if options.cutoff_layer is not None:
        if not 1 <= options.cutoff_layer <= layers:
            raise ModelLoadError(
                f"cutoff layer {options.cutoff_layer} is outside 1..{layers} of {ck.source}")
        layers = options.cutoff_layer
    attention = GroupedQueryShape(
        num_heads=s.num_heads, num_kv_heads=s.num_kv_heads, head_dim=s.head_dim,
        rms_norm_eps=s.rms_norm_eps, qk_norm=variant.qk_norm, qkv_bias=variant.qkv_bias,
        norm_unit_offset=variant.norm_unit_offset, hidden_size=s.hidden_size)

    def norm(x: str, name: str) -> str:
        return rms_norm(g, ck, x, name, s.rms_norm_eps, unit_offset=variant.norm_unit_offset,
                        width=s.hidden_size)

    kv = options.kv_cache
    if kv and not variant.causal:
        raise ModelLoadError("a key/value prefix needs causal attention; this decoder attends "
                             "both ways, so a document changes its prompt's keys")
    counts = g.op("CumSum", "attention_mask", g.constant("/axis1", np.array(1, np.int64)))
    positions = g.op("Sub", counts, g.constant("/one_i", np.array(1, np.int64)))
    positions = g.op("Max", positions, g.constant("/zero_i", np.array(0, np.int64)))
    if kv:  # the rows continue the prefix: positions start after it
        past_length = g.op("Shape", "past_key.0", start=3, end=4)
        positions = g.op("Add", positions, past_length)
    # RoPE angles in float32 from the positions, as transformers computes them.
    cos, sin = rope_cos_sin(g, g.op("Cast", positions, to=1),
                            s.inverse_frequencies(), "rope")
    rope_axes = g.constant("/rope_axes", i64(1, 2))  # -> [b, 1, 1, seq, head_dim]
    cos, sin = g.op("Unsqueeze", cos, rope_axes), g.op("Unsqueeze", sin, rope_axes)
    last_start, last_end = g.constant("/last_start", i64(-1)), g.constant("/end", i64(2**62))
    seq_axis = g.constant("/rope_seq_axis", i64(3))
    cos_last = g.op("Slice", cos, last_start, last_end, seq_axis)
    sin_last = g.op("Slice", sin, last_start, last_end, seq_axis)
    mask = decoder_mask(g, causal=variant.causal)
    if kv:  # every prefix key is visible: the prefix has no padding and precedes every row
        rows_shape = g.op("Shape", "input_ids")
        visible_shape = g.op("Concat", g.op("Slice", rows_shape, g.constant("/zero_s", i64(0)),
                                            g.constant("/one_s", i64(1))),
                             g.constant("/past_mask_ones", i64(1, 1)),
                             g.op("Slice", rows_shape, g.constant("/one_s2", i64(1)),
                                  g.constant("/two_s", i64(2))),
                             past_length, axis=0)
        visible = g.op("Expand", g.constant("/past_visible", f32(0.0)), visible_shape)
        mask = g.op("Concat", visible, mask, axis=4)
    mask_last = g.op("Slice", mask, last_start, last_end, seq_axis)

    expect_shape(ck, f"{p}embed_tokens.weight", (s.vocab_size, s.hidden_size))
    embed = ck[f"{p}embed_tokens.weight"]
    x = g.op("Gather", g.weight(f"{p}embed_tokens.weight", embed), "input_ids")
    if variant.embedding_scale:
        x = g.op("Mul", x, g.constant("/embed_scale", f32(float(np.sqrt(s.hidden_size)))))
    if variant.embedding_multiplier != 1.0:
        x = g.op("Mul", x, g.constant("/embed_multiplier", f32(variant.embedding_multiplier)))
    residual = (g.constant("/residual_multiplier", f32(variant.residual_multiplier))
                if variant.residual_multiplier != 1.0 else None)

    def scaled(branch: str) -> str:
        return branch if residual is None else g.op("Mul", branch, residual)

    seq = g.constant("/seq_axis", i64(1))
    present: list[tuple[str, str]] = []
    for i in range(layers):
        layer = f"{p}layers.{i}"
        a = f"{layer}.self_attn"
        h = norm(x, f"{layer}.input_layernorm")
        past = (f"past_key.{i}", f"past_value.{i}") if kv else None
        kept = present if kv else None
        if i < layers - 1 or not options.last_position_only:
            x = g.op("Add", x, scaled(grouped_query_attention(
                g, ck, h, h, (cos, sin, cos, sin), mask, a, attention, past=past,
                present=kept)))
        else:  # the score reads the last position only
            h_last = g.op("Slice", h, last_start, last_end, seq)
            x = g.op("Slice", x, last_start, last_end, seq)
            rope = (cos, sin, cos_last, sin_last)
            x = g.op("Add", x, scaled(grouped_query_attention(
                g, ck, h, h_last, rope, mask_last, a, attention, past=past, present=kept)))
        mlp = gated_mlp(g, ck, norm(x, f"{layer}.post_attention_layernorm"), f"{layer}.mlp",
                        variant.mlp_activation, sizes=(s.hidden_size, s.intermediate_size))
        x = g.op("Add", x, scaled(mlp))
    logits, width = head(g, ck, norm(x, f"{p}norm"), s, options)
    g.output(logits, "logits")
    dims = ["batch_size", "sequence_length"]
    inputs: list[ValueInfo] = [(n, 7, dims) for n in ("input_ids", "attention_mask")]
    outputs: list[ValueInfo] = [("logits", 1, ["batch_size", width])]
    for i, (key, value) in enumerate(present):
        for part, name in (("key", key), ("value", value)):
            g.output(name, f"present_{part}.{i}")
            inputs.append((f"past_{part}.{i}", 1,
                           [1, s.num_kv_heads, 1, "past_length", s.head_dim]))
            outputs.append((f"present_{part}.{i}", 1,
                            ["batch_size", s.num_kv_heads, 1, "total_length", s.head_dim]))
    return g, inputs, outputs
