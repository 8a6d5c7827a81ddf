"""``BertForSequenceClassification``, and the encoder body its relatives reuse.

The graph matches transformers in eval mode: embeddings (word + position + token type) and
LayerNorm, then per layer self-attention with the padding mask, output projection, residual
and LayerNorm, the feed-forward with the config's activation, residual and LayerNorm; then the
head on the first token (pooler + classifier). RoBERTa / XLM-R (:mod:`.xlm_roberta`) change
the position ids and the head, ELECTRA (:mod:`.electra`) adds an embedding projection and its
head. Inputs and outputs are named and shaped like the Xenova exports: ``input_ids``,
``attention_mask`` (and ``token_type_ids`` where the model has token types) in,
``logits [batch, num_labels]`` out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.activations import check_activation
from reranker.models.layers.attention import attend, padding_mask
from reranker.models.layers.heads import first_token, pooler_classifier
from reranker.models.layers.linear import linear
from reranker.models.layers.mlp import dense_mlp
from reranker.models.layers.norms import layer_norm
from reranker.models.sizes import config_int, layer_count
from reranker.models.writer import DerivedTensor, GraphWriter, ValueInfo, i64

__all__ = ["EncoderLayout", "encoder_graph", "encoder_layout", "graph"]

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

Positions = Callable[[GraphWriter, str, "EncoderLayout"], str]
Head = Callable[[GraphWriter, Checkpoint, str, "EncoderLayout"], tuple[str, int]]


@dataclass(frozen=True)
class EncoderLayout:
    """What the graph needs to know from ``config.json``, checked against the weights."""

    prefix: str
    num_layers: int
    num_heads: int
    hidden_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int
    uses_token_types: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def encoder_layout(checkpoint: Checkpoint, prefix: str, default_pad: int = 0) -> EncoderLayout:
    """Read a BERT-style config and check it against the weights under ``prefix``."""
    config, source = checkpoint.config, checkpoint.source
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ModelLoadError(
            f"position_embedding_type={position_type!r} in {source}: only 'absolute' "
            "is supported"
        )
    act = check_activation(config.get("hidden_act", "gelu"), "hidden_act", source, _ACTIVATIONS)
    hidden = config_int(config, "hidden_size", source)
    heads = config_int(config, "num_attention_heads", source)
    if hidden % heads:
        raise ModelLoadError(f"hidden_size {hidden} is not a multiple of {heads} heads")
    types = checkpoint[f"{prefix}.embeddings.token_type_embeddings.weight"].shape[0]
    pad = config.get("pad_token_id")
    return EncoderLayout(
        prefix=prefix,
        num_layers=layer_count(checkpoint, f"{prefix}.encoder.layer."),
        num_heads=heads,
        hidden_size=hidden,
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        hidden_act=act,
        pad_token_id=int(pad) if isinstance(pad, int) and pad else default_pad,
        # RoBERTa models have one token type; the Xenova exports then take no token_type_ids.
        uses_token_types=types > 1,
    )


def absolute_positions(g: GraphWriter, table: str, lay: EncoderLayout) -> str:
    """Position ``i`` for token ``i`` (BERT, ELECTRA)."""
    seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    zero = g.constant("/zero", np.array(0, np.int64))
    one = g.constant("/one", np.array(1, np.int64))
    return g.op("Gather", table, g.op("Range", zero, seq_len, one))


def embeddings(g: GraphWriter, ck: Checkpoint, lay: EncoderLayout, positions: Positions) -> str:
    """Word + position + token-type embeddings, LayerNorm (and ELECTRA's projection)."""
    p = f"{lay.prefix}.embeddings"
    words = g.weight(f"{p}.word_embeddings.weight", ck[f"{p}.word_embeddings.weight"])
    x = g.op("Gather", words, "input_ids")
    pos_table = g.weight(f"{p}.position_embeddings.weight", ck[f"{p}.position_embeddings.weight"])
    type_table = ck[f"{p}.token_type_embeddings.weight"]
    if lay.uses_token_types:
        types = g.op("Gather", g.weight(f"{p}.token_type_embeddings.weight", type_table),
                     "token_type_ids")
    else:
        # Without token_type_ids the HF model adds row 0 of the token type table everywhere.
        row0 = DerivedTensor(type_table, type_table.shape[1:], lambda a: a[0])
        types = g.weight(f"{p}.token_type_embeddings.row0", row0)
    x = g.op("Add", g.op("Add", x, positions(g, pos_table, lay)), types)
    x = layer_norm(g, ck, x, f"{p}.LayerNorm", lay.layer_norm_eps)
    if f"{lay.prefix}.embeddings_project.weight" in ck:
        x = linear(g, ck, x, f"{lay.prefix}.embeddings_project")
    return x


def attention_block(g: GraphWriter, ck: Checkpoint, x: str, mask: str, layer: str,
                    lay: EncoderLayout) -> str:
    """Post-norm self-attention: ``LayerNorm(x + out(attention(x)))``."""
    split = g.constant(f"{layer}/split_heads", i64(0, 0, lay.num_heads, lay.head_dim))

    def heads_of(part: str, perm: tuple[int, ...]) -> str:
        projected = linear(g, ck, x, f"{layer}.attention.self.{part}")
        return g.op("Transpose", g.op("Reshape", projected, split), perm=list(perm))

    q = heads_of("query", (0, 2, 1, 3))
    k = heads_of("key", (0, 2, 3, 1))
    v = heads_of("value", (0, 2, 1, 3))
    context = attend(g, q, k, v, mask, float(np.sqrt(lay.head_dim)), divide=True, tag=layer)
    merge = g.constant(f"{layer}/merge_heads", i64(0, 0, lay.hidden_size))
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge)
    out = g.op("Add", linear(g, ck, context, f"{layer}.attention.output.dense"), x)
    return layer_norm(g, ck, out, f"{layer}.attention.output.LayerNorm", lay.layer_norm_eps)


