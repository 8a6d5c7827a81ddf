"""The Qwen3-VL vision tower and patch merger as one ONNX graph, from safetensors.

What the graph computes, per batch of images of one grid (transformers' ``Qwen3VLVisionModel``):

- patch embedding: the ``Conv3d`` whose kernel equals its stride, i.e. one matrix product over
  each flattened ``channels x temporal x patch x patch`` patch;
- plus the learned position table interpolated bilinearly to the grid (indices and weights
  come in as inputs, :func:`reranker.models.vision.qwen_vl.grid_inputs`);
- ``depth`` pre-norm blocks (LayerNorm, full bidirectional attention over the image's patches,
  one head at a time, with a 2-D RoPE: half the rotary angles from the patch's row, half
  from its column; LayerNorm, dense MLP) — Qwen3-VL has no window attention;
- the merger: LayerNorm, then every 2 x 2 block of patches concatenated and put through
  ``fc2(GELU(fc1(.)))`` to the decoder's width; and after the blocks
  ``deepstack_visual_indexes`` the same merger with its norm after the concatenation
  (``deepstack_merger_list``): those features are added to the decoder's hidden states at the
  image positions after its first layers.

Inputs: ``pixel_values [batch, patches, C*T*P*P]``, ``pos_index [4, patches]`` int64,
``pos_weight [4, patches]``, ``rope_positions [patches, 2]`` int64. Outputs:
``image_embeds [batch, tokens, out_hidden]`` and ``deepstack_embeds [levels, batch, tokens,
out_hidden]`` (``tokens = patches / merge^2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.family import BuiltGraph
from reranker.models.layers.activations import activation, check_activation
from reranker.models.layers.attention import attend
from reranker.models.layers.linear import linear
from reranker.models.layers.norms import layer_norm
from reranker.models.layers.rope import inverse_frequencies, rotate_half
from reranker.models.sizes import config_int, layer_count
from reranker.models.writer import DerivedTensor, GraphWriter, ValueInfo, f32, i64

__all__ = ["VisionShape", "read_vision_shape", "vision_graph"]

_EPS = 1e-6
_ROPE_THETA = 10000.0


@dataclass(frozen=True)
class VisionShape:
    """The vision tower's sizes (``vision_config`` of ``config.json``)."""

    hidden_size: int
    num_heads: int
    intermediate_size: int
    out_hidden_size: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    in_channels: int
    num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...]
    hidden_act: str

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    def run_memory_bytes(self, images: int, patches: int) -> int:
        """Peak transient float32 bytes of one tower run: one head's attention scores and
        probabilities (heads run one at a time) plus a block's widest activations."""
        attention = 2 * patches * patches
        activations = patches * (self.intermediate_size + 6 * self.hidden_size + self.patch_dim)
        return 4 * images * (attention + activations)


