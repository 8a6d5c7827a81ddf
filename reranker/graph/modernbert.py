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

from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.graph.checkpoint import Checkpoint
from reranker.graph.writer import GraphWriter, Tensor, ValueInfo

__all__ = ["modernbert_graph"]

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")


def _f32(value: float) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _rope_theta(config: dict[str, Any], kind: str) -> float:
    params = (config.get("rope_parameters") or {}).get(kind) or {}
    if "rope_theta" in params:
        if params.get("rope_type", "default") != "default":
            raise ModelLoadError(f"rope_type {params['rope_type']!r} is not supported")
        return float(params["rope_theta"])
    legacy = "global_rope_theta" if kind == "full_attention" else "local_rope_theta"
    return float(config.get(legacy, 160_000.0 if kind == "full_attention" else 10_000.0))


def _layer_types(config: dict[str, Any], layers: int) -> list[str]:
    types = config.get("layer_types")
    if types:
        return [str(t) for t in types]
    every = int(config.get("global_attn_every_n_layers", 3))
    return ["sliding_attention" if i % every else "full_attention" for i in range(layers)]


class _ModernBert:
    def __init__(self, g: GraphWriter, ck: Checkpoint) -> None:
        self.g, self.ck = g, ck
        c = dict(ck.config)
        self.config = c
        self.hidden = int(c["hidden_size"])
        self.heads = int(c["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(c.get("norm_eps", 1e-5))
        self.layers = int(c["num_hidden_layers"])
        for key, default in (("hidden_activation", "gelu"), ("classifier_activation", "gelu")):
            if str(c.get(key, default)) not in _ACTIVATIONS:
                raise ModelLoadError(f"{key}={c.get(key)!r}: supported {', '.join(_ACTIVATIONS)}")
        if c.get("classifier_pooling", "cls") not in ("cls", "mean"):
            raise ModelLoadError(f"classifier_pooling={c.get('classifier_pooling')!r}")

    def optional(self, name: str) -> Tensor | None:
        return self.ck[name] if name in self.ck else None

    def linear(self, x: str, name: str) -> str:
        return self.g.linear(x, self.ck[f"{name}.weight"], self.optional(f"{name}.bias"), name)

    def norm(self, x: str, name: str) -> str:
        if f"{name}.weight" not in self.ck:  # layer 0's attn_norm is an Identity
            return x
        return self.g.layer_norm(
            x, self.ck[f"{name}.weight"], self.optional(f"{name}.bias"), name, self.eps
        )

    def activation(self, x: str, kind: str) -> str:
        if kind == "relu":
            return self.g.op("Relu", x)
        if kind == "silu":
            return self.g.op("Mul", x, self.g.op("Sigmoid", x))
        return self.g.gelu(x, approximate=kind != "gelu")

    def rotary(self, positions: str, theta: float, tag: str) -> tuple[str, str]:
        """cos and sin ``[seq, head_dim]``, computed in float32 as transformers does."""
        g, d = self.g, self.head_dim
        inv_freq = (1.0 / (theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d)))
        inv = g.constant(f"/{tag}/inv_freq", inv_freq.astype(np.float32))
        freqs = g.op("Mul", g.op("Unsqueeze", positions, g.constant(f"/{tag}/ax", _i64(1))), inv)
        emb = g.op("Concat", freqs, freqs, axis=-1)
        return g.op("Cos", emb), g.op("Sin", emb)

    def rotate(self, x: str, cos: str, sin: str) -> str:
        g = self.g
        halves = g.constant(f"/halves{self.head_dim}", _i64(self.head_dim // 2, self.head_dim // 2))
        first, second = g.ops("Split", [x, halves], 2, axis=-1)
        rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))

    def attention(self, x: str, mask: str, rope: tuple[str, str], layer: str) -> str:
        g = self.g
        qkv = self.linear(x, f"{layer}.attn.Wqkv")
        shape = g.constant(f"{layer}/qkv_shape", _i64(0, 0, 3, self.heads, self.head_dim))
        # [batch, seq, 3, heads, head_dim] -> [3, batch, heads, seq, head_dim]
        qkv = g.op("Transpose", g.op("Reshape", qkv, shape), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, g.constant(f"{layer}/i{i}", np.array(i, np.int64)), axis=0)
                   for i in range(3))  # fmt: skip
        q, k = self.rotate(q, *rope), self.rotate(k, *rope)
        scale = g.constant(f"{layer}/scale", _f32(self.head_dim**-0.5))
        scores = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale)
        probs = g.op("Softmax", g.op("Add", scores, mask), axis=-1)
        context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
        merge = g.constant(f"{layer}/merge", _i64(0, 0, self.hidden))
        return self.linear(g.op("Reshape", context, merge), f"{layer}.attn.Wo")

    def mlp(self, x: str, layer: str) -> str:
        g = self.g
        inter = self.ck[f"{layer}.mlp.Wi.weight"].shape[0] // 2
        both = self.linear(x, f"{layer}.mlp.Wi")
        sizes = g.constant(f"{layer}/glu_split", _i64(inter, inter))
        value, gate = g.ops("Split", [both, sizes], 2, axis=-1)
        act = self.activation(value, str(self.config.get("hidden_activation", "gelu")))
        return self.linear(g.op("Mul", act, gate), f"{layer}.mlp.Wo")

    def masks(self, positions_i64: str) -> tuple[str, str]:
        """Additive masks: padding only (global layers), padding or out of window (local)."""
        from onnx import TensorProto

        g = self.g
        minimum = g.constant("/mask_min", _f32(float(np.finfo(np.float32).min)))
        keep = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
        padding = g.op("Mul", g.op("Sub", g.constant("/mask_one", _f32(1.0)), keep), minimum)
        padding = g.op("Unsqueeze", padding, g.constant("/mask_axes", _i64(1, 2)))  # [b,1,1,s]
        rows = g.op("Unsqueeze", positions_i64, g.constant("/ax1", _i64(1)))
        cols = g.op("Unsqueeze", positions_i64, g.constant("/ax0", _i64(0)))
        half = int(self.config.get("local_attention", 128)) // 2
        outside = g.op("Greater", g.op("Abs", g.op("Sub", rows, cols)),
                       g.constant("/window", np.array(half, np.int64)))  # fmt: skip
        # masked_fill, not a sum: two float32.min would overflow to -inf.
        return padding, g.op("Where", outside, minimum, padding)

    def head(self, x: str) -> str:
        g = self.g
        if self.config.get("classifier_pooling", "cls") == "cls":
            pooled = g.op("Gather", x, g.constant("/first", np.array(0, np.int64)), axis=1)
        else:
            from onnx import TensorProto

            keep = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=TensorProto.FLOAT),
                        g.constant("/last_axis", _i64(-1)))  # fmt: skip
            total = g.op("ReduceSum", g.op("Mul", x, keep), g.constant("/seq_axis", _i64(1)),
                         keepdims=0)  # fmt: skip
            count = g.op("ReduceSum", keep, g.constant("/seq_axis2", _i64(1)), keepdims=0)
            pooled = g.op("Div", total, count)
        act = str(self.config.get("classifier_activation", "gelu"))
        hidden = self.norm(self.activation(self.linear(pooled, "head.dense"), act), "head.norm")
        return self.linear(hidden, "classifier")


