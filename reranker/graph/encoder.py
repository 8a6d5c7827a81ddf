"""The float32 ONNX graph of a BERT-family sequence classifier, from its checkpoint.

The graph matches transformers' ``BertForSequenceClassification``,
``XLMRobertaForSequenceClassification`` / ``RobertaForSequenceClassification`` and
``ElectraForSequenceClassification`` in eval mode: embeddings (word + position + token type,
ELECTRA's projection when its embedding size differs) and LayerNorm, then per layer
self-attention with an additive ``(1 - mask) * float32.min`` mask, output projection, residual
and LayerNorm, the feed-forward with the config's activation, residual and LayerNorm; then the
head on the first token (BERT: pooler + classifier; RoBERTa: dense, tanh, out_proj; ELECTRA:
dense, GELU, out_proj). Inputs and outputs are named and shaped like the Xenova exports:
``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model has token types) in,
``logits [batch, num_labels]`` out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.graph.checkpoint import Checkpoint
from reranker.graph.modernbert import modernbert_graph
from reranker.graph.writer import DerivedTensor, GraphWriter, ValueInfo

__all__ = ["ARCHITECTURES", "EncoderLayout", "encoder_graph", "encoder_layout"]

# architectures[0] of config.json -> (state-dict prefix, family)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "BertForSequenceClassification": ("bert", "bert"),
    "XLMRobertaForSequenceClassification": ("roberta", "roberta"),
    "RobertaForSequenceClassification": ("roberta", "roberta"),
    "ElectraForSequenceClassification": ("electra", "electra"),
    "ModernBertForSequenceClassification": ("model", "modernbert"),
}
_MODEL_TYPES = {
    "bert": "bert", "xlm-roberta": "roberta", "roberta": "roberta", "electra": "electra",
    "modernbert": "modernbert",
}
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass(frozen=True)
class EncoderLayout:
    """What the graph needs to know from ``config.json``, checked against the weights."""

    family: str  # "bert", "roberta" or "electra"
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


def supported() -> str:
    return ", ".join(ARCHITECTURES)


def model_family(checkpoint: Checkpoint) -> str:
    """``bert``, ``roberta``, ``electra`` or ``modernbert``; ``ModelLoadError`` otherwise."""
    config = checkpoint.config
    archs = config.get("architectures") or []
    model_type = config.get("model_type")
    named = next((a for a in archs if a in ARCHITECTURES), None)
    family = ARCHITECTURES[named][1] if named else None
    if family is None and not archs:
        family = _MODEL_TYPES.get(str(model_type))
    if family is None:
        raise ModelLoadError(
            f"cannot build an ONNX graph for architectures={archs} (model_type={model_type!r}) "
            f"from {checkpoint.source}; supported architectures: {supported()} (model_type "
            f"{', '.join(_MODEL_TYPES)}); or point the model at a repo with an ONNX export"
        )
    return family


def encoder_layout(checkpoint: Checkpoint) -> EncoderLayout:
    """Read and check a BERT-family architecture."""
    config = checkpoint.config
    family = model_family(checkpoint)
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ModelLoadError(
            f"position_embedding_type={position_type!r} in {checkpoint.source}: only 'absolute' "
            "is supported"
        )
    act = str(config.get("hidden_act", "gelu"))
    if act not in _ACTIVATIONS:
        raise ModelLoadError(
            f"hidden_act={act!r} in {checkpoint.source}: supported {', '.join(_ACTIVATIONS)}"
        )
    prefix = "roberta" if family == "roberta" else family
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads:
        raise ModelLoadError(f"hidden_size {hidden} is not a multiple of {heads} heads")
    types = checkpoint[f"{prefix}.embeddings.token_type_embeddings.weight"].shape[0]
    return EncoderLayout(
        family=family,
        prefix=prefix,
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        hidden_size=hidden,
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        hidden_act=act,
        pad_token_id=int(config.get("pad_token_id") or (1 if family == "roberta" else 0)),
        # RoBERTa models have one token type; the Xenova exports then take no token_type_ids.
        uses_token_types=types > 1,
    )


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _f32(value: float) -> np.ndarray:
    return np.array(value, dtype=np.float32)


class _Encoder:
    def __init__(self, g: GraphWriter, ck: Checkpoint, layout: EncoderLayout) -> None:
        self.g, self.ck, self.lay = g, ck, layout

    def linear(self, x: str, name: str) -> str:
        return self.g.linear(x, self.ck[f"{name}.weight"], self.ck[f"{name}.bias"], name)

    def norm(self, x: str, name: str) -> str:
        return self.g.layer_norm(
            x, self.ck[f"{name}.weight"], self.ck[f"{name}.bias"], name, self.lay.layer_norm_eps
        )

    def activation(self, x: str, kind: str) -> str:
        if kind == "relu":
            return self.g.op("Relu", x)
        return self.g.gelu(x, approximate=kind != "gelu")

    def embeddings(self) -> str:
        g, ck, lay = self.g, self.ck, self.lay
        p = f"{lay.prefix}.embeddings"
        words = g.weight(f"{p}.word_embeddings.weight", ck[f"{p}.word_embeddings.weight"])
        x = g.op("Gather", words, "input_ids")
        pos_table = g.weight(
            f"{p}.position_embeddings.weight", ck[f"{p}.position_embeddings.weight"]
        )
        type_table = ck[f"{p}.token_type_embeddings.weight"]
        if lay.family == "roberta":
            # HF's create_position_ids_from_input_ids: cumsum(not pad) * (not pad) + pad_token_id.
            pad = g.constant("/pad_token_id", np.array(lay.pad_token_id, np.int64))
            not_pad = g.op("Cast", g.op("Not", g.op("Equal", "input_ids", pad)), to=7)
            cumsum = g.op("CumSum", not_pad, g.constant("/axis1", np.array(1, np.int64)))
            positions = g.op("Gather", pos_table, g.op("Add", g.op("Mul", cumsum, not_pad), pad))
        else:
            seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
            zero = g.constant("/zero", np.array(0, np.int64))
            one = g.constant("/one", np.array(1, np.int64))
            positions = g.op("Gather", pos_table, g.op("Range", zero, seq_len, one))
        if lay.uses_token_types:
            table = g.weight(f"{p}.token_type_embeddings.weight", type_table)
            types = g.op("Gather", table, "token_type_ids")
        else:
            # Without token_type_ids the HF model adds row 0 of the token type table everywhere.
            row0 = DerivedTensor(type_table, type_table.shape[1:], lambda a: a[0])
            types = g.weight(f"{p}.token_type_embeddings.row0", row0)
        x = self.norm(g.op("Add", g.op("Add", x, positions), types), f"{p}.LayerNorm")
        if f"{lay.prefix}.embeddings_project.weight" in ck:
            x = self.linear(x, f"{lay.prefix}.embeddings_project")
        return x

    def attention(self, x: str, mask: str, layer: str) -> str:
        g, lay = self.g, self.lay
        split = g.constant(f"{layer}/split_heads", _i64(0, 0, lay.num_heads, lay.head_dim))

        def heads_of(part: str, perm: tuple[int, ...]) -> str:
            projected = self.linear(x, f"{layer}.attention.self.{part}")
            return g.op("Transpose", g.op("Reshape", projected, split), perm=list(perm))

        q = heads_of("query", (0, 2, 1, 3))
        k = heads_of("key", (0, 2, 3, 1))
        v = heads_of("value", (0, 2, 1, 3))
        scale = g.constant(f"{layer}/sqrt_head_dim", _f32(float(np.sqrt(lay.head_dim))))
        scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        merge = g.constant(f"{layer}/merge_heads", _i64(0, 0, lay.hidden_size))
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge)
        out = g.op("Add", self.linear(context, f"{layer}.attention.output.dense"), x)
        return self.norm(out, f"{layer}.attention.output.LayerNorm")

    def feed_forward(self, x: str, layer: str) -> str:
        h = self.linear(x, f"{layer}.intermediate.dense")
        h = self.activation(h, self.lay.hidden_act)
        out = self.g.op("Add", self.linear(h, f"{layer}.output.dense"), x)
        return self.norm(out, f"{layer}.output.LayerNorm")

    def head(self, x: str) -> str:
        g, lay = self.g, self.lay
        first = g.op("Gather", x, g.constant("/first_token", np.array(0, np.int64)), axis=1)
        if lay.family == "bert":
            if f"{lay.prefix}.pooler.dense.weight" not in self.ck:
                # transformers would fill a missing pooler with random weights: not a model.
                raise ModelLoadError(
                    f"{self.ck.source} is a BertForSequenceClassification without pooler "
                    "weights (bert.pooler.dense); its scores are not defined"
                )
            return self.linear(g.op("Tanh", self.linear(first, "bert.pooler.dense")), "classifier")
        hidden = self.linear(first, "classifier.dense")
        hidden = g.op("Tanh", hidden) if lay.family == "roberta" else (
            self.activation(hidden, "gelu"))
        return self.linear(hidden, "classifier.out_proj")

    def num_labels(self) -> int:
        name = "classifier.weight" if self.lay.family == "bert" else "classifier.out_proj.weight"
        return int(self.ck[name].shape[0])


def encoder_graph(
    checkpoint: Checkpoint, *, head: bool = True
) -> tuple[GraphWriter, list[ValueInfo], list[ValueInfo]]:
    """The graph of ``checkpoint`` and its inputs and outputs, ready for ``GraphWriter.save``.

    Args:
        head: ``False`` leaves the classification head out, so ``logits`` is the last hidden
            state ``[batch, seq, hidden]``: the broken export that loaders must reject (tests).

    Raises:
        ModelLoadError: an architecture, activation or weight the builder does not support.
    """
    from onnx import TensorProto

    if model_family(checkpoint) == "modernbert":
        return modernbert_graph(checkpoint, head=head)
    layout = encoder_layout(checkpoint)
    g = GraphWriter()
    enc = _Encoder(g, checkpoint, layout)
    # The node order of a torch export (mask[:, None, None, :], cast, (1 - m) * min) and the
    # Div by sqrt(head_dim) below are what ONNX Runtime's attention fusion matches, so the
    # 'fused' and 'int8' recipes fuse a built graph's attention as they do a Hub export's.
    mask = g.op("Unsqueeze", "attention_mask", g.constant("/mask_axis1", _i64(1)))
    mask = g.op("Unsqueeze", mask, g.constant("/mask_axis2", _i64(2)))
    mask = g.op("Cast", mask, to=TensorProto.FLOAT)
    one = g.constant("/mask_one", _f32(1.0))
    minimum = g.constant("/mask_min", _f32(float(np.finfo(np.float32).min)))
    mask = g.op("Mul", g.op("Sub", one, mask), minimum)

    x = enc.embeddings()
    for i in range(layout.num_layers):
        layer = f"{layout.prefix}.encoder.layer.{i}"
        x = enc.feed_forward(enc.attention(x, mask, layer), layer)
    g.output(enc.head(x) if head else x, "logits")

    names = ["input_ids", "attention_mask"]
    names += ["token_type_ids"] if layout.uses_token_types else []
    dims = ["batch_size", "sequence_length"]
    inputs: list[ValueInfo] = [(n, TensorProto.INT64, dims) for n in names]
    out_dims: list[Any] = ["batch_size", enc.num_labels()] if head else [*dims, layout.hidden_size]
    return g, inputs, [("logits", TensorProto.FLOAT, out_dims)]
