"""``XLMRobertaForSequenceClassification`` / ``RobertaForSequenceClassification``: BERT with
position ids counted after the padding id and a dense + tanh + out_proj head."""

from __future__ import annotations

import numpy as np

from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders.bert import EncoderLayout, encoder_graph, encoder_layout
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.heads import classifier_head, first_token
from reranker.models.writer import GraphWriter

__all__ = ["graph"]


def positions_after_padding(g: GraphWriter, table: str, lay: EncoderLayout) -> str:
    """transformers' ``create_position_ids_from_input_ids``:
    ``cumsum(not pad) * (not pad) + pad_token_id``."""
    pad = g.constant("/pad_token_id", np.array(lay.pad_token_id, np.int64))
    not_pad = g.op("Cast", g.op("Not", g.op("Equal", "input_ids", pad)), to=7)
    cumsum = g.op("CumSum", not_pad, g.constant("/axis1", np.array(1, np.int64)))
    return g.op("Gather", table, g.op("Add", g.op("Mul", cumsum, not_pad), pad))


def roberta_head(g: GraphWriter, ck: Checkpoint, x: str, lay: EncoderLayout) -> tuple[str, int]:
    """``out_proj(tanh(dense(x[:, 0])))``."""
    logits = classifier_head(g, ck, first_token(g, x), "tanh")
    return logits, int(ck["classifier.out_proj.weight"].shape[0])


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of an (XLM-)RoBERTa sequence classifier."""
    lay = encoder_layout(checkpoint, "roberta", default_pad=1)
    return encoder_graph(checkpoint, options, lay, positions_after_padding, roberta_head)