def modernbert_graph(
    checkpoint: Checkpoint, *, head: bool = True
) -> tuple[GraphWriter, list[ValueInfo], list[ValueInfo]]:
    """The graph of a ModernBERT sequence classifier; see the module docstring."""
    from onnx import TensorProto

    g = GraphWriter()
    m = _ModernBert(g, checkpoint)
    seq = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    positions = g.op("Range", g.constant("/zero", np.array(0, np.int64)), seq,
                     g.constant("/one", np.array(1, np.int64)))  # fmt: skip
    positions_f = g.op("Cast", positions, to=TensorProto.FLOAT)
    global_mask, local_mask = m.masks(positions)
    ropes = {kind: m.rotary(positions_f, _rope_theta(m.config, kind), kind)
             for kind in ("full_attention", "sliding_attention")}  # fmt: skip
    words = checkpoint["model.embeddings.tok_embeddings.weight"]
    x = g.op("Gather", g.weight("model.embeddings.tok_embeddings.weight", words), "input_ids")
    x = m.norm(x, "model.embeddings.norm")
    for i, kind in enumerate(_layer_types(m.config, m.layers)):
        layer = f"model.layers.{i}"
        mask = global_mask if kind == "full_attention" else local_mask
        x = g.op("Add", x, m.attention(m.norm(x, f"{layer}.attn_norm"), mask, ropes[kind], layer))
        x = g.op("Add", x, m.mlp(m.norm(x, f"{layer}.mlp_norm"), layer))
    x = m.norm(x, "model.final_norm")
    g.output(m.head(x) if head else x, "logits")
    dims = ["batch_size", "sequence_length"]
    names = ("input_ids", "attention_mask")
    inputs: list[ValueInfo] = [(n, TensorProto.INT64, dims) for n in names]
    labels = int(checkpoint["classifier.weight"].shape[0])
    out_dims: list[Any] = ["batch_size", labels] if head else [*dims, m.hidden]
    return g, inputs, [("logits", TensorProto.FLOAT, out_dims)]
