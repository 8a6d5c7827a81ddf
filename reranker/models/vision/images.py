"""Image inputs: where an image's bytes come from, and decoding them with bounded cost.

An image is given as a path, raw bytes, or a ``data:image/...;base64,`` URI
(:func:`image_bytes`); remote URLs are fetched only by the serving layer, behind its own
allow-list (:mod:`reranker.models.vision.remote`). :func:`decode_image` reads the header
first and refuses an image whose pixel count is over the limit before any pixel is decoded (a
decompression bomb: a few KB of PNG that inflate to gigabytes), then converts it to RGB as
``qwen_vl_utils`` does (transparent pixels over white).

Pillow is the optional ``vision`` extra (``pip install 'reranker[vision]'``): imported on
first use, with an error that names the extra.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reranker.errors import ConfigError, ImageTooLargeError, InvalidInputError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ImageLimits",
    "decode_image",
    "image_bytes",
    "pillow",
]

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
"""Decoded pixels per image (an A4 page at 600 dpi is 35 M); RGB decoding costs 3 bytes each."""
DEFAULT_MAX_IMAGE_BYTES = 20 * 2**20


@dataclass(frozen=True)
class ImageLimits:
    """What one image may cost before it is refused (:class:`ImageTooLargeError`)."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES


def pillow() -> Any:
    """``PIL.Image``, or a ``ConfigError`` naming the extra that installs it."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigError(
            "image documents need Pillow: pip install 'reranker[vision]'") from exc
    return Image


def image_bytes(source: object, *, field: str = "image",
                limits: ImageLimits | None = None) -> bytes:
    """The encoded bytes of an image given as bytes, a path or a base64 ``data:`` URI.

    Raises:
        InvalidInputError: another type, a missing file, a malformed data URI, or an
            ``http(s)://`` URL (remote images are the serving layer's, when enabled).
        ImageTooLargeError: more than ``limits.max_bytes`` bytes.
    """
    limits = limits or ImageLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        text = str(source)
        if text.startswith("data:"):
            data = _data_uri(text, field, limits)
        elif text.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"{field}: remote image URLs are not fetched here; pass the bytes, a path or a "
                "data: URI (the HTTP service fetches URLs only when remote_images is enabled)",
                param=field)
        else:
            path = Path(text)
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise InvalidInputError(f"{field}: cannot read image file {text!r}: {exc}",
                                        param=field) from exc
            _check_bytes(size, field, limits)
            data = path.read_bytes()
    else:
        raise InvalidInputError(
            f"{field} must be bytes, a file path or a data: URI, not {type(source).__name__}",
            param=field)
    _check_bytes(len(data), field, limits)
    if not data:
        raise InvalidInputError(f"{field} is empty", param=field)
    return data


def _check_bytes(size: int, field: str, limits: ImageLimits) -> None:
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            f"{field} is {size} bytes; the limit is {limits.max_bytes} (max_image_bytes)",
            param=field)


def _data_uri(text: str, field: str, limits: ImageLimits) -> bytes:
    head, sep, payload = text.partition(",")
    if not sep or not head.endswith(";base64") or not head[5:].startswith("image/"):
        raise InvalidInputError(
            f"{field}: a data URI must read data:image/<type>;base64,<data>", param=field)
    # base64 is 4/3 of the bytes: refuse before decoding a huge payload.
    _check_bytes(len(payload) * 3 // 4, field, limits)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{field}: invalid base64 in data URI", param=field) from exc


def decode_image(data: bytes, *, field: str = "image",
                 limits: ImageLimits | None = None) -> Image:
    """Decode ``data`` to an RGB image, refusing more than ``limits.max_pixels`` pixels.

    Raises:
        ImageTooLargeError: the header declares more pixels than the limit.
        InvalidInputError: not an image Pillow reads, or a truncated or corrupt one.
    """
    limits = limits or ImageLimits()
    image_module = pillow()
    try:
        image = image_module.open(io.BytesIO(data))  # reads the header only
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, OSError
        if type(exc).__name__ == "DecompressionBombError":
            raise ImageTooLargeError(f"{field}: {exc}", param=field) from exc
        raise InvalidInputError(f"{field} is not an image Pillow can read ({exc})",
                                param=field) from exc
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{field} is {width}x{height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels} (max_image_pixels)", param=field)
    if width < 1 or height < 1:
        raise InvalidInputError(f"{field} has no pixels ({width}x{height})", param=field)
    try:
        image.load()
        return _to_rgb(image_module, image)
    except Exception as exc:
        raise InvalidInputError(f"{field}: cannot decode the image ({exc})", param=field) from exc


def _to_rgb(image_module: Any, image: Image) -> Image:
    if image.mode == "RGBA":
        white = image_module.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")
