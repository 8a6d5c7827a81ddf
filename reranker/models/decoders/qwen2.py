"""Qwen2 rerankers: ``Qwen2ForCausalLM`` scored as mixedbread's mxbai-rerank v2.

Qwen2 is Qwen3 (:mod:`reranker.models.decoders.qwen3`) without the q/k norms and with biases
on the q, k and v projections; ``head_dim`` is ``hidden_size / num_attention_heads``. The head
is the two rows of the output matrix for ``0`` and ``1`` (``logits [batch, 2]``, so
``logit[1] - logit[0]`` is mxbai v2's score); the prompt is
:mod:`reranker.models.prompts.mxbai_v2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reranker.models.architectures import architecture_of
from reranker.models.checkpoint import Checkpoint
from reranker.models.decoders.stack import (
    DecoderShape,
    DecoderVariant,
    decoder_graph,
    read_decoder_shape,
    token_rows_head,
)
from reranker.models.family import BuiltGraph, GraphOptions

__all__ = ["VARIANT", "graph", "shape"]

VARIANT = DecoderVariant(qkv_bias="required")


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a Qwen2 checkpoint (``ModelLoadError`` for settings it cannot express)."""
    return read_decoder_shape(config, architecture_of(config) or "Qwen2ForCausalLM", source)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph of a Qwen2 checkpoint: the ``(0, 1)`` token rows."""
    return decoder_graph(checkpoint, shape(checkpoint.config, checkpoint.source), VARIANT,
                         options, token_rows_head)
