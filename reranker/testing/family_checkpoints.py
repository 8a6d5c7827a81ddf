"""Tensor names, shapes and random weights of Llama-like decoder checkpoints (test stand-ins).

The names are the Hugging Face ones every family here keeps (``model.embed_tokens``,
``model.layers.N.self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``, the two layer norms,
``model.norm``); each family adds its own head. Weights are drawn from a seeded generator in
checkpoint order, so a folder is the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["EMBEDDING_SCALE", "decoder_shapes", "draw_weights", "save_weights", "write_weights"]

EMBEDDING_SCALE = 0.05
"""Standard deviation of embedding rows: small, so attention (what reads the document)
dominates the residual stream of a random model."""


def decoder_shapes(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int,
    qkv_bias: bool = False,
    qk_norm: bool = False,
) -> dict[str, tuple[int, ...]]:
    """The backbone's tensors (no head), in checkpoint order."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab_size, hidden_size)}
    for i in range(num_layers):
        p = f"model.layers.{i}"
        shapes[f"{p}.input_layernorm.weight"] = (hidden_size,)
        for part, rows in (("q", num_heads), ("k", num_kv_heads), ("v", num_kv_heads)):
            shapes[f"{p}.self_attn.{part}_proj.weight"] = (rows * head_dim, hidden_size)
            if qkv_bias:
                shapes[f"{p}.self_attn.{part}_proj.bias"] = (rows * head_dim,)
        shapes[f"{p}.self_attn.o_proj.weight"] = (hidden_size, num_heads * head_dim)
        if qk_norm:
            shapes[f"{p}.self_attn.q_norm.weight"] = (head_dim,)
            shapes[f"{p}.self_attn.k_norm.weight"] = (head_dim,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (hidden_size,)
        shapes[f"{p}.mlp.gate_proj.weight"] = (intermediate_size, hidden_size)
        shapes[f"{p}.mlp.up_proj.weight"] = (intermediate_size, hidden_size)
        shapes[f"{p}.mlp.down_proj.weight"] = (hidden_size, intermediate_size)
    shapes["model.norm.weight"] = (hidden_size,)
    return shapes


def draw_weights(
    shapes: dict[str, tuple[int, ...]], seed: int, *, norm_center: float = 1.0,
    head_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Random float32 tensors: norms ``norm_center + 0.1 N(0, 1)`` (Gemma stores ``w`` of
    ``1 + w``: center 0), biases ``0.1 N(0, 1)``, embeddings ``EMBEDDING_SCALE N(0, 1)``,
    matrices ``N(0, 1 / fan_in)`` (rows of heads not named ``*embed*`` times ``head_scale``)."""
    rng = np.random.default_rng(seed)
    return {name: _draw(rng, name, shape, norm_center, head_scale)
            for name, shape in shapes.items()}


def _draw(rng: np.random.Generator, name: str, shape: tuple[int, ...], norm_center: float,
          head_scale: float) -> np.ndarray:
    if name.endswith("norm.weight"):
        value = norm_center + 0.1 * rng.standard_normal(shape, dtype=np.float32)
    elif name.endswith(".bias"):
        value = 0.1 * rng.standard_normal(shape, dtype=np.float32)
    elif "embed_tokens" in name:
        value = EMBEDDING_SCALE * rng.standard_normal(shape, dtype=np.float32)
    else:
        value = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))
        if not name.startswith("model."):
            value = value * np.float32(head_scale)
    return np.asarray(value, dtype=np.float32)


def write_weights(
    folder: Path, shapes: dict[str, tuple[int, ...]], seed: int, *, norm_center: float = 1.0,
    head_scale: float = 1.0, bfloat16: bool = False,
) -> None:
    """Draw the tensors of ``shapes`` (as :func:`draw_weights`) into ``model.safetensors``;
    ``bfloat16`` streams them one at a time into a bfloat16 file, as the Hub's checkpoints ship
    (a billion-parameter stand-in never sits in memory whole)."""
    if not bfloat16:
        save_weights(folder, draw_weights(shapes, seed, norm_center=norm_center,
                                          head_scale=head_scale))
        return
    import json

    rng = np.random.default_rng(seed)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * ((-len(raw)) % 8)
    with (folder / "model.safetensors").open("wb") as out:
        out.write(len(raw).to_bytes(8, "little") + raw)
        for name, shape in shapes.items():
            bits = _draw(rng, name, shape, norm_center, head_scale).view(np.uint32)
            # Round to nearest even, as torch's float32 -> bfloat16 conversion does.
            rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            out.write(rounded.astype("<u2").tobytes())


def save_weights(folder: Path, weights: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
