"""zerank rerankers: ``Qwen3ForCausalLM`` (``zeroentropy/zerank-*``) scored by one ``Yes`` logit.

The Qwen3 body (:mod:`reranker.models.decoders.qwen3`) with the output row of ``Yes`` divided
by 5, the authors' temperature (``modeling_zeranker.py`` reports ``sigmoid(logit / 5)``): the
raw score is ``logit / 5``, so the library's sigmoid is the authors' score. The prompt is
:mod:`reranker.models.prompts.zerank`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.decoders import qwen3
from reranker.models.decoders.stack import DecoderShape, decoder_graph
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.heads import last_position, output_table
from reranker.models.prompts.zerank import TEMPERATURE
from reranker.models.writer import DerivedTensor, GraphWriter

__all__ = ["graph", "shape"]


def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape:
    """The sizes of a zerank checkpoint (a Qwen3 causal LM)."""
    return qwen3.shape(config, source)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The reranker graph: the ``Yes`` row over the temperature."""

    def head(g: GraphWriter, ck: Checkpoint, hidden: str, shape: DecoderShape,
             opts: GraphOptions) -> tuple[str, int]:
        table = output_table(ck, "model.embed_tokens.weight", shape.tie_word_embeddings)
        if len(opts.token_ids) != 1 or not 0 <= opts.token_ids[0] < table.shape[0]:
            raise ModelLoadError(f"{ck.source}: the Yes token {list(opts.token_ids)} is not a "
                                 f"row of the {table.shape[0]}-row output matrix")
        yes = opts.token_ids[0]
        row = DerivedTensor(table, (table.shape[1], 1),
                            lambda a: (a[yes] / TEMPERATURE)[:, None])
        return g.op("MatMul", last_position(g, hidden), g.weight("head.rows_t", row)), 1

    return decoder_graph(checkpoint, shape(checkpoint.config, checkpoint.source), qwen3.VARIANT,
                         options, head)
