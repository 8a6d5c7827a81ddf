"""What a family module implements, and the options a build passes it.

A family module (``reranker/models/encoders/<name>.py`` or ``decoders/<name>.py``) defines::

    def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph: ...

and a decoder family also::

    def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape: ...

(:class:`~reranker.models.decoders.stack.DecoderShape`: sizes, window and the run-memory
estimate the decoder runner budgets with; the protocol is
:class:`~reranker.models.decoders.stack.DecoderFamilyModule`). ``graph`` reads
``checkpoint.config`` and the weights, raises :class:`~reranker.errors.ModelLoadError` for
anything it cannot express, and returns the writer and the graph's inputs and outputs
(``input_ids``, ``attention_mask`` and, where the model has token types, ``token_type_ids``
in; ``logits [batch, n]`` out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reranker.models.checkpoint import Checkpoint
from reranker.models.writer import GraphWriter, ValueInfo

__all__ = ["BuiltGraph", "FamilyModule", "GraphOptions"]

BuiltGraph = tuple[GraphWriter, list[ValueInfo], list[ValueInfo]]
"""A graph ready for :meth:`GraphWriter.save`: the writer, its inputs and its outputs."""


@dataclass(frozen=True)
class GraphOptions:
    """How a family module builds its graph (the table decides ``head_kind``)."""

    #: ``"cls"`` (encoders' classifier), ``"yes_no"`` (two token rows: ``[no, yes]``),
    #: ``"score"`` (a seq-cls score row), or a family's own head name.
    head_kind: str = "cls"
    #: ``False``: no head, ``logits`` is the last hidden state (loaders must refuse it; tests).
    head: bool = True
    #: Token ids a token-row head reads, in output order (``(no, yes)`` for yes/no heads).
    token_ids: tuple[int, ...] = ()
    #: Decoders: run the last layer for the last position only (``False``: for every position,
    #: as a causal-LM forward does; benchmarks compare the two).
    last_position_only: bool = True
    #: Decoders: project onto the whole vocabulary, then pick the rows (benchmarks only).
    vocabulary_head: bool = False
    #: Layerwise heads (MiniCPM layerwise): run this many layers, then the final norm and the
    #: head, as FlagEmbedding scores at its cutoff layer; ``None``: every layer.
    cutoff_layer: int | None = None
    #: Causal decoders: take ``past_key.<i>``/``past_value.<i>`` inputs (a prompt prefix's
    #: keys and values, run once per request) and output ``present_key.<i>``/
    #: ``present_value.<i>`` (:func:`reranker.models.decoders.stack.decoder_graph`).
    kv_cache: bool = False


class FamilyModule(Protocol):
    """A family module (decoders: also ``shape``)."""

    def graph(self, checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph: ...

