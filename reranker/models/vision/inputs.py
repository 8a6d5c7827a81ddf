"""What a query or document is when it may hold images: text, one or more images, or both.

The library takes a string (text), or a mapping ``{"text": ..., "image": ...}`` whose
``image`` is bytes, a file path, a ``data:image/...;base64,`` URI, or a list of those
(:func:`visual_part`). :func:`has_image` tells a text-only backend which documents it must
refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reranker.errors import InvalidInputError
from reranker.models.vision.images import ImageLimits, image_bytes

__all__ = ["MAX_IMAGES_PER_PART", "VisualPart", "has_image", "visual_part"]

MAX_IMAGES_PER_PART = 16


@dataclass(frozen=True)
class VisualPart:
    """One side of a pair: its text (``None``: none) and its images' encoded bytes."""

    text: str | None
    images: tuple[bytes, ...] = ()


def has_image(value: object) -> bool:
    """Whether ``value`` is a mapping carrying an ``image`` (what text-only backends refuse)."""
    return isinstance(value, Mapping) and value.get("image") is not None


def visual_part(value: object, field: str, limits: ImageLimits | None = None) -> VisualPart:
    """``value`` (text, or ``{"text", "image"}``) as a :class:`VisualPart`.

    Raises:
        InvalidInputError: another type, a non-string text, neither text nor image, more than
            :data:`MAX_IMAGES_PER_PART` images, or an image :func:`image_bytes` refuses.
    """
    if isinstance(value, str):
        return VisualPart(value)
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{field} must be a string or an object with 'text' and/or 'image', not "
            f"{type(value).__name__}", param=field)
    unknown = sorted(set(value) - {"text", "image"})
    if unknown:
        raise InvalidInputError(f"{field} has unknown keys {unknown}; it takes 'text' and "
                                "'image'", param=field)
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidInputError(f"{field}.text must be a string", param=f"{field}.text")
    raw = value.get("image")
    sources: Sequence[object] = (
        [] if raw is None else raw if isinstance(raw, (list, tuple)) else [raw])
    if len(sources) > MAX_IMAGES_PER_PART:
        raise InvalidInputError(f"{field}.image holds {len(sources)} images; at most "
                                f"{MAX_IMAGES_PER_PART}", param=f"{field}.image")
    if not sources and text is None:
        raise InvalidInputError(f"{field} has neither text nor an image", param=field)
    images = tuple(image_bytes(s, field=f"{field}.image" if len(sources) == 1
                               else f"{field}.image[{i}]", limits=limits)
                   for i, s in enumerate(sources))
    return VisualPart(text, images)
