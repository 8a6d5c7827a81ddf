"""MiniCPM layerwise rerankers: ``LayerWiseMiniCPMForCausalLM``
(``BAAI/bge-reranker-v2-minicpm-layerwise``), scored as FlagEmbedding's
``LayerWiseFlagLLMReranker``.

MiniCPM is Llama with embeddings times ``scale_emb`` and every attention and MLP output times
``scale_depth / sqrt(num_hidden_layers)`` before it joins the residual stream. The reranker has
one score row per layer from ``start_layer`` to ``num_hidden_layers``
(``lm_head.{k - start_layer}.linear_head.weight``, ``head_type: "simple"``): with cutoff layer
``k`` the graph runs the first ``k`` layers only (the decoder body's ``cutoff_layer`` hook)
and scores the final norm of their output at the last position. The cutoff is the model
option ``cutoff_layer``; FlagEmbedding's default (``cutoff_layers=None``) is the last layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.architectures import architecture_of
from reranker.models.checkpoint import Checkpoint
from reranker.models.decoders.stack import (
    DecoderShape,
    DecoderVariant,
    decoder_graph,
    read_decoder_shape,
)
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.heads import last_position, score_row
from reranker.models.sizes import config_int
from reranker.models.writer import GraphWriter

__all__ = ["cutoff_range", "graph", "shape", "variant"]


def _number(config: Mapping[str, Any], key: str, source: str) -> float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e4:
        raise ModelLoadError(f"config.json of {source}: {key}={value!r} is not a number in "
                             "(0, 10000)")
    return float(value)


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a layerwise MiniCPM checkpoint (``ModelLoadError`` for what it cannot
    express: attention biases, head types other than ``simple`` with one head per layer)."""
    if config.get("attention_bias"):
        raise ModelLoadError(f"{source}: attention_bias is on; the builder has no MiniCPM "
                             "attention biases")
    if config.get("head_type") != "simple" or config.get("head_multi") is not True:
        raise ModelLoadError(
            f"{source}: head_type={config.get('head_type')!r}, head_multi="
            f"{config.get('head_multi')!r}; the layerwise reranker has head_type 'simple' with "
            "one head per layer (head_multi true)")
    architecture = architecture_of(config) or "LayerWiseMiniCPMForCausalLM"
    return read_decoder_shape(config, architecture, source)


def variant(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderVariant:
    layers = config_int(config, "num_hidden_layers", source)
    return DecoderVariant(
        embedding_multiplier=_number(config, "scale_emb", source),
        residual_multiplier=_number(config, "scale_depth", source) / math.sqrt(layers))


def cutoff_range(config: Mapping[str, Any], source: str = "checkpoint") -> tuple[int, int]:
    """The cutoff layers the checkpoint has heads for: ``(start_layer, num_hidden_layers)``."""
    layers = config_int(config, "num_hidden_layers", source)
    start = config_int(config, "start_layer", source, minimum=0, maximum=layers)
    return start, layers


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph at ``options.cutoff_layer`` (default the last layer)."""
    config, source = checkpoint.config, checkpoint.source
    s = shape(config, source)
    start, layers = cutoff_range(config, source)
    cutoff = layers if options.cutoff_layer is None else options.cutoff_layer
    if not start <= cutoff <= layers:
        raise ModelLoadError(f"cutoff_layer {cutoff} is outside [{start}, {layers}], the layers "
                             f"{source} has heads for")

    def head(g: GraphWriter, ck: Checkpoint, hidden: str, shape: DecoderShape,
             opts: GraphOptions) -> tuple[str, int]:
        row = f"lm_head.{cutoff - start}.linear_head.weight"
        return score_row(g, ck, last_position(g, hidden), name=row), 1

    return decoder_graph(checkpoint, s, variant(config, source),
                         replace(options, cutoff_layer=cutoff), head)
