"""Qwen3 rerankers: ``Qwen3ForCausalLM`` (Qwen3-Reranker, yes/no rows) and its seq-cls
conversion ``Qwen3ForSequenceClassification`` (one score row).

Qwen3 is the shared decoder body (:mod:`reranker.models.decoders.stack`) with an RMSNorm over
every query and key head (``q_norm``, ``k_norm``), no attention biases, SwiGLU, causal
attention. The yes/no head is the two rows of the output matrix for ``no`` and ``yes``
(``logits [batch, 2]``, so ``logit[1] - logit[0]`` is the log-odds of ``yes``); the prompt is
:mod:`reranker.models.prompts.qwen3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.decoders.stack import (
    DecoderShape,
    DecoderVariant,
    decoder_graph,
    read_decoder_shape,
    score_row_head,
    token_rows_head,
)
from reranker.models.family import BuiltGraph, GraphOptions

__all__ = ["VARIANT", "graph", "shape"]

VARIANT = DecoderVariant(qk_norm=True)


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a Qwen3 checkpoint (``ModelLoadError`` for settings it cannot express)."""
    if config.get("attention_bias"):
        raise ModelLoadError("attention_bias is on; Qwen3 attention has no biases")
    archs = config.get("architectures") or ["Qwen3ForCausalLM"]
    return read_decoder_shape(config, str(archs[0]), source)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph of a Qwen3 checkpoint with the table's head."""
    head = score_row_head if options.head_kind == "score" else token_rows_head
    return decoder_graph(checkpoint, shape(checkpoint.config, checkpoint.source), VARIANT,
                         options, head)
