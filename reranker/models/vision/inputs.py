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


def rerank_inputs(query: object, documents: object, text_field: str, *, takes_images: bool,
                  backend: str) -> tuple[object, list[object]]:
    """A call's query and documents as the backend takes them.

    A backend that takes images (``takes_images``) gets strings as they are and mappings as
    ``{"text": doc[text_field], "image": doc["image"]}``; a text-only backend gets the texts
    and refuses any ``image``, naming the field.

    Raises:
        InvalidInputError: what :func:`~reranker.types.document_texts` and
            :func:`~reranker.types.validate_query` refuse, or an image for a text-only backend.
    """
    from reranker.types import document_texts, validate_query

    if not takes_images:
        for where, value in [("query", query), *(
                (f"documents[{i}]", d) for i, d in enumerate(
                    documents if isinstance(documents, Sequence)
                    and not isinstance(documents, (str, bytes)) else []))]:
            if has_image(value):
                raise InvalidInputError(
                    f"{where}.image: backend {backend!r} reads text only; rank images with a "
                    "vision reranker (preset 'visual', or a Qwen3-VL-Reranker custom model)",
                    param=f"{where}.image")
        return validate_query(query), list(document_texts(documents, text_field))
    if has_image(query):
        assert isinstance(query, Mapping)
        q: object = {"text": query.get("text"), "image": query["image"]}
    else:
        q = validate_query(query)
    texts = document_texts([{text_field: ""} if has_image(d) else d for d in documents]
                           if isinstance(documents, Sequence)
                           and not isinstance(documents, (str, bytes)) else documents,
                           text_field)
    out: list[object] = []
    for doc, text in zip(documents, texts, strict=True):  # type: ignore[call-overload]
        if has_image(doc):
            out.append({"text": doc.get(text_field), "image": doc["image"]})
        else:
            out.append(text)
    return q, out
