"""``ElectraForSequenceClassification``: BERT with an embedding projection when the embedding
size differs from the hidden size, and a dense + GELU + out_proj head (no pooler)."""

from __future__ import annotations

from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders.bert import (
    EncoderLayout,
    absolute_positions,
    encoder_graph,
    encoder_layout,
)
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.heads import classifier_head, first_token
from reranker.models.writer import GraphWriter

__all__ = ["graph"]


def electra_head(g: GraphWriter, ck: Checkpoint, x: str, lay: EncoderLayout) -> tuple[str, int]:
    """``out_proj(gelu(dense(x[:, 0])))``."""
    logits = classifier_head(g, ck, first_token(g, x), "gelu")
    return logits, int(ck["classifier.out_proj.weight"].shape[0])


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of an ELECTRA sequence classifier (its embedding projection is read by the
    shared embeddings when the checkpoint has one)."""
    lay = encoder_layout(checkpoint, "electra")
    return encoder_graph(checkpoint, options, lay, absolute_positions, electra_head)
