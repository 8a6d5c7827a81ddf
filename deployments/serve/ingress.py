"""The ingress deployment: the FastAPI app in a Serve replica, holding the variant handles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.serve import tracing
from deployments.serve.exposure import serve_http_host, warn_if_exposed
from deployments.serve.http_api import build_api
from deployments.serve.metrics import FallbackMetrics, IngressMetrics
from deployments.serve.service import IngressSettings, RerankService

__all__ = ["RerankIngress"]


@serve.deployment
@serve.ingress()
class RerankIngress:
    """HTTP entry point; the app is built per replica by ``__serve_build_asgi_app__``.

    Args:
        settings: models, limits, chunk size, keys.
        scorers: a deployment handle per variant that hosts models.
    """

    def __init__(self, settings: IngressSettings, scorers: Mapping[str, Any]) -> None:
        tracing.configure(settings.tracing_endpoint, f"{settings.tracing_service_name}-ingress")
        self.service = RerankService(settings, scorers, on_fallback=FallbackMetrics().record)
        self.metrics = IngressMetrics()
        warn_if_exposed(serve_http_host(), bool(settings.api_keys))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.service, self.metrics)
