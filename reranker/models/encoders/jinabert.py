"""``JinaBertForSequenceClassification`` (jina-reranker-v1-turbo-en / -tiny-en, custom code
from ``jinaai/jina-bert-implementation``): BERT with ALiBi instead of a position table and a
gated feed-forward.

The differences from :mod:`.bert`: no position embeddings (``position_embedding_type:
"alibi"``); every layer's scores get ``-slope_h * |i - j|``
(:func:`~reranker.models.layers.position_bias.alibi_bias`); the feed-forward is
``LN(x + wo(act(g[..., :I]) * g[..., I:]))`` with ``g = mlp.gated_layers(x)`` (no bias, the
activation on the first half; ``feed_forward_type`` ``geglu``: GELU, ``reglu``: ReLU) and its
own post-norm ``mlp.layernorm``. Embeddings (word + token type), self-attention output, pooler
and classifier are BERT's, under ``bert.``.
"""

from __future__ import annotations

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders.bert import (
    EncoderLayout,
    bert_head,
    encoder_graph,
    encoder_layout,
)
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.activations import activation
from reranker.models.layers.linear import linear
from reranker.models.layers.norms import layer_norm
from reranker.models.layers.position_bias import alibi_bias
from reranker.models.sizes import config_int
from reranker.models.writer import GraphWriter, i64

__all__ = ["graph"]

_FEED_FORWARD = {"geglu": "gelu", "reglu": "relu"}


def glu_block(g: GraphWriter, ck: Checkpoint, x: str, layer: str, lay: EncoderLayout) -> str:
    """``LN(x + wo(act(gated[..., :I]) * gated[..., I:]))``."""
    inter = config_int(ck.config, "intermediate_size", ck.source)
    rows = ck[f"{layer}.mlp.gated_layers.weight"].shape[0]
    if rows != 2 * inter:
        raise ModelLoadError(f"{ck.source}: {layer}.mlp.gated_layers has {rows} rows; "
                             f"2 x intermediate_size = {2 * inter} expected")
    act = _FEED_FORWARD[str(ck.config.get("feed_forward_type"))]
    gated = linear(g, ck, x, f"{layer}.mlp.gated_layers", "none")
    first, second = g.ops("Split", [gated, g.constant(f"/glu_halves{inter}", i64(inter, inter))],
                          2, axis=-1)
    h = linear(g, ck, g.op("Mul", activation(g, first, act), second), f"{layer}.mlp.wo")
    return layer_norm(g, ck, g.op("Add", h, x), f"{layer}.mlp.layernorm", lay.layer_norm_eps)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of a JinaBERT reranker."""
    kind = checkpoint.config.get("feed_forward_type")
    if kind not in _FEED_FORWARD:
        raise ModelLoadError(f"feed_forward_type={kind!r} in {checkpoint.source}: supported "
                             f"{', '.join(_FEED_FORWARD)}")
    lay = encoder_layout(checkpoint, "bert", position_type="alibi")
    return encoder_graph(checkpoint, options, lay, None, bert_head, feed_forward=glu_block,
                         position_bias=lambda g, lay: alibi_bias(g, lay.num_heads))
