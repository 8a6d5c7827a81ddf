"""Test kit of the ``qwen3_vl`` family (Qwen3-VL-Reranker): a tiny checkpoint in the real
layout and the float64 reference of the authors' rule; ``images`` builds test images in code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families.qwen3_vl_models import build_qwen3_vl_reranker
from reranker.testing.families.qwen3_vl_reference import (
    DEFAULT_INSTRUCTION,
    reference_vl_scores,
)

__all__ = ["NAME", "make_checkpoint", "make_image", "png_header", "reference_scores"]

NAME = "qwen3_vl"


def make_checkpoint(folder: Path, **shape: Any) -> Path:
    """A tiny deterministic Qwen3-VL-Reranker folder (:func:`build_qwen3_vl_reranker`)."""
    return build_qwen3_vl_reranker(folder, **shape)


def make_image(width: int, height: int, *, seed: int = 0, mode: str = "RGB",
               fmt: str = "PNG") -> bytes:
    """A deterministic encoded test image: smooth gradients plus noise (so resizing matters)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1),
                     (xx + yy) * 127 / max(width + height - 2, 1)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = (rng.uniform(0, 255, (height, width, 1))).astype(np.uint8)
        pixels = np.concatenate([pixels, alpha], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format=fmt)
    return buffer.getvalue()


def reference_scores(folder: Path, query: object, documents: list[object], *,
                     instruction: str = DEFAULT_INSTRUCTION, **options: Any) -> np.ndarray:
    """``logit_yes - logit_no`` per document; text or ``{"text", "image": bytes}`` sides."""
    return reference_vl_scores(folder, query, documents, instruction=instruction, **options)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` RGB pixels (a decompression bomb
    when large: a few bytes that would decode to ``3 * width * height``)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
