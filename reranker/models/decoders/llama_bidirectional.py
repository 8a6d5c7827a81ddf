"""Bidirectional Llama rerankers: ``LlamaBidirectionalForSequenceClassification``
(``nvidia/llama-nemotron-rerank-1b-v2``), as its ``llama_bidirectional_model.py`` computes.

The shared decoder body with attention in both directions (padding masked) and Llama 3's RoPE
scaling; the final-normed hidden states are averaged over the real tokens (``pooling:
"avg"``), multiplied by ``score.weight`` ``[1, hidden]`` and divided by ``temperature`` (folded
into the row): ``logits [batch, 1]``, the raw score. Every layer runs over every position (the
mean reads them all); the prompt is :mod:`reranker.models.prompts.nemotron`.
"""

from __future__ import annotations

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
from reranker.models.layers.heads import mean_pool
from reranker.models.writer import DerivedTensor, GraphWriter

__all__ = ["VARIANT", "graph", "shape"]

VARIANT = DecoderVariant(causal=False)


def _temperature(config: Mapping[str, Any], source: str) -> float:
    value = config.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ModelLoadError(f"config.json of {source}: temperature={value!r} is not a number "
                             "> 0")
    return float(value)


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a bidirectional Llama checkpoint (``ModelLoadError`` for settings it
    cannot express: biases, a pooling other than ``avg``)."""
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ModelLoadError(f"{source}: attention_bias / mlp_bias are on; the builder has no "
                             "Llama biases")
    if config.get("pooling", "avg") != "avg":
        raise ModelLoadError(f"{source}: pooling={config.get('pooling')!r}; the builder pools "
                             "the mean ('avg'), as the Nemotron reranker does")
    _temperature(config, source)
    architecture = architecture_of(config) or "LlamaBidirectionalForSequenceClassification"
    return read_decoder_shape(config, architecture, source)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph: bidirectional layers, mean pooling, the score row."""
    temperature = _temperature(checkpoint.config, checkpoint.source)

    def head(g: GraphWriter, ck: Checkpoint, hidden: str, shape: DecoderShape,
             opts: GraphOptions) -> tuple[str, int]:
        if "score.weight" not in ck or ck["score.weight"].shape != (1, shape.hidden_size):
            found = ck["score.weight"].shape if "score.weight" in ck else None
            raise ModelLoadError(f"{ck.source}: the reranker needs score.weight of shape "
                                 f"[1, {shape.hidden_size}]; found {found}")
        row = ck["score.weight"]
        rows_t = DerivedTensor(row, row.shape[::-1], lambda a: a.T / temperature)
        return g.op("MatMul", mean_pool(g, hidden), g.weight("head.rows_t", rows_t)), 1

    # The mean reads every position of the last layer.
    return decoder_graph(checkpoint, shape(checkpoint.config, checkpoint.source), VARIANT,
                         replace(options, last_position_only=False), head)
