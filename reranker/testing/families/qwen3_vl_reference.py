"""A float64 numpy reference of Qwen3-VL-Reranker's rule, written apart from the graph builder.

From the authors' ``Qwen3VLReranker`` (``qwen_vl_utils`` resize, the Qwen2-VL image processor,
``Qwen3VLModel`` with DeepStack and interleaved M-RoPE, ``sigmoid(h_last . (w_yes - w_no))``),
each step in its plainest form: patches cut with explicit loops, the position table
interpolated per patch, positions computed as ``get_rope_index`` does, every pair run alone
without padding. Raw scores are ``h_last . (w_yes - w_no)``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["reference_patches", "reference_prompt", "reference_vl_scores"]

SYSTEM = ('Judge whether the Document meets the requirements based on the Query and the '
          'Instruct provided. Note that the answer can only be "yes" or "no".')
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


def _resize_rule(h: int, w: int, factor: int, low: int, high: int) -> tuple[int, int]:
    hh = max(factor, int(round(h / factor)) * factor)
    ww = max(factor, int(round(w / factor)) * factor)
    if hh * ww > high:
        beta = math.sqrt(h * w / high)
        hh = max(factor, int(math.floor(h / beta / factor)) * factor)
        ww = max(factor, int(math.floor(w / beta / factor)) * factor)
    elif hh * ww < low:
        beta = math.sqrt(low / (h * w))
        hh = int(math.ceil(h * beta / factor)) * factor
        ww = int(math.ceil(w * beta / factor)) * factor
    return hh, ww


def reference_patches(data: bytes, *, min_pixels: int = 4 * 32 * 32,
                      max_pixels: int = 1800 * 32 * 32) -> tuple[np.ndarray, tuple[int, int, int]]:
    """float64 patches ``[N, 3 * 2 * 16 * 16]`` and the grid of one encoded image."""
    from PIL import Image

    opened = Image.open(io.BytesIO(data))
    opened.load()
    if opened.mode == "RGBA":
        rgb = Image.new("RGB", opened.size, (255, 255, 255))
        rgb.paste(opened, mask=opened.split()[3])
    else:
        rgb = opened.convert("RGB")
    h, w = _resize_rule(rgb.height, rgb.width, 32, min_pixels, max_pixels)
    resized = rgb.resize((w, h), resample=Image.Resampling.BICUBIC)
    x = (np.asarray(resized, np.float64) / 255.0 - 0.5) / 0.5  # [H, W, C]
    gh, gw = h // 16, w // 16
    rows = []
    for bh in range(gh // 2):
        for bw in range(gw // 2):
            for ih in range(2):
                for iw in range(2):
                    r, c = 2 * bh + ih, 2 * bw + iw
                    patch = x[16 * r:16 * r + 16, 16 * c:16 * c + 16, :].transpose(2, 0, 1)
                    rows.append(np.stack([patch, patch], axis=1).ravel())  # [C, T, P, P]
    return np.stack(rows), (1, gh, gw)


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * x * (1.0 + np.asarray(erf(x / math.sqrt(2.0)), dtype=np.float64))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _rot(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    full = np.concatenate([angles, angles], axis=-1)
    return x * np.cos(full) + rotated * np.sin(full)


def _lin(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    # einsum, not BLAS: multi-threaded BLAS on tiny float64 matrices crawls on a loaded host.
    return np.einsum("ni,oi->no", x, weight)


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | float
            ) -> np.ndarray:
    scores = np.einsum("hqd,hkd->hqk", q, k) / math.sqrt(q.shape[-1]) + mask
    return np.einsum("hqk,hkd->hqd", _softmax(scores), v)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _vision(cfg: Mapping[str, Any], w: Mapping[str, np.ndarray], patches: np.ndarray,
            grid: tuple[int, int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    v = "model.visual"
    hidden, heads = cfg["hidden_size"], cfg["num_heads"]
    hd = hidden // heads
    _, gh, gw = grid
    conv = w[f"{v}.patch_embed.proj.weight"].reshape(hidden, -1)
    x = _lin(patches, conv) + w[f"{v}.patch_embed.proj.bias"]
    side = int(round(math.sqrt(cfg["num_position_embeddings"])))
    table = w[f"{v}.pos_embed.weight"]
    # Patch order: merge blocks consecutive; (r, c) of patch k.
    coords = [(2 * bh + ih, 2 * bw + iw) for bh in range(gh // 2) for bw in range(gw // 2)
              for ih in range(2) for iw in range(2)]
    hs = np.linspace(0, side - 1, gh).astype(np.float32).astype(np.float64)
    ws = np.linspace(0, side - 1, gw).astype(np.float32).astype(np.float64)
    pos = []
    for r, c in coords:
        y, z = hs[r], ws[c]
        y0, z0 = int(y), int(z)
        y1, z1 = min(y0 + 1, side - 1), min(z0 + 1, side - 1)
        dy, dz = y - y0, z - z0
        pos.append((1 - dy) * (1 - dz) * table[y0 * side + z0] + (1 - dy) * dz * table[
            y0 * side + z1] + dy * (1 - dz) * table[y1 * side + z0] + dy * dz * table[
            y1 * side + z1])
    x = x + np.stack(pos)
    inv = 1.0 / (10000.0 ** (np.arange(0, hd // 2, 2) / (hd // 2)))
    angles = np.stack([np.concatenate([r * inv, c * inv]) for r, c in coords])
    deep = []
    n = x.shape[0]
    for i in range(cfg["depth"]):
        b = f"{v}.blocks.{i}"
        h = _ln(x, w[f"{b}.norm1.weight"], w[f"{b}.norm1.bias"])
        qkv = _lin(h, w[f"{b}.attn.qkv.weight"]) + w[f"{b}.attn.qkv.bias"]
        qkv = qkv.reshape(n, 3, heads, hd)
        q, k, val = (qkv[:, j].transpose(1, 0, 2) for j in range(3))
        q, k = _rot(q, angles), _rot(k, angles)
        ctx = _attend(q, k, val, 0.0)
        x = x + _lin(ctx.transpose(1, 0, 2).reshape(n, hidden), w[f"{b}.attn.proj.weight"]) + w[
            f"{b}.attn.proj.bias"]
        h = _ln(x, w[f"{b}.norm2.weight"], w[f"{b}.norm2.bias"])
        h = _gelu_tanh(_lin(h, w[f"{b}.mlp.linear_fc1.weight"]) + w[f"{b}.mlp.linear_fc1.bias"])
        x = x + _lin(h, w[f"{b}.mlp.linear_fc2.weight"]) + w[f"{b}.mlp.linear_fc2.bias"]
        if i in cfg["deepstack_visual_indexes"]:
            m = f"{v}.deepstack_merger_list.{cfg['deepstack_visual_indexes'].index(i)}"
            deep.append(_merge(w, m, x.reshape(n // 4, 4 * hidden), after=True))
    return _merge(w, f"{v}.merger", x, after=False), deep


def _merge(w: Mapping[str, np.ndarray], m: str, x: np.ndarray, *, after: bool) -> np.ndarray:
    if after:
        x = _ln(x, w[f"{m}.norm.weight"], w[f"{m}.norm.bias"])
    else:
        x = _ln(x, w[f"{m}.norm.weight"], w[f"{m}.norm.bias"])
        x = x.reshape(x.shape[0] // 4, -1)
    x = _gelu(_lin(x, w[f"{m}.linear_fc1.weight"]) + w[f"{m}.linear_fc1.bias"])
    return _lin(x, w[f"{m}.linear_fc2.weight"]) + w[f"{m}.linear_fc2.bias"]


def _side(prefix: str, text: str | None, images: int) -> str:
    if text is None and not images:
        return prefix + "NULL"
    return prefix + "<|vision_start|><|image_pad|><|vision_end|>" * images + (text or "")


def reference_prompt(instruction: str, q_text: str | None, q_images: int,
                     d_text: str | None, d_images: int) -> str:
    """The chat text of one pair, as the authors' template renders it."""
    return ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n"
            + "<Instruct>: " + instruction + _side("<Query>:", q_text, q_images)
            + _side("\n<Document>:", d_text, d_images)
            + "<|im_end|>\n<|im_start|>assistant\n")