def feed_forward_block(g: GraphWriter, ck: Checkpoint, x: str, layer: str,
                       lay: EncoderLayout) -> str:
    """Post-norm feed-forward: ``LayerNorm(x + output(act(intermediate(x))))``."""
    h = dense_mlp(g, ck, x, f"{layer}.intermediate.dense", f"{layer}.output.dense",
                  lay.hidden_act)
    return layer_norm(g, ck, g.op("Add", h, x), f"{layer}.output.LayerNorm", lay.layer_norm_eps)


def encoder_graph(ck: Checkpoint, options: GraphOptions, lay: EncoderLayout,
                  positions: Positions, head: Head) -> BuiltGraph:
    """The BERT-style encoder with ``positions`` and ``head`` (``head`` returns the logits
    value and the number of labels)."""
    g = GraphWriter()
    mask = padding_mask(g)
    x = embeddings(g, ck, lay, positions)
    for i in range(lay.num_layers):
        layer = f"{lay.prefix}.encoder.layer.{i}"
        x = feed_forward_block(g, ck, attention_block(g, ck, x, mask, layer, lay), layer, lay)
    out_dims: list[Any]
    dims = ["batch_size", "sequence_length"]
    if options.head:
        logits, labels = head(g, ck, x, lay)
        out_dims = ["batch_size", labels]
    else:
        logits, out_dims = x, [*dims, lay.hidden_size]
    g.output(logits, "logits")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if lay.uses_token_types else [])
    inputs: list[ValueInfo] = [(n, 7, dims) for n in names]  # 7: onnx.TensorProto.INT64
    return g, inputs, [("logits", 1, out_dims)]


def bert_head(g: GraphWriter, ck: Checkpoint, x: str, lay: EncoderLayout) -> tuple[str, int]:
    """Pooler (dense + tanh on the first token) and classifier."""
    if f"{lay.prefix}.pooler.dense.weight" not in ck:
        # transformers would fill a missing pooler with random weights: not a model.
        raise ModelLoadError(
            f"{ck.source} is a BertForSequenceClassification without pooler weights "
            "(bert.pooler.dense); its scores are not defined"
        )
    logits = pooler_classifier(g, ck, first_token(g, x), f"{lay.prefix}.pooler.dense")
    return logits, int(ck["classifier.weight"].shape[0])


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of a BERT sequence classifier (the family module's entry point)."""
    lay = encoder_layout(checkpoint, "bert")
    return encoder_graph(checkpoint, options, lay, absolute_positions, bert_head)

