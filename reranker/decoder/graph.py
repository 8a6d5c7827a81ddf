"""The ONNX graph of a Qwen3 reranker, written node by node from its safetensors weights.

It computes only what the score needs. Every layer runs over all tokens except the last one,
which runs for the last position only (its keys and values still cover the whole sequence);
the final RMSNorm and the head see one hidden state per pair, and the head is the two rows of
the output matrix for ``no`` and ``yes`` (``logits`` ``[batch, 2]``, so ``logit[1] - logit[0]``
is the log-odds of ``yes``), or a seq-cls checkpoint's single score row (``[batch, 1]``). The
whole-vocabulary projection (151,669 rows for Qwen3) is never built.

Inputs are ``input_ids`` and ``attention_mask`` ``[batch, seq]``, padded on the left, so the
last column is every pair's last real token. Positions count real tokens only
(``cumsum(mask) - 1``) and a key is visible when it is not padding and not in the future, so
scores do not depend on how much padding a batch adds. Plain ONNX operators only (opset 17);
ONNX Runtime fuses the RMSNorm pattern into ``SimplifiedLayerNormalization`` by itself.

Weights go to one external data file written tensor by tensor as the graph is built, so a
model is never held twice in memory and models over protobuf's 2 GB limit work the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from reranker.decoder.architecture import DecoderSpec
from reranker.decoder.weights import Checkpoint
from reranker.errors import ModelLoadError

__all__ = ["GRAPH_VERSION", "OPSET", "build_decoder_onnx"]

OPSET = 17
GRAPH_VERSION = 1
"""Bumped when the graph changes, so cached builds are rebuilt."""
_IR_VERSION = 8
_DATA_FILE = "model.onnx_data"


class _Writer:
    """Collects nodes; weights are appended to the external data file as they come."""

    def __init__(self, data: BinaryIO, location: str) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._data = data
        self._location = location
        self._count = 0

    def weight(self, name: str, value: np.ndarray) -> str:
        from onnx import TensorProto

        array = np.ascontiguousarray(value, dtype=np.float32)
        offset = self._data.tell()
        pad = (-offset) % 64  # aligned, so ONNX Runtime can map tensors in place
        self._data.write(b"\0" * pad)
        offset += pad
        self._data.write(array.tobytes())
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = TensorProto.FLOAT
        tensor.dims.extend(array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        where = {"location": self._location, "offset": str(offset), "length": str(array.nbytes)}
        for key, text in where.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, text
        self.initializers.append(tensor)
        return name

    def small(self, name: str, value: np.ndarray) -> str:
        """A shape, axis or scalar, inline as a Constant node."""
        tensor = self.numpy_helper.from_array(value, name)
        self.nodes.append(self.helper.make_node("Constant", [], [name], value=tensor))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        self._count += 1
        names = [f"/{op_type}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


class _Builder:
    def __init__(self, spec: DecoderSpec, ckpt: Checkpoint, g: _Writer, yes_no: tuple[int, int],
                 last_position_only: bool, vocabulary_head: bool):
        self.spec, self.ckpt, self.g, self.yes_no = spec, ckpt, g, yes_no
        self.last_position_only = last_position_only
        self.vocabulary_head = vocabulary_head
        self.prefix = "model."
        self.eps = g.small("/eps", np.array(spec.rms_norm_eps, np.float32))
        self.two = g.small("/two", np.array(2.0, np.float32))

    def linear(self, x: str, name: str) -> str:
        # torch stores Linear weights as [out, in]; MatMul wants [in, out].
        w = self.g.weight(f"{name}.weight_t", self.ckpt.get(f"{name}.weight").T)
        return self.g.op("MatMul", x, w)

    def rms_norm(self, x: str, name: str) -> str:
        # The pattern ONNX Runtime fuses into SimplifiedLayerNormalization.
        g = self.g
        variance = g.op("ReduceMean", g.op("Pow", x, self.two), axes=[-1], keepdims=1)
        normed = g.op("Div", x, g.op("Sqrt", g.op("Add", variance, self.eps)))
        return g.op("Mul", normed, g.weight(f"{name}.weight", self.ckpt.get(f"{name}.weight")))

    def rotate(self, x: str, cos: str, sin: str) -> str:
        g, half = self.g, self.spec.head_dim // 2
        first, second = g.op("Split", x, g.small(f"/rope_split_{g._count}", _i64(half, half)),
                             outputs=2, axis=-1)
        rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))

    def attention(self, h: str, h_q: str, rope: tuple[str, ...], mask: str, layer: str) -> str:
        """Grouped-query attention; queries from ``h_q`` (all or last positions), keys from ``h``.

        Queries are laid out ``[batch, kv_heads, group, seq, head_dim]`` and keys
        ``[batch, kv_heads, 1, ...]`` so that MatMul broadcasts each key head over its group
        of query heads (transformers' ``repeat_kv`` order) without copying keys or values.
        """
        g, s = self.g, self.spec
        group = s.num_heads // s.num_kv_heads
        cos_k, sin_k, cos_q, sin_q = rope
        a = f"{layer}.self_attn"

        def heads(x: str, part: str, n: int) -> str:
            shaped = g.op("Reshape", self.linear(x, f"{a}.{part}_proj"),
                          g.small(f"{a}/{part}_shape", _i64(0, 0, n, s.head_dim)))
            return shaped

        q = self.rms_norm(heads(h_q, "q", s.num_heads), f"{a}.q_norm")
        q = g.op("Reshape", q, g.small(f"{a}/q_groups", _i64(0, 0, s.num_kv_heads, group,
                                                              s.head_dim)))
        q = self.rotate(g.op("Transpose", q, perm=[0, 2, 3, 1, 4]), cos_q, sin_q)
        k = self.rms_norm(heads(h, "k", s.num_kv_heads), f"{a}.k_norm")
        k = g.op("Unsqueeze", g.op("Transpose", k, perm=[0, 2, 1, 3]),
                 g.small(f"{a}/k_group_axis", _i64(2)))
        k = self.rotate(k, cos_k, sin_k)
        v = g.op("Unsqueeze", g.op("Transpose", heads(h, "v", s.num_kv_heads), perm=[0, 2, 1, 3]),
                 g.small(f"{a}/v_group_axis", _i64(2)))
        scale = g.small(f"{a}/scale", np.array(s.head_dim ** -0.5, np.float32))
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 2, 4, 3]))
        scores = g.op("Add", g.op("Mul", scores, scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 3, 1, 2, 4]),
                       g.small(f"{a}/merge", _i64(0, 0, s.num_heads * s.head_dim)))
        return self.linear(context, f"{a}.o_proj")

    def mlp(self, x: str, layer: str) -> str:
        g, m = self.g, f"{layer}.mlp"
        gate = self.linear(x, f"{m}.gate_proj")
        silu = g.op("Mul", gate, g.op("Sigmoid", gate))
        return self.linear(g.op("Mul", silu, self.linear(x, f"{m}.up_proj")), f"{m}.down_proj")

    def head(self, hidden: str) -> str:
        """``[batch, seq, hidden]`` to ``[batch, 2]`` (no, yes) or ``[batch, 1]`` (score row)."""
        s, ckpt, g = self.spec, self.ckpt, self.g
        seq, last = g.small("/head_seq_axis", _i64(1)), g.small("/head_last", _i64(-1))
        end = g.small("/head_end", _i64(2**62))
        if self.vocabulary_head and s.head == "yes_no":
            # Benchmarks only: what a causal-LM forward computes before the yes/no columns.
            table = ckpt.get("lm_head.weight" if "lm_head.weight" in ckpt
                             else f"{self.prefix}embed_tokens.weight")
            logits = g.op("MatMul", hidden, g.weight("head.vocabulary_t", table.T))
            del table
            logits = g.op("Squeeze", g.op("Slice", logits, last, end, seq), seq)
            yes, no = self.yes_no
            return g.op("Gather", logits, g.small("/no_yes", _i64(no, yes)), axis=1)
        last = g.op("Squeeze", g.op("Slice", hidden, last, end, seq), seq)
        if s.head == "score":
            if "score.weight" not in ckpt or ckpt.shape("score.weight")[0] != 1:
                shape = ckpt.shape("score.weight") if "score.weight" in ckpt else None
                raise ModelLoadError(
                    f"a seq-cls reranker needs score.weight of shape [1, hidden]; found {shape}"
                )
            rows = ckpt.get("score.weight")
        else:
            name = "lm_head.weight"
            if name not in ckpt:
                if not s.tie_word_embeddings:
                    raise ModelLoadError("checkpoint has no lm_head.weight and ties no embeddings")
                name = f"{self.prefix}embed_tokens.weight"
            yes, no = self.yes_no
            table = self.ckpt.get(name)
            rows = np.stack([table[no], table[yes]])
            del table
        return self.g.op("MatMul", last, self.g.weight("head.rows_t", rows.T))

    def build(self) -> str:
        g, s, p = self.g, self.spec, self.prefix
        mask_bool = g.op("Cast", "attention_mask", to=9)
        counts = g.op("CumSum", "attention_mask", g.small("/axis1", np.array(1, np.int64)))
        positions = g.op("Sub", counts, g.small("/one_i", np.array(1, np.int64)))
        positions = g.op("Max", positions, g.small("/zero_i", np.array(0, np.int64)))
        # RoPE angles in float32 from the positions, as transformers computes them.
        inv_freq = 1.0 / (s.rope_theta ** (np.arange(0, s.head_dim, 2, dtype=np.float64)
                                           / s.head_dim))
        freqs = g.op("Mul", g.op("Unsqueeze", g.op("Cast", positions, to=1),
                                 g.small("/last_axis", _i64(-1))),
                     g.small("/inv_freq", inv_freq.astype(np.float32)))
        angles = g.op("Concat", freqs, freqs, axis=-1)  # [b, seq, head_dim]
        rope_axes = g.small("/rope_axes", _i64(1, 2))  # -> [b, 1, 1, seq, head_dim]
        cos = g.op("Unsqueeze", g.op("Cos", angles), rope_axes)
        sin = g.op("Unsqueeze", g.op("Sin", angles), rope_axes)
        last_start, last_end = g.small("/last_start", _i64(-1)), g.small("/end", _i64(2**62))
        seq_axis = g.small("/rope_seq_axis", _i64(3))
        cos_last = g.op("Slice", cos, last_start, last_end, seq_axis)
        sin_last = g.op("Slice", sin, last_start, last_end, seq_axis)

        # Key j is visible from query i when j <= i and j is not padding.
        seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
        steps = g.op("Range", g.small("/zero_r", np.array(0, np.int64)), seq_len,
                     g.small("/one_r", np.array(1, np.int64)))
        causal = g.op("LessOrEqual", g.op("Unsqueeze", steps, g.small("/row_axis", _i64(0))),
                      g.op("Unsqueeze", steps, g.small("/col_axis", _i64(1))))
        keys = g.op("Unsqueeze", mask_bool, g.small("/key_axes", _i64(1, 2, 3)))
        visible = g.op("And", causal, keys)  # [b, 1, 1, seq, seq]
        zero = g.small("/zero_f", np.array(0.0, np.float32))
        blocked = g.small("/blocked", np.array(np.finfo(np.float32).min, np.float32))
        mask = g.op("Where", visible, zero, blocked)
        mask_last = g.op("Slice", mask, last_start, last_end, seq_axis)

        x = g.op("Gather", g.weight(f"{p}embed_tokens.weight",
                                    self.ckpt.get(f"{p}embed_tokens.weight")), "input_ids")
        seq = g.small("/seq_axis", _i64(1))
        for i in range(s.num_layers):
            layer = f"{p}layers.{i}"
            h = self.rms_norm(x, f"{layer}.input_layernorm")
            if i < s.num_layers - 1 or not self.last_position_only:
                x = g.op("Add", x, self.attention(h, h, (cos, sin, cos, sin), mask, layer))
            else:  # the score reads the last position only
                h_last = g.op("Slice", h, last_start, last_end, seq)
                x = g.op("Slice", x, last_start, last_end, seq)
                rope = (cos, sin, cos_last, sin_last)
                x = g.op("Add", x, self.attention(h, h_last, rope, mask_last, layer))
            x = g.op("Add", x, self.mlp(self.rms_norm(x, f"{layer}.post_attention_layernorm"),
                                        layer))
        return self.head(self.rms_norm(x, f"{p}norm"))


def build_decoder_onnx(
    spec: DecoderSpec,
    checkpoint: Checkpoint,
    target: str | Path,
    *,
    yes_no: tuple[int, int] = (0, 0),
    last_position_only: bool = True,
    vocabulary_head: bool = False,
) -> Path:
    """Write the reranker graph of ``checkpoint`` to ``target`` (weights in ``model.onnx_data``).

    Args:
        spec: shapes from ``config.json`` (:func:`~reranker.decoder.architecture.decoder_spec`).
        checkpoint: the safetensors weights.
        target: the ``.onnx`` path; its folder receives the external data file.
        yes_no: token ids of ``yes`` and ``no`` (causal-LM checkpoints only).
        last_position_only: run the last layer for the last position only (``False``: for
            every position, as a causal-LM forward does; benchmarks compare the two).
        vocabulary_head: project onto the whole vocabulary and then pick the two columns, as
            a causal-LM forward does (benchmarks only; the scores are the same).
    """
    import onnx
    from onnx import TensorProto, helper

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / _DATA_FILE).open("wb") as data:
        g = _Writer(data, _DATA_FILE)
        out = _Builder(spec, checkpoint, g, yes_no, last_position_only, vocabulary_head).build()
    g.nodes.append(helper.make_node("Identity", [out], ["logits"]))
    dims = ["batch_size", "sequence_length"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask")]
    width = 1 if spec.head == "score" else 2
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", width])]
    graph = helper.make_graph(g.nodes, "decoder_reranker", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="reranker.decoder", ir_version=_IR_VERSION)
    onnx.save_model(model, str(target))
    onnx.checker.check_model(str(target))
    return target
