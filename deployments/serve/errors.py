"""HTTP errors: the one place where failures become status codes and error bodies.

Every error response has the body ``{"error": {"message", "type", "param"}}``. Library errors
(:class:`~reranker.errors.RerankerError` subclasses), Ray Serve back-pressure and replica
failures, and the ingress's own checks all go through :func:`to_api_error`.

Errors raised in a scorer replica cross the process boundary as the exceptions themselves:
library errors pickle with their fields (``reranker.errors``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from reranker import errors as rerr

__all__ = [
    "MAX_RETRY_AFTER_S",
    "ApiError",
    "error_response",
    "retry_after_header",
    "to_api_error",
]

#: The longest ``Retry-After`` this app sends, whatever a provider or the proxy asked for.
MAX_RETRY_AFTER_S = 3600


@dataclass(eq=False)
class ApiError(Exception):
    """An error with its HTTP status, ready to be sent."""

    status: int
    type: str
    message: str
    param: str | None = None
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


# Most specific first: the first class an error is an instance of decides its status.
_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (rerr.RequestTooLargeError, 413, "request_too_large"),
    (rerr.InputTooLongError, 413, "invalid_request_error"),
    (rerr.InvalidInputError, 400, "invalid_request_error"),
    (rerr.ModelNotFoundError, 404, "not_found_error"),
    (rerr.ProviderRateLimitError, 429, "rate_limit_error"),
    (rerr.ProviderTimeoutError, 504, "provider_timeout_error"),
    (rerr.ProviderError, 502, "provider_error"),
    (rerr.BackendTimeoutError, 504, "backend_timeout_error"),
    (rerr.BackendError, 500, "backend_error"),
    (rerr.DownloadError, 503, "model_unavailable_error"),
    (rerr.ModelLoadError, 500, "model_load_error"),
    (rerr.ConfigError, 500, "configuration_error"),
    (rerr.RerankerError, 500, "internal_error"),
)


def _ray_error(exc: BaseException) -> ApiError | None:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, RequestCancelledError

    if isinstance(exc, BackPressureError):
        return ApiError(
            429, "rate_limit_error", "the server is at capacity (queue full); retry later",
            retry_after_s=1.0,
        )
    if isinstance(exc, (ActorDiedError, ActorUnavailableError, RayActorError)):
        return ApiError(
            503, "service_unavailable_error",
            "a model replica failed while serving this request; retry", retry_after_s=1.0,
        )
    if isinstance(exc, RequestCancelledError):
        return ApiError(503, "service_unavailable_error", "the request was cancelled")
    return None


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the :class:`ApiError` the client receives."""
    if isinstance(exc, ApiError):
        return exc
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            retry = getattr(exc, "retry_after_s", None)
            if status == 429 and retry is None:  # upstream gave no usable wait (none, nan)
                retry = 1.0
            return ApiError(status, kind, str(exc), getattr(exc, "param", None), retry)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(504, "timeout_error", "a model replica did not answer in time")
    ray_err = _ray_error(exc)
    if ray_err is not None:
        return ray_err
    return ApiError(500, "internal_error", f"internal error ({type(exc).__name__})")


def retry_after_header(seconds: float | None) -> str | None:
    """``Retry-After`` for a wait of ``seconds``: whole seconds from 1 to ``MAX_RETRY_AFTER_S``
    (what came from upstream may be ``inf``, ``nan``, negative or 300 digits); ``None`` for none.
    """
    if seconds is None:
        return None
    try:
        wait = float(seconds)
    except OverflowError:  # an int past float's range
        wait = math.inf
    except (TypeError, ValueError):
        return "1"
    if math.isnan(wait):
        return "1"
    return str(round(min(max(wait, 1.0), float(MAX_RETRY_AFTER_S))))


def error_response(err: ApiError, extra: dict[str, Any] | None = None) -> JSONResponse:
    """The JSON response for ``err``, with ``Retry-After`` and ``WWW-Authenticate`` headers.

    ``extra`` adds top-level fields next to ``error`` (``/ready`` lists its variants).
    """
    headers: dict[str, str] = {}
    retry_after = retry_after_header(err.retry_after_s)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body: dict[str, Any] = {
        "error": {"message": err.message, "type": err.type, "param": err.param}, **(extra or {})
    }
    return JSONResponse(body, status_code=err.status, headers=headers)