def _parts(side: object) -> tuple[str | None, list[bytes]]:
    if isinstance(side, str):
        return side, []
    assert isinstance(side, Mapping)
    image = side.get("image")
    images = [] if image is None else list(image) if isinstance(image, list) else [image]
    return side.get("text"), images


def reference_vl_scores(folder: Path, query: object, documents: Sequence[object], *,
                        instruction: str = DEFAULT_INSTRUCTION, min_pixels: int = 4 * 32 * 32,
                        max_pixels: int = 1800 * 32 * 32, max_length: int | None = None
                        ) -> np.ndarray:
    """``h_last . (w_yes - w_no)`` per document (query/documents: text or
    ``{"text": ..., "image": bytes | [bytes]}``); ``max_length``: prompts must fit it (the
    reference does not cut)."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    config = json.loads((folder / "config.json").read_text())
    tc, vc = config["text_config"], config["vision_config"]
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad = int(tok.token_to_id("<|image_pad|>") or 0)
    t = "model.language_model"
    table = w.get("lm_head.weight", w[f"{t}.embed_tokens.weight"])
    row = table[tok.token_to_id("yes")] - table[tok.token_to_id("no")]
    q_text, q_images = _parts(query)
    scores = []
    for doc in documents:
        d_text, d_images = _parts(doc)
        text = reference_prompt(instruction, q_text, len(q_images), d_text, len(d_images))
        ids = tok.encode(text, add_special_tokens=False).ids
        visions = []
        for data in [*q_images, *d_images]:
            patches, grid = reference_patches(data, min_pixels=min_pixels, max_pixels=max_pixels)
            visions.append((*_vision(vc, w, patches, grid), grid))
        grid_tokens = sum(g[0] * g[1] * g[2] // 4 - 1 for *_, g in visions)
        if max_length is not None and len(ids) + grid_tokens > max_length:
            raise ValueError(f"reference prompt of {len(ids) + grid_tokens} tokens is over "
                             f"max_length {max_length}")
        scores.append(float(np.dot(_decode(tc, w, ids, pad, visions), row)))
    return np.asarray(scores, np.float64)


def _decode(tc: Mapping[str, Any], w: Mapping[str, np.ndarray], ids: list[int], pad: int,
            visions: list[tuple[np.ndarray, list[np.ndarray], tuple[int, int, int]]]
            ) -> np.ndarray:
    t = "model.language_model"
    expanded, image_rows, positions = [], [], []
    pos = 0
    it = iter(visions)
    for token in ids:
        if token != pad:
            expanded.append(token)
            positions.append((pos, pos, pos))
            pos += 1
            continue
        embeds, deep, (gt, gh, gw) = next(it)
        mh, mw = gh // 2, gw // 2
        start = pos
        for k in range(gt * mh * mw):
            expanded.append(pad)
            image_rows.append((len(expanded) - 1, embeds[k], [d[k] for d in deep]))
            positions.append((start + k // (mh * mw), start + (k // mw) % mh, start + k % mw))
        pos = max(max(p) for p in positions) + 1
    n = len(expanded)
    x = w[f"{t}.embed_tokens.weight"][expanded].copy()
    for j, e, _ in image_rows:
        x[j] = e
    hd, heads, kv = tc["head_dim"], tc["num_attention_heads"], tc["num_key_value_heads"]
    sec = tc["rope_scaling"]["mrope_section"]
    inv = 1.0 / (tc["rope_theta"] ** (np.arange(0, hd, 2) / hd))
    p3 = np.asarray(positions, np.float64)  # [n, 3]
    which = [1 if (j % 3 == 1 and j < 3 * sec[1]) else 2 if (j % 3 == 2 and j < 3 * sec[2])
             else 0 for j in range(hd // 2)]
    angles = np.stack([p3[:, which[j]] * inv[j] for j in range(hd // 2)], axis=-1)
    eps = tc["rms_norm_eps"]
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(tc["num_hidden_layers"]):
        p = f"{t}.layers.{i}"
        h = _rms(x, w[f"{p}.input_layernorm.weight"], eps)
        q = _lin(h, w[f"{p}.self_attn.q_proj.weight"]).reshape(n, heads, hd)
        keys = _lin(h, w[f"{p}.self_attn.k_proj.weight"]).reshape(n, kv, hd)
        vals = _lin(h, w[f"{p}.self_attn.v_proj.weight"]).reshape(n, kv, hd)
        q = _rot(_rms(q, w[f"{p}.self_attn.q_norm.weight"], eps).transpose(1, 0, 2), angles)
        keys = _rot(_rms(keys, w[f"{p}.self_attn.k_norm.weight"], eps).transpose(1, 0, 2),
                    angles)
        keys = np.repeat(keys, heads // kv, axis=0)
        vals = np.repeat(vals.transpose(1, 0, 2), heads // kv, axis=0)
        ctx = _attend(q, keys, vals, causal)
        x = x + _lin(ctx.transpose(1, 0, 2).reshape(n, -1), w[f"{p}.self_attn.o_proj.weight"])
        h = _rms(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        gate = _lin(h, w[f"{p}.mlp.gate_proj.weight"])
        up = _lin(h, w[f"{p}.mlp.up_proj.weight"])
        x = x + _lin(gate / (1 + np.exp(-gate)) * up, w[f"{p}.mlp.down_proj.weight"])
        for j, _, deep in image_rows:
            if i < len(deep):
                x[j] = x[j] + deep[i]
    return _rms(x, w[f"{t}.norm.weight"], eps)[-1]
