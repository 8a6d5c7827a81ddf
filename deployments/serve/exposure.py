"""A warning at start when the service is reachable beyond this machine without API keys.

Serve's proxy binds the host in ``http_options`` (``serve_config.yaml``) or ``reranker serve
--host``; with ``0.0.0.0`` and no ``api_key_env`` anyone who can reach the port can spend the
service's CPU and its provider quota. That may be intended (a private network), so it is a
warning, not an error.
"""

from __future__ import annotations

import ipaddress
import logging

__all__ = ["exposure_warning", "is_loopback", "serve_http_host", "warn_if_exposed"]

logger = logging.getLogger("ray.serve")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``127.0.0.1``, ``::1``,
    ``localhost``); wildcard and other addresses do not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name that may resolve anywhere


def exposure_warning(host: str | None, has_api_keys: bool) -> str | None:
    """The warning for listening on ``host`` with or without keys; ``None`` when there is none
    (keys configured, a loopback host, or a host that is not known)."""
    if has_api_keys or host is None or is_loopback(host):
        return None
    return (
        f"the rerank API listens on {host}, beyond this machine, and no API keys are "
        "configured: anyone who reaches the port can use it. Set api_key_env (clients then "
        "send a bearer token) or listen on 127.0.0.1."
    )


def warn_if_exposed(host: str | None, has_api_keys: bool) -> bool:
    """Log :func:`exposure_warning` if there is one; whether it was logged."""
    message = exposure_warning(host, has_api_keys)
    if message is not None:
        logger.warning(message)
    return message is not None


def serve_http_host() -> str | None:
    """The host Serve's HTTP proxies bind, asked of the Serve controller; ``None`` if unknown.

    Called in the ingress replica, which is the one place that sees both the keys and the
    running Serve instance whichever way it was started (``serve run``, ``serve deploy``,
    ``reranker serve``).
    """
    import ray

    if not ray.is_initialized():
        return None  # asking would start a Ray of its own
    try:
        # Private API, the only way a replica can read http_options; a failure only skips the
        # warning.
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
        host = client.http_config.host if client is not None else None
    except Exception:
        return None
    return str(host) if host is not None else None
