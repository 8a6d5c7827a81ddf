"""Images that arrive over HTTP: base64, ``data:`` URIs, and (only when enabled) remote URLs.

An HTTP API must never read a server path named in a request, so an ``image`` string sent over
HTTP is a URL, a ``data:image/...;base64,`` URI, or plain base64 (Jina's m0 shape), and is
turned into bytes here (:func:`http_image`), at the ingress, before it goes anywhere.

Remote URLs are off by default (fetching URLs a client names is server-side request forgery).
When enabled (:class:`RemoteImages`), a URL is fetched only if its host is on the allow-list
(exact host or ``host:port``), with ``http``/``https`` only, no redirects followed, a timeout,
a byte cap enforced while streaming, and an ``image/*`` content type. The header of every image
is read (not decoded) so a decompression bomb is refused here with a 413.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reranker.errors import ImageTooLargeError, InvalidInputError
from reranker.models.vision.images import ImageLimits, image_bytes, pillow
from reranker.models.vision.inputs import MAX_IMAGES_PER_PART, has_image

__all__ = ["RemoteImages", "http_documents", "http_image"]


@dataclass(frozen=True)
class RemoteImages:
    """Whether and from where image URLs are fetched."""

    enabled: bool = False
    allowed_hosts: tuple[str, ...] = ()
    timeout_s: float = 10.0
    limits: ImageLimits = field(default_factory=ImageLimits)


def _fetch(url: str, where: str, remote: RemoteImages) -> bytes:
    if not remote.enabled:
        raise InvalidInputError(
            f"{where}: remote image URLs are off on this server; send the image as base64 or "
            "a data: URI (operators: images.remote.enabled with an allow-list)", param=where)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    hostport = f"{host}:{parts.port}" if parts.port else host
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInputError(f"{where}: only http(s) image URLs are fetched", param=where)
    allowed = {h.lower() for h in remote.allowed_hosts}
    if host not in allowed and hostport not in allowed:
        raise InvalidInputError(f"{where}: host {hostport!r} is not on the image allow-list",
                                param=where)
    import httpx

    cap = remote.limits.max_bytes
    try:
        with httpx.Client(timeout=remote.timeout_s, follow_redirects=False) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise InvalidInputError(
                    f"{where}: fetching the image answered HTTP {response.status_code}",
                    param=where)
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not kind.startswith("image/"):
                raise InvalidInputError(
                    f"{where}: the URL's content type is {kind or 'missing'!r}, not image/*",
                    param=where)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise ImageTooLargeError(
                    f"{where} is {declared} bytes; the limit is {cap} (max_image_bytes)",
                    param=where)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ImageTooLargeError(
                        f"{where} is over {cap} bytes (max_image_bytes)", param=where)
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise InvalidInputError(f"{where}: fetching the image timed out after "
                                f"{remote.timeout_s} s", param=where) from exc
    except httpx.HTTPError as exc:
        raise InvalidInputError(f"{where}: cannot fetch the image ({type(exc).__name__})",
                                param=where) from exc
    return b"".join(chunks)


def _check_header(data: bytes, where: str, limits: ImageLimits) -> None:
    """Refuse a non-image or an image over the pixel limit by its header alone."""
    try:
        with pillow().open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError
        if type(exc).__name__ == "DecompressionBombError":
            raise ImageTooLargeError(f"{where}: {exc}", param=where) from exc
        raise InvalidInputError(f"{where} is not an image Pillow can read", param=where) from exc
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{where} is {width}x{height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels} (max_image_pixels)", param=where)


def http_image(value: object, where: str, remote: RemoteImages) -> bytes:
    """The bytes of an ``image`` field of an HTTP request (URL, data URI or base64).

    Raises:
        InvalidInputError: not a string, bad base64, a refused URL, a failed fetch.
        ImageTooLargeError: over the byte or pixel limit (413).
    """
    limits = remote.limits
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where} must be a URL, a data: URI or base64 text",
                                param=where)
    if value.startswith(("http://", "https://")):
        data = _fetch(value, where, remote)
    elif value.startswith("data:"):
        data = image_bytes(value, field=where, limits=limits)
    else:
        if len(value) * 3 // 4 > limits.max_bytes:
            raise ImageTooLargeError(f"{where} is over {limits.max_bytes} bytes "
                                     "(max_image_bytes)", param=where)
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"{where} is neither a URL, a data: URI nor base64",
                                    param=where) from exc
    _check_header(data, where, limits)
    return data


def http_documents(documents: Sequence[Any], remote: RemoteImages,
                   text_of: Callable[[int, Any], str]) -> list[Any]:
    """Request documents for a vision reranker: image objects as ``{"text": ..., "image":
    bytes | [bytes]}``, every other document as ``text_of(index, document)``."""
    out: list[Any] = []
    for i, doc in enumerate(documents):
        where = f"documents[{i}]"
        if not has_image(doc):
            out.append(text_of(i, doc))
            continue
        raw = doc["image"]
        images = raw if isinstance(raw, list) else [raw]
        if len(images) > MAX_IMAGES_PER_PART:
            raise InvalidInputError(f"{where}.image holds {len(images)} images; at most "
                                    f"{MAX_IMAGES_PER_PART}", param=f"{where}.image")
        text = doc.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"{where}.text must be a string", param=f"{where}.text")
        data = [http_image(v, f"{where}.image" if len(images) == 1 else f"{where}.image[{j}]",
                           remote) for j, v in enumerate(images)]
        out.append({"text": text, "image": data if isinstance(raw, list) else data[0]})
    return out
