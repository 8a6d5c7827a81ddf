"""The exception tree of reranker.

Every failure the library raises on purpose is a :class:`RerankerError`. The HTTP layer maps the
classes to status codes in one place (``deployments``), so new subclasses must say which family
they belong to by inheriting from the closest existing class.
"""

from __future__ import annotations

from typing import Any

from reranker.retry_after import bound_retry_after

__all__ = [
    "RerankerError",
    "InvalidInputError",
    "ImageTooLargeError",
    "InputTooLongError",
    "RequestTooLargeError",
    "ConfigError",
    "ModelNotFoundError",
    "DownloadError",
    "ModelLoadError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "BackendError",
    "BackendTimeoutError",
]


def _rebuild(cls: type[RerankerError], args: tuple[Any, ...], fields: dict[str, Any]
             ) -> RerankerError:
    """Unpickle an error without calling its (keyword-only) constructor."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(fields)
    return exc


class RerankerError(Exception):
    """Root of every error raised by reranker on purpose.

    Errors pickle with their fields (``param``, ``provider``, ``status_code``,
    ``retry_after_s``), so they cross process boundaries (Ray replicas, workers) as they are.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class InvalidInputError(RerankerError, ValueError):
    """A request is malformed: empty query, no documents, wrong types, bad ``top_k``.

    ``param`` names the offending field so that an API can point the caller at it.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InputTooLongError(InvalidInputError):
    """A text does not fit the model and the request asked for it not to be cut."""


class RequestTooLargeError(InvalidInputError):
    """A request asks for more work than a configured budget allows (``max_request_tokens``);
    ``param`` names the limit."""


class ImageTooLargeError(RequestTooLargeError):
    """An image's encoded bytes or decoded pixel count exceed the configured limit (a
    decompression bomb, a poster-sized scan); ``param`` names the document."""


class ConfigError(RerankerError, ValueError):
    """A backend configuration or shorthand cannot be understood."""


class ModelNotFoundError(RerankerError, LookupError):
    """A model name does not resolve: unknown preset, plugin, repo or local folder."""


class DownloadError(RerankerError):
    """Fetching model files failed (network, 404, interrupted transfer, offline cache miss)."""


class ModelLoadError(RerankerError):
    """Model files exist but cannot be used: broken ONNX, wrong outputs, bad tokenizer."""


class ProviderError(RerankerError):
    """A hosted rerank API failed.

    ``retry_after_s`` is the provider's own ``Retry-After`` where it sent one, always bounded
    by :func:`reranker.retry_after.bound_retry_after`; ``None`` otherwise.
    """

    def __init__(
        self, message: str, *, provider: str | None = None, retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.retry_after_s = bound_retry_after(retry_after_s)


class ProviderStatusError(ProviderError):
    """The provider answered with an HTTP error status (``status_code`` holds it)."""

    def __init__(
        self, message: str, *, provider: str | None = None, status_code: int,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retry_after_s=retry_after_s)
        self.status_code = status_code


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the configured time, retries included."""


class ProviderRateLimitError(ProviderStatusError):
    """The provider kept answering 429 after the allowed retries."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=429, retry_after_s=retry_after_s)


class ProviderResponseError(ProviderError):
    """The provider answered 2xx with a body we cannot use (bad JSON, missing indices)."""


class BackendError(RerankerError):
    """A backend (usually a plugin) failed or returned unusable scores."""


class BackendTimeoutError(BackendError):
    """A backend call took longer than its configured timeout."""
