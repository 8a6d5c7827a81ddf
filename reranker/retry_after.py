"""``Retry-After`` as a bounded number of seconds: the one place it is parsed and capped.

A provider may answer ``Retry-After: inf``, ``1e300`` or a date in the year 9999; passed on as
they are, they become a plain-text 500 (``round(inf)``) or a 301-digit header. Everything that
reads a provider's wait (``reranker.providers``) or sends one to a client (the serve layer)
goes through :func:`bound_retry_after`, so no caller ever holds a value outside
``[0, RETRY_AFTER_CAP_S]``.
"""

from __future__ import annotations

import email.utils
import math
import time

__all__ = ["RETRY_AFTER_CAP_S", "bound_retry_after", "parse_retry_after"]

RETRY_AFTER_CAP_S = 3600.0
"""The longest wait a provider's ``Retry-After`` is passed on as (seconds)."""


def bound_retry_after(seconds: object) -> float | None:
    """A wait as a finite number in ``[0, RETRY_AFTER_CAP_S]``, or ``None`` when unknown.

    ``inf``, ``1e300`` or a date decades ahead become the cap; negatives become 0; NaN and
    non-numbers are ``None``.

    Example:
        >>> bound_retry_after(float("inf")), bound_retry_after(2.5), bound_retry_after("x")
        (3600.0, 2.5, None)
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    try:
        value = float(seconds)
    except OverflowError:  # an int too large for a float
        return RETRY_AFTER_CAP_S if seconds > 0 else 0.0
    if math.isnan(value):
        return None
    return min(max(value, 0.0), RETRY_AFTER_CAP_S)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date), bounded by
    :func:`bound_retry_after`, or ``None`` when it says nothing usable.

    Example:
        >>> parse_retry_after("2"), parse_retry_after("inf"), parse_retry_after("soon")
        (2.0, 3600.0, None)
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return bound_retry_after(seconds)
