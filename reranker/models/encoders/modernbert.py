"""The float32 ONNX graph of ``ModernBertForSequenceClassification`` (e.g. gte-reranker-modernbert).

As transformers' eager attention computes it: token embeddings and LayerNorm (no positions, no
token types); per layer a pre-norm block (layer 0 has no attention norm) with one fused QKV
projection, rotary position embeddings (``rotate_half`` convention, a global and a local theta),
softmax attention that is global every ``global_attn_every_n_layers`` layers and otherwise
limited to keys within ``local_attention // 2`` positions, and a GeGLU feed-forward
(``Wo(act(input) * gate)``); a final norm; then CLS or masked-mean pooling, the prediction head
(dense, activation, norm) and the classifier. Biases exist where the config says
(``attention_bias``, ``mlp_bias``, ``norm_bias``, ``classifier_bias``). Inputs ``input_ids`` and
``attention_mask``, output ``logits [batch, num_labels]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.activations import activation, check_activation
from reranker.models.layers.attention import attend, padding_mask, window_mask
from reranker.models.layers.heads import first_token, mean_pool
from reranker.models.layers.linear import linear
from reranker.models.layers.mlp import fused_glu_mlp
from reranker.models.layers.norms import layer_norm
from reranker.models.layers.rope import inverse_frequencies, rope_cos_sin, rotate_half
from reranker.models.sizes import config_int, config_mapping, layer_count
from reranker.models.writer import GraphWriter, ValueInfo, i64

__all__ = ["graph"]


def _rope_theta(config: Mapping[str, Any], kind: str, source: str) -> float:
    params = config_mapping(config_mapping(config, "rope_parameters", source), kind, source)
    if "rope_theta" in params:
        if params.get("rope_type", "default") != "default":
            raise ModelLoadError(f"rope_type {params['rope_type']!r} is not supported")
        return float(params["rope_theta"])
    legacy = "global_rope_theta" if kind == "full_attention" else "local_rope_theta"
    return float(config.get(legacy, 160_000.0 if kind == "full_attention" else 10_000.0))


def _layer_types(config: Mapping[str, Any], layers: int, source: str) -> list[str]:
    types = config.get("layer_types")
    if types:
        if not isinstance(types, list) or len(types) != layers or any(
                t not in ("full_attention", "sliding_attention") for t in types):
            raise ModelLoadError(
                f"config.json of {source}: layer_types must list {layers} of 'full_attention' "
                "or 'sliding_attention'")
        return [str(t) for t in types]
    every = config_int(config, "global_attn_every_n_layers", source, default=3)
    return ["sliding_attention" if i % every else "full_attention" for i in range(layers)]


class _ModernBert:
    def __init__(self, g: GraphWriter, ck: Checkpoint) -> None:
        self.g, self.ck = g, ck
        c = ck.config
        self.config = c
        self.hidden = config_int(c, "hidden_size", ck.source)
        self.heads = config_int(c, "num_attention_heads", ck.source)
        if self.hidden % self.heads:
            raise ModelLoadError(f"hidden_size {self.hidden} is not a multiple of {self.heads} "
                                 "heads")
        self.head_dim = self.hidden // self.heads
        self.eps = float(c.get("norm_eps", 1e-5))
        self.layers = layer_count(ck, "model.layers.")
        self.hidden_act = check_activation(c.get("hidden_activation", "gelu"),
                                           "hidden_activation", ck.source)
        self.classifier_act = check_activation(c.get("classifier_activation", "gelu"),
                                               "classifier_activation", ck.source)
        if c.get("classifier_pooling", "cls") not in ("cls", "mean"):
            raise ModelLoadError(f"classifier_pooling={c.get('classifier_pooling')!r}")

    def norm(self, x: str, name: str) -> str:
        if f"{name}.weight" not in self.ck:  # layer 0's attn_norm is an Identity
            return x
        return layer_norm(self.g, self.ck, x, name, self.eps, bias=None)

    def rotary(self, positions: str, theta: float, tag: str) -> tuple[str, str]:
        """cos and sin ``[seq, head_dim]``, computed in float32 as transformers does."""
        inv_freq = inverse_frequencies(self.head_dim, theta, float32_math=True)
        return rope_cos_sin(self.g, positions, inv_freq, tag)

    def attention(self, x: str, mask: str, rope: tuple[str, str], layer: str) -> str:
        g, d = self.g, self.head_dim
        qkv = linear(g, self.ck, x, f"{layer}.attn.Wqkv", "optional")
        shape = g.constant(f"{layer}/qkv_shape", i64(0, 0, 3, self.heads, d))
        # [batch, seq, 3, heads, head_dim] -> [3, batch, heads, seq, head_dim]
        qkv = g.op("Transpose", g.op("Reshape", qkv, shape), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, g.constant(f"{layer}/i{i}", np.array(i, np.int64)), axis=0)
                   for i in range(3))  # fmt: skip
        q, k = rotate_half(g, q, *rope, d), rotate_half(g, k, *rope, d)
        k_t = g.op("Transpose", k, perm=[0, 1, 3, 2])
        context = attend(g, q, k_t, v, mask, d**-0.5, tag=layer)
        context = g.op("Transpose", context, perm=[0, 2, 1, 3])
        merge = g.constant(f"{layer}/merge", i64(0, 0, self.hidden))
        return linear(g, self.ck, g.op("Reshape", context, merge), f"{layer}.attn.Wo", "optional")

    def head(self, x: str) -> str:
        g, ck = self.g, self.ck
        pooled = (first_token(g, x) if self.config.get("classifier_pooling", "cls") == "cls"
                  else mean_pool(g, x))
        hidden = activation(g, linear(g, ck, pooled, "head.dense", "optional"),
                            self.classifier_act)
        return linear(g, ck, self.norm(hidden, "head.norm"), "classifier", "optional")


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of a ModernBERT sequence classifier; see the module docstring."""
    g = GraphWriter()
    m = _ModernBert(g, checkpoint)
    seq = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    positions = g.op("Range", g.constant("/zero", np.array(0, np.int64)), seq,
                     g.constant("/one", np.array(1, np.int64)))  # fmt: skip
    positions_f = g.op("Cast", positions, to=1)
    global_mask = padding_mask(g)
    half = config_int(m.config, "local_attention", checkpoint.source, default=128) // 2
    local_mask = window_mask(g, global_mask, positions, half)
    ropes = {kind: m.rotary(positions_f, _rope_theta(m.config, kind, checkpoint.source), kind)
             for kind in ("full_attention", "sliding_attention")}  # fmt: skip
    words = checkpoint["model.embeddings.tok_embeddings.weight"]
    x = g.op("Gather", g.weight("model.embeddings.tok_embeddings.weight", words), "input_ids")
    x = m.norm(x, "model.embeddings.norm")
    for i, kind in enumerate(_layer_types(m.config, m.layers, checkpoint.source)):
        layer = f"model.layers.{i}"
        mask = global_mask if kind == "full_attention" else local_mask
        x = g.op("Add", x, m.attention(m.norm(x, f"{layer}.attn_norm"), mask, ropes[kind], layer))
        h = fused_glu_mlp(g, checkpoint, m.norm(x, f"{layer}.mlp_norm"), f"{layer}.mlp.Wi",
                          f"{layer}.mlp.Wo", m.hidden_act)
        x = g.op("Add", x, h)
    x = m.norm(x, "model.final_norm")
    g.output(m.head(x) if options.head else x, "logits")
    dims = ["batch_size", "sequence_length"]
    inputs: list[ValueInfo] = [(n, 7, dims) for n in ("input_ids", "attention_mask")]
    labels = int(checkpoint["classifier.weight"].shape[0])
    out_dims: list[Any] = ["batch_size", labels] if options.head else [*dims, m.hidden]
    return g, inputs, [("logits", 1, out_dims)]
