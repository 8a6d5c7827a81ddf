"""Float64 numpy pieces the encoder-family references share (DeBERTa-v2, mGTE, JinaBERT, jina-v2).

Each reference runs one (query, document) pair at a time over its real tokens only: the four
families are right-padded and their positions (relative buckets, rotary, ALiBi, XLM-R offsets)
do not depend on padding, so a pair's score is the same padded or not, and the reference never
has to mimic a mask. Tokenization is ``transformers.AutoTokenizer`` with the authors' call
(``truncation=True``, the authors' ``max_length``), the way the reference tokenizes elsewhere in
the kit. Nothing here is shared with the graph builder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TinyWeights",
    "attention",
    "dense",
    "encode_pairs",
    "gelu",
    "layer_norm",
    "load_checkpoint",
        "save_checkpoint",
]

_math_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as ``torch.nn.GELU()`` and ``ACT2FN["gelu"]``."""
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional; math.erf is exact but slow
        return np.asarray(0.5 * x * (1.0 + np.asarray(_math_erf(x / math.sqrt(2.0)), np.float64)))
    return np.asarray(0.5 * x * (1.0 + erf(x / math.sqrt(2.0))), dtype=np.float64)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def dense(w: dict[str, np.ndarray], x: np.ndarray, name: str) -> np.ndarray:
    """``nn.Linear`` named ``name``; a missing ``.bias`` means ``bias=False``."""
    y = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return y if bias is None else y + bias


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int,
              bias: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
              scale: float | None = None) -> np.ndarray:
    """Softmax attention over every token, head by head; ``bias(h, q_h, k_h)`` is added to the
    scaled scores of head ``h`` (ALiBi, relative positions)."""
    n, width = q.shape
    d = width // heads
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = np.zeros((n, v.shape[1]))
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        scores = q[:, cols] @ k[:, cols].T * scale
        if bias is not None:
            scores = scores + bias(h, q[:, cols], k[:, cols])
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        out[:, cols] = probs @ v[:, cols]
    return out


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``config.json`` and every tensor of ``model.safetensors`` (or its shards) in float64."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    index = folder / "model.safetensors.index.json"
    shards = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
              if index.is_file() else ["model.safetensors"])
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        tensors.update(load_file(str(folder / shard)))
    return config, {name: t.astype(np.float64) for name, t in tensors.items()}


def save_checkpoint(folder: Path, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
    """Write ``config.json`` and ``model.safetensors`` (float32, "pt" format as the Hub has)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    save_file(arrays, str(folder / "model.safetensors"), metadata={"format": "pt"})


class TinyWeights:
    """Deterministic float32 weights for a tiny checkpoint, in insertion order.

    ``linear`` draws a weight of gain ``gain / sqrt(in)`` (gain 2 makes attention peaked, so
    a wrong mask or position term moves the scores visibly) and a small non-zero bias.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.RandomState(seed)
        self.w: dict[str, np.ndarray] = {}

    def linear(self, name: str, out_dim: int, in_dim: int, *, gain: float = 1.0,
               bias: bool = True) -> None:
        self.w[f"{name}.weight"] = self.rng.normal(0.0, gain / np.sqrt(in_dim), (out_dim, in_dim))
        if bias:
            self.w[f"{name}.bias"] = self.rng.normal(0.0, 0.05, (out_dim,))

    def norm(self, name: str, width: int) -> None:
        self.w[f"{name}.weight"] = 1.0 + self.rng.normal(0.0, 0.1, (width,))
        self.w[f"{name}.bias"] = self.rng.normal(0.0, 0.05, (width,))

    def table(self, name: str, rows: int, width: int, std: float = 0.2) -> None:
        self.w[f"{name}.weight"] = self.rng.normal(0.0, std, (rows, width))

    def classifier(self, name: str, labels: int, width: int) -> None:
        self.w[f"{name}.weight"] = self.rng.normal(0.0, 2.0 / np.sqrt(width), (labels, width))
        # A clearly non-zero bias catches a runtime that drops it.
        self.w[f"{name}.bias"] = 0.5 - 0.4 * np.arange(labels) + self.rng.normal(0.0, 0.1, labels)


def encode_pairs(folder: str | Path, query: str, documents: Sequence[str],
                 max_length: int) -> list[dict[str, np.ndarray]]:
    """Per pair, the unpadded ``input_ids`` (and ``token_type_ids`` where the tokenizer gives
    them) of ``tokenizer(query, doc, truncation=True, max_length=max_length)``.

    Called with lists, as the authors' batch call does: with two plain strings transformers
    encodes an empty document as a single sequence instead of a pair.
    """
    from transformers import AutoTokenizer

    # The custom-code families name their own config class in auto_map; the tokenizer is a
    # stock one, and transformers would otherwise ask whether to run remote code.
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    docs = list(documents)
    enc = tokenizer([query] * len(docs), docs, truncation=True, max_length=max_length)
    out = []
    for i in range(len(docs)):
        row = {"input_ids": np.asarray(enc["input_ids"][i], dtype=np.int64)}
        if "token_type_ids" in enc:
            row["token_type_ids"] = np.asarray(enc["token_type_ids"][i], dtype=np.int64)
        out.append(row)
    return out
