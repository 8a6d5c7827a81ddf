"""An ONNX graph, written node by node, that computes the Hugging Face forward pass in float32.

The graph matches ``BertForSequenceClassification`` / ``XLMRobertaForSequenceClassification``
in eval mode: embeddings (word + position + token type) and LayerNorm, then per layer
self-attention with an additive ``(1 - mask) * float32.min`` mask, output projection, residual
and LayerNorm, an exact (erf) GELU feed-forward, residual and LayerNorm; then the head on the
first token. Inputs and outputs are named and shaped like the Xenova exports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from reranker.testing.spec import CrossEncoderSpec

if TYPE_CHECKING:
    import onnx

__all__ = ["OPSET", "build_onnx_model"]

OPSET = 17
# IR 8 is what opset 17 needs; older onnxruntime releases refuse newer IR versions.
_IR_VERSION = 8


class _Graph:
    """Collects nodes and initializers, naming every intermediate value uniquely."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        """A weight: an initializer, moved to the external data file when there is one."""
        self.initializers.append(self._numpy_helper.from_array(value, name))
        return name

    def small(self, name: str, value: np.ndarray) -> str:
        """A shape, axis or scalar: a Constant node, which stays inline with external data.

        onnxruntime's shape inference cannot read a Reshape target from external data.
        """
        tensor = self._numpy_helper.from_array(value, name)
        self.nodes.append(self._helper.make_node("Constant", [], [name], value=tensor))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self._count += 1
        out = f"/{op_type}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, weights: dict[str, np.ndarray], name: str) -> str:
        # torch stores Linear weights as [out, in]; MatMul wants [in, out].
        w = self.const(f"{name}.weight_t", np.ascontiguousarray(weights[f"{name}.weight"].T))
        b = self.const(f"{name}.bias", weights[f"{name}.bias"])
        return self.op("Add", self.op("MatMul", x, w), b)

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], name: str, eps: float) -> str:
        scale = self.const(f"{name}.weight", weights[f"{name}.weight"])
        bias = self.const(f"{name}.bias", weights[f"{name}.bias"])
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _embeddings(g: _Graph, spec: CrossEncoderSpec, w: dict[str, np.ndarray]) -> str:
    p = f"{spec.prefix}.embeddings"
    word = g.const(f"{p}.word_embeddings.weight", w[f"{p}.word_embeddings.weight"])
    pos_table = g.const(f"{p}.position_embeddings.weight", w[f"{p}.position_embeddings.weight"])
    type_table = w[f"{p}.token_type_embeddings.weight"]
    x = g.op("Gather", word, "input_ids")
    if spec.arch == "bert":
        seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
        zero, one = g.small("/zero", np.array(0, np.int64)), g.small("/one", np.array(1, np.int64))
        positions = g.op("Gather", pos_table, g.op("Range", zero, seq_len, one))
        types = g.op("Gather", g.const(f"{p}.token_type_embeddings.weight", type_table),
                     "token_type_ids")  # fmt: skip
    else:
        # HF's create_position_ids_from_input_ids: cumsum(not pad) * (not pad) + pad_token_id.
        pad = g.small("/pad_token_id", np.array(spec.pad_token_id, np.int64))
        not_pad = g.op("Cast", g.op("Not", g.op("Equal", "input_ids", pad)), to=7)
        cumsum = g.op("CumSum", not_pad, g.small("/axis1", np.array(1, np.int64)))
        position_ids = g.op("Add", g.op("Mul", cumsum, not_pad), pad)
        positions = g.op("Gather", pos_table, position_ids)
        # Without token_type_ids the HF model adds row 0 of the token type table everywhere.
        types = g.const(f"{p}.token_type_embeddings.row0", type_table[0])
    x = g.op("Add", g.op("Add", x, positions), types)
    return g.layer_norm(x, w, f"{p}.LayerNorm", spec.layer_norm_eps)


def _attention(
    g: _Graph, spec: CrossEncoderSpec, w: dict[str, np.ndarray], x: str, mask: str, layer: str
) -> str:
    heads, head_dim = spec.num_heads, spec.hidden_size // spec.num_heads
    split = g.small(f"{layer}/split_heads", _i64(0, 0, heads, head_dim))

    def heads_of(part: str, perm: tuple[int, ...]) -> str:
        projected = g.linear(x, w, f"{layer}.attention.self.{part}")
        return g.op("Transpose", g.op("Reshape", projected, split), perm=list(perm))

    q = heads_of("query", (0, 2, 1, 3))
    k = heads_of("key", (0, 2, 3, 1))
    v = heads_of("value", (0, 2, 1, 3))
    scale = g.small(f"{layer}/scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), mask)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    merge = g.small(f"{layer}/merge_heads", _i64(0, 0, spec.hidden_size))
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge)
    out = g.op("Add", g.linear(context, w, f"{layer}.attention.output.dense"), x)
    return g.layer_norm(out, w, f"{layer}.attention.output.LayerNorm", spec.layer_norm_eps)


def _feed_forward(
    g: _Graph, spec: CrossEncoderSpec, w: dict[str, np.ndarray], x: str, layer: str
) -> str:
    h = g.linear(x, w, f"{layer}.intermediate.dense")
    # Exact GELU, 0.5 * h * (1 + erf(h / sqrt(2))): the Gelu op only exists from opset 20.
    half = g.small(f"{layer}/half", np.array(0.5, np.float32))
    one = g.small(f"{layer}/one", np.array(1.0, np.float32))
    inv_sqrt2 = g.small(f"{layer}/inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    erf = g.op("Erf", g.op("Mul", h, inv_sqrt2))
    gelu = g.op("Mul", g.op("Mul", h, half), g.op("Add", erf, one))
    out = g.op("Add", g.linear(gelu, w, f"{layer}.output.dense"), x)
    return g.layer_norm(out, w, f"{layer}.output.LayerNorm", spec.layer_norm_eps)


def _head(g: _Graph, spec: CrossEncoderSpec, w: dict[str, np.ndarray], x: str) -> str:
    first = g.op("Gather", x, g.small("/first_token", np.array(0, np.int64)), axis=1)
    if spec.arch == "bert":
        pooled = g.op("Tanh", g.linear(first, w, "bert.pooler.dense"))
        return g.linear(pooled, w, "classifier")
    hidden = g.op("Tanh", g.linear(first, w, "classifier.dense"))
    return g.linear(hidden, w, "classifier.out_proj")


def build_onnx_model(
    spec: CrossEncoderSpec, weights: dict[str, np.ndarray], *, head: bool = True
) -> onnx.ModelProto:
    """The ONNX model of ``spec`` with ``weights``.

    Args:
        head: ``False`` leaves the classification head out, so ``logits`` is the last hidden
            state ``[batch, seq, hidden]``: the broken export that tests must reject.
    """
    from onnx import TensorProto, checker, helper

    g = _Graph()
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    one = g.small("/mask_one", np.array(1.0, np.float32))
    minimum = g.small("/mask_min", np.array(np.finfo(np.float32).min, np.float32))
    additive = g.op("Mul", g.op("Sub", one, mask), minimum)
    mask = g.op("Unsqueeze", additive, g.small("/mask_axes", _i64(1, 2)))

    x = _embeddings(g, spec, weights)
    for i in range(spec.num_layers):
        layer = f"{spec.prefix}.encoder.layer.{i}"
        x = _attention(g, spec, weights, x, mask, layer)
        x = _feed_forward(g, spec, weights, x, layer)
    out = _head(g, spec, weights, x) if head else x
    g.nodes.append(helper.make_node("Identity", [out], ["logits"]))

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if spec.arch == "bert" else [])
    dims = ["batch_size", "sequence_length"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in names]
    out_dims: list[str | int] = (
        ["batch_size", spec.num_labels] if head else [*dims, spec.hidden_size]
    )
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_dims)]
    graph = helper.make_graph(g.nodes, "cross_encoder", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="reranker.testing",
        ir_version=_IR_VERSION,
    )
    checker.check_model(model)
    return model
