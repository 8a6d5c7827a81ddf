"""Qwen-VL image preprocessing, as the authors' pipeline does it: resize, normalise, patchify.

The rule is ``qwen_vl_utils.fetch_image`` followed by the Qwen2-VL image processor with
``do_resize=False`` (what Qwen3-VL-Reranker's own script runs):

1. :func:`smart_resize`: both sides rounded to a multiple of ``factor = patch_size *
   merge_size`` (32 for Qwen3-VL), then scaled (keeping the aspect ratio) into
   ``[min_pixels, max_pixels]``; the image is resized to that size with Pillow's bicubic filter.
2. ``(pixel / 255 - mean) / std`` per channel.
3. The frame is repeated ``temporal_patch_size`` times and cut into ``patch_size`` squares,
   ordered so that the ``merge_size x merge_size`` squares one merged token covers are
   consecutive: ``pixel_values [grid_t * grid_h * grid_w, channels * temporal * patch^2]``.

:func:`grid_inputs` derives what the vision tower needs from the grid alone: the bilinear
interpolation of the learned position table (Qwen3-VL's ``fast_pos_embed_interpolate``: four
corner indices and weights per patch) and the (row, column) of each patch for the 2-D RoPE.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reranker.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["GridInputs", "ImagePatches", "VisionPreprocess", "grid_inputs", "smart_resize"]

_MAX_RATIO = 200


@dataclass(frozen=True)
class VisionPreprocess:
    """The preprocessing settings of one model (``preprocessor_config.json`` and the
    reranker script's pixel bounds)."""

    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    #: Qwen3-VL-Reranker's script: 4 to 1800 merged tokens of 32 x 32 pixels.
    min_pixels: int = 4 * 32 * 32
    max_pixels: int = 1800 * 32 * 32

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_folder(cls, folder: Path, *, min_pixels: int | None = None,
                    max_pixels: int | None = None) -> VisionPreprocess:
        """Read ``preprocessor_config.json`` (defaults: Qwen3-VL's) with the pixel bounds."""
        path = folder / "preprocessor_config.json"
        raw: dict[str, object] = {}
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except ValueError as exc:
                raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
        base = cls()

        def size(key: str, default: int) -> int:
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 64:
                raise ModelLoadError(f"{path}: {key}={value!r} is not a size in 1..64")
            return value

        def triple(key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
            value = raw.get(key, list(default))
            if (not isinstance(value, list) or len(value) != 3
                    or not all(isinstance(v, (int, float)) for v in value)):
                raise ModelLoadError(f"{path}: {key} must be three numbers")
            return (float(value[0]), float(value[1]), float(value[2]))

        std = triple("image_std", base.image_std)
        if min(std) <= 0:
            raise ModelLoadError(f"{path}: image_std must be positive")
        settings = cls(
            patch_size=size("patch_size", base.patch_size),
            temporal_patch_size=size("temporal_patch_size", base.temporal_patch_size),
            merge_size=size("merge_size", base.merge_size),
            image_mean=triple("image_mean", base.image_mean), image_std=std,
        )
        low = min_pixels if min_pixels is not None else 4 * settings.factor**2
        high = max_pixels if max_pixels is not None else 1800 * settings.factor**2
        if not 0 < low <= high:
            raise ModelLoadError(f"min_pixels {low} and max_pixels {high}: need 0 < min <= max")
        return cls(settings.patch_size, settings.temporal_patch_size, settings.merge_size,
                   settings.image_mean, settings.image_std, low, high)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int
                 ) -> tuple[int, int]:
    """The (height, width) an image is resized to: multiples of ``factor`` whose product lies
    in ``[min_pixels, max_pixels]``, the aspect ratio kept as closely as that allows.

    Raises:
        InvalidInputError: an aspect ratio over 200 (the authors refuse it too).
    """
    if max(height, width) / min(height, width) > _MAX_RATIO:
        raise InvalidInputError(
            f"image aspect ratio {max(height, width) / min(height, width):.0f} is over "
            f"{_MAX_RATIO}", param="image")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImagePatches:
    """One image as the vision tower takes it."""

    pixel_values: np.ndarray  # float32 [grid_t * grid_h * grid_w, C * T * P * P]
    grid: tuple[int, int, int]  # (t, h, w) in patches

    def merged_tokens(self, merge_size: int) -> int:
        """How many ``<|image_pad|>`` tokens the image takes in the prompt."""
        t, h, w = self.grid
        return t * h * w // (merge_size * merge_size)


def patchify(image: Image, settings: VisionPreprocess) -> ImagePatches:
    """Resize, normalise and cut an RGB image into the tower's patches."""
    s = settings
    height, width = smart_resize(image.height, image.width, s.factor, s.min_pixels,
                                 s.max_pixels)
    from reranker.models.vision.images import pillow

    resized = image.resize((width, height), resample=pillow().Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32)[..., :3]  # [H, W, C]
    mean = np.asarray(s.image_mean, np.float32)
    std = np.asarray(s.image_std, np.float32)
    pixels = ((pixels * np.float32(1 / 255) - mean) / std).transpose(2, 0, 1)  # [C, H, W]
    frames = np.repeat(pixels[None], s.temporal_patch_size, axis=0)  # [T, C, H, W]
    p, m, t = s.patch_size, s.merge_size, s.temporal_patch_size
    gh, gw = height // p, width // p
    blocks = frames.reshape(1, t, 3, gh // m, m, p, gw // m, m, p)
    blocks = blocks.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    values = np.ascontiguousarray(blocks.reshape(gh * gw, 3 * t * p * p), dtype=np.float32)
    return ImagePatches(values, (1, gh, gw))


@dataclass(frozen=True)
class GridInputs:
    """The vision tower's position inputs for one grid (shared by images of that grid)."""

    pos_index: np.ndarray  # int64 [4, N]: corner rows of the learned position table
    pos_weight: np.ndarray  # float32 [4, N]: their bilinear weights
    rope_positions: np.ndarray  # int64 [N, 2]: (row, column) of each patch


def _merge_order(a: np.ndarray, t: int, h: int, w: int, m: int) -> np.ndarray:
    # [..., h, w] -> [..., t * h * w] in the patches' order (merge blocks consecutive).
    lead = a.shape[:-2]
    a = np.broadcast_to(a[..., None, :, :], (*lead, t, h, w))
    a = a.reshape(*lead, t, h // m, m, w // m, m)
    axes = len(lead)
    a = a.transpose(*range(axes), axes, axes + 1, axes + 3, axes + 2, axes + 4)
    return a.reshape(*lead, t * h * w)


def grid_inputs(grid: tuple[int, int, int], merge_size: int, num_position_embeddings: int
                ) -> GridInputs:
    """Position-table interpolation and RoPE positions for a ``(t, h, w)`` patch grid."""
    t, h, w = grid
    side = int(num_position_embeddings**0.5)
    # torch.linspace in float32, truncated to int, as Qwen3-VL computes it.
    h_pos = np.linspace(0, side - 1, h, dtype=np.float64).astype(np.float32)
    w_pos = np.linspace(0, side - 1, w, dtype=np.float64).astype(np.float32)
    h_floor, w_floor = h_pos.astype(np.int64), w_pos.astype(np.int64)
    h_ceil, w_ceil = np.minimum(h_floor + 1, side - 1), np.minimum(w_floor + 1, side - 1)
    dh, dw = (h_pos - h_floor).astype(np.float32), (w_pos - w_floor).astype(np.float32)
    rows = (h_floor * side, h_floor * side, h_ceil * side, h_ceil * side)
    cols = (w_floor, w_ceil, w_floor, w_ceil)
    wh = (1 - dh, 1 - dh, dh, dh)
    ww = (1 - dw, dw, 1 - dw, dw)
    index = np.stack([r[:, None] + c[None, :] for r, c in zip(rows, cols, strict=True)])
    weight = np.stack([a[:, None] * b[None, :] for a, b in zip(wh, ww, strict=True)])
    row_ids = np.broadcast_to(np.arange(h)[:, None], (h, w))
    col_ids = np.broadcast_to(np.arange(w)[None, :], (h, w))
    rope = np.stack([_merge_order(row_ids, t, h, w, merge_size),
                     _merge_order(col_ids, t, h, w, merge_size)], axis=-1)
    return GridInputs(
        pos_index=np.ascontiguousarray(_merge_order(index, t, h, w, merge_size), np.int64),
        pos_weight=np.ascontiguousarray(_merge_order(weight, t, h, w, merge_size), np.float32),
        rope_positions=np.ascontiguousarray(rope, np.int64),
    )
