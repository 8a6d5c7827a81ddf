"""Gemma rerankers: ``GemmaForCausalLM`` scored as FlagEmbedding's ``FlagLLMReranker``
(``BAAI/bge-reranker-v2-gemma``).

Gemma is Llama with RMSNorm weights applied as ``1 + w``, embeddings times
``sqrt(hidden_size)``, a GELU (tanh approximation) gated MLP and tied embeddings; ``head_dim``
comes from the config. ``hidden_act: "gelu"`` in older configs means the tanh form, as
transformers reads it. The head is the output row of ``Yes`` (``logits [batch, 1]``: the raw
``Yes`` logit); the prompt is :mod:`reranker.models.prompts.bge_gemma`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reranker.errors import ModelLoadError
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

VARIANT = DecoderVariant(norm_unit_offset=True, embedding_scale=True,
                         mlp_activation="gelu_pytorch_tanh")
_TANH_GELU = ("gelu_pytorch_tanh", "gelu_new", "gelu")


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a Gemma checkpoint (``ModelLoadError`` for settings it cannot express)."""
    if config.get("attention_bias"):
        raise ModelLoadError(f"{source}: attention_bias is on; Gemma attention has no biases")
    act = config.get("hidden_activation") or config.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in _TANH_GELU:
        raise ModelLoadError(f"{source}: hidden_activation={act!r}; Gemma rerankers use the "
                             f"tanh GELU ({', '.join(_TANH_GELU)})")
    # GemmaConfig ties the embeddings unless told otherwise.
    config = {**config, "tie_word_embeddings": config.get("tie_word_embeddings", True)}
    return read_decoder_shape(config, architecture_of(config) or "GemmaForCausalLM", source)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph of a Gemma checkpoint: the ``Yes`` row."""
    return decoder_graph(checkpoint, shape(checkpoint.config, checkpoint.source), VARIANT,
                         options, token_rows_head)
