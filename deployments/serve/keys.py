"""API keys: read once at the edge (the app builder, each node's proxy), compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence

from pydantic import SecretStr

from reranker.errors import ConfigError

__all__ = ["key_index", "read_api_keys"]


def read_api_keys(env_name: str | None, environ: Mapping[str, str] | None = None
                  ) -> tuple[SecretStr, ...]:
    """The keys in ``env_name`` (comma-separated); none when ``env_name`` is ``None``.

    Raises:
        ConfigError: the variable is named but unset or empty (never shows its value).
    """
    if env_name is None:
        return ()
    raw = (os.environ if environ is None else environ).get(env_name, "")
    keys = tuple(SecretStr(k.strip()) for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigError(
            f"api_key_env is {env_name!r} but that environment variable is unset or empty; "
            "set it to one or more comma-separated keys, or drop api_key_env to serve "
            "without authentication"
        )
    return keys


def key_index(presented: str, keys: Sequence[SecretStr]) -> int | None:
    """The position of ``presented`` among ``keys``, or ``None``; constant-time against every
    key (all are compared, whatever matches first)."""
    given = presented.encode()
    matches = [hmac.compare_digest(given, k.get_secret_value().encode()) for k in keys]
    return matches.index(True) if any(matches) else None