def read_vision_shape(config: Mapping[str, Any], source: str = "checkpoint") -> VisionShape:
    """Read and bound ``vision_config`` (``ModelLoadError`` naming the field otherwise)."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        raise ModelLoadError(f"config.json of {source} has no vision_config object")
    where = f"{source} (vision_config)"

    def size(key: str, default: int | None = None) -> int:
        return config_int(vision, key, where, default=default)

    hidden, heads = size("hidden_size"), size("num_heads")
    if hidden % heads or (hidden // heads) % 4:
        raise ModelLoadError(
            f"config.json of {where}: hidden_size {hidden} / num_heads {heads} must be a "
            "multiple of 4 (2-D RoPE)")
    table = size("num_position_embeddings")
    if int(table**0.5) ** 2 != table:
        raise ModelLoadError(
            f"config.json of {where}: num_position_embeddings {table} is not a square")
    indexes = vision.get("deepstack_visual_indexes", [])
    if not isinstance(indexes, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indexes):
        raise ModelLoadError(f"config.json of {where}: deepstack_visual_indexes must be "
                             "a list of layer numbers")
    act = check_activation(vision.get("hidden_act", "gelu_pytorch_tanh"), "hidden_act", where)
    return VisionShape(
        hidden_size=hidden, num_heads=heads, intermediate_size=size("intermediate_size"),
        out_hidden_size=size("out_hidden_size"), patch_size=size("patch_size", 16),
        temporal_patch_size=size("temporal_patch_size", 2),
        spatial_merge_size=size("spatial_merge_size", 2), in_channels=size("in_channels", 3),
        num_position_embeddings=table, deepstack_visual_indexes=tuple(indexes), hidden_act=act,
    )


def _merger(g: GraphWriter, ck: Checkpoint, x: str, name: str, s: VisionShape, *,
            norm_after_shuffle: bool) -> str:
    wide = s.hidden_size * s.spatial_merge_size**2
    merge = g.constant(f"/{name}/shuffle", i64(0, -1, wide))
    if norm_after_shuffle:
        x = layer_norm(g, ck, g.op("Reshape", x, merge), f"{name}.norm", _EPS)
    else:
        x = g.op("Reshape", layer_norm(g, ck, x, f"{name}.norm", _EPS), merge)
    hidden = activation(g, linear(g, ck, x, f"{name}.linear_fc1"), "gelu")  # nn.GELU(): erf
    return linear(g, ck, hidden, f"{name}.linear_fc2")


def _attention(g: GraphWriter, ck: Checkpoint, x: str, name: str, s: VisionShape,
               cos: str, sin: str, no_mask: str) -> str:
    qkv = g.op("Reshape", linear(g, ck, x, f"{name}.qkv"),
               g.constant(f"/{name}/qkv_shape", i64(0, 0, 3, s.num_heads, s.head_dim)))
    qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # [3, b, heads, patches, head_dim]
    q, k, v = (g.op("Squeeze", part, g.constant("/vision/axis0", i64(0)))
               for part in g.ops("Split", [qkv, g.constant("/vision/qkv_split", i64(1, 1, 1))],
                                 3, axis=0))
    q = rotate_half(g, q, cos, sin, s.head_dim)
    k = rotate_half(g, k, cos, sin, s.head_dim)
    k_t = g.op("Transpose", k, perm=[0, 1, 3, 2])
    # One head at a time: a page image has thousands of patches, and all heads' scores at
    # once (heads x patches^2 floats) would be gigabytes; ONNX Runtime frees each head's.
    split = g.constant("/vision/heads", i64(*([1] * s.num_heads)))
    heads = zip(*(g.ops("Split", [t, split], s.num_heads, axis=1) for t in (q, k_t, v)),
                strict=True)
    context = g.op("Concat", *(attend(g, qh, kh, vh, no_mask, s.head_dim**-0.5, tag=name)
                               for qh, kh, vh in heads), axis=1)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                   g.constant(f"/{name}/merge", i64(0, 0, s.hidden_size)))
    return linear(g, ck, context, f"{name}.proj")


def vision_graph(ck: Checkpoint, prefix: str) -> BuiltGraph:
    """The tower of the checkpoint whose vision weights are under ``prefix`` (``model.visual``)."""
    s = read_vision_shape(ck.config, ck.source)
    depth = layer_count(replace(ck, config=ck.config["vision_config"]), f"{prefix}.blocks.",
                        key="depth")
    if any(i >= depth for i in s.deepstack_visual_indexes):
        raise ModelLoadError(f"deepstack_visual_indexes {list(s.deepstack_visual_indexes)} "
                             f"name blocks past the tower's {depth}")
    g = GraphWriter()
    conv = ck[f"{prefix}.patch_embed.proj.weight"]
    expected = (s.hidden_size, s.in_channels, s.temporal_patch_size, s.patch_size, s.patch_size)
    if tuple(conv.shape) != expected:
        raise ModelLoadError(f"{prefix}.patch_embed.proj.weight has shape {conv.shape}; the "
                             f"vision_config gives {expected}")
    flat = DerivedTensor(conv, (s.hidden_size, s.patch_dim),
                         lambda a: a.reshape(a.shape[0], -1))
    x = g.linear("pixel_values", flat, ck[f"{prefix}.patch_embed.proj.bias"],
                 f"{prefix}.patch_embed.proj")
    table = g.weight(f"{prefix}.pos_embed.weight", ck[f"{prefix}.pos_embed.weight"])
    corners = g.op("Gather", table, "pos_index")  # [4, patches, hidden]
    weights = g.op("Unsqueeze", "pos_weight", g.constant("/vision/last", i64(-1)))
    position = g.op("ReduceSum", g.op("Mul", corners, weights),
                    g.constant("/vision/corner_axis", i64(0)), keepdims=0)
    x = g.op("Add", x, position)

    inv = inverse_frequencies(s.head_dim // 2, _ROPE_THETA, float32_math=True)
    angles = g.op("Mul", g.op("Unsqueeze", g.op("Cast", "rope_positions", to=1),
                              g.constant("/vision/last", i64(-1))),
                  g.constant("/vision/inv_freq", inv))  # [patches, 2, head_dim / 4]
    angles = g.op("Reshape", angles, g.constant("/vision/rope_flat", i64(0, s.head_dim // 2)))
    angles = g.op("Concat", angles, angles, axis=-1)
    cos, sin = g.op("Cos", angles), g.op("Sin", angles)
    no_mask = g.constant("/vision/no_mask", f32(0.0))

    deep: list[str] = []
    for i in range(depth):
        block = f"{prefix}.blocks.{i}"
        h = layer_norm(g, ck, x, f"{block}.norm1", _EPS)
        x = g.op("Add", x, _attention(g, ck, h, f"{block}.attn", s, cos, sin, no_mask))
        h = layer_norm(g, ck, x, f"{block}.norm2", _EPS)
        h = activation(g, linear(g, ck, h, f"{block}.mlp.linear_fc1"), s.hidden_act)
        x = g.op("Add", x, linear(g, ck, h, f"{block}.mlp.linear_fc2"))
        if i in s.deepstack_visual_indexes:
            level = s.deepstack_visual_indexes.index(i)
            deep.append(_merger(g, ck, x, f"{prefix}.deepstack_merger_list.{level}", s,
                                norm_after_shuffle=True))
    merged = _merger(g, ck, x, f"{prefix}.merger", s, norm_after_shuffle=False)
    g.output(merged, "image_embeds")
    axis0 = g.constant("/vision/axis0", i64(0))
    if deep:
        stacked = g.op("Concat", *(g.op("Unsqueeze", d, axis0) for d in deep), axis=0)
    else:  # no deepstack levels: an empty first axis
        zero = g.constant("/vision/zero", i64(0))
        stacked = g.op("Slice", g.op("Unsqueeze", merged, axis0), zero, zero, axis0)
    g.output(stacked, "deepstack_embeds")
    inputs: list[ValueInfo] = [
        ("pixel_values", 1, ["images", "patches", s.patch_dim]),
        ("pos_index", 7, [4, "patches"]),
        ("pos_weight", 1, [4, "patches"]),
        ("rope_positions", 7, ["patches", 2]),
    ]
    outputs: list[ValueInfo] = [
        ("image_embeds", 1, ["images", "tokens", s.out_hidden_size]),
        ("deepstack_embeds", 1, ["levels", "images", "tokens", s.out_hidden_size]),
    ]
    return g, inputs, outputs
