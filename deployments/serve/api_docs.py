"""What the OpenAPI document says beyond the models: error responses and request examples.

Every status a route can answer is documented with the body it really has
(``{"error": {"message", "type", "param"}}``, :class:`~deployments.serve.schemas.ErrorResponse`),
never FastAPI's default ``{"detail": [...]}``, and with an example drawn from the messages the
server sends. The statuses and types mirror ``deployments.serve.errors`` and the ingress's own
checks (``http_api``).
"""

from __future__ import annotations

from typing import Any

from deployments.serve.schemas import ErrorResponse

__all__ = ["RERANK_STATUSES", "error_responses", "examples"]

# status: (why it is answered, type, example message, example param)
_ERRORS: dict[int, tuple[str, str, str, str | None]] = {
    400: ("The body is not JSON, or the input is invalid (empty query or documents, an option "
          "the model cannot apply).", "invalid_request_error", "query must not be empty",
          "query"),
    401: ("The server has API keys and the request sent none or a wrong one "
          "('Authorization: Bearer KEY').", "authentication_error",
          "missing or invalid API key (send 'Authorization: Bearer KEY')", None),
    404: ("The model is not configured (GET /v1/models lists them).", "not_found_error",
          "unknown model 'gpt-9'; configured: words, local", "model"),
    413: ("The body is over max_body_bytes, or a text does not fit the model's window and "
          "may not be cut.", "request_too_large", "request body is larger than 2000000 bytes",
          None),
    422: ("A field has the wrong type or value (JSON types are never coerced).",
          "invalid_request_error", "top_n: Input should be greater than or equal to 1", "top_n"),
    429: ("The model's queue is full, the provider rate-limits, or the server holds too many "
          "request bodies; retry after the Retry-After header.", "rate_limit_error",
          "the server is at capacity (queue full); retry later", None),
    500: ("The model failed to score or load.", "backend_error",
          "the plugin cannot score this document", None),
    502: ("The provider API behind an llm model failed.", "provider_error",
          "cohere answered 500", None),
    503: ("The model is still starting, a replica failed, or its files cannot be downloaded; "
          "retry after the Retry-After header.", "service_unavailable_error",
          "model 'local' is still starting; retry shortly", None),
    504: ("The model or its provider did not answer within the request timeout.",
          "timeout_error", "a model replica did not answer in time", None),
}

RERANK_STATUSES = (400, 401, 404, 413, 422, 429, 500, 502, 503, 504)
"""What any rerank route may answer besides 200."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status with the error schema and an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        why, kind, message, param = _ERRORS[status]
        example = {"error": {"message": message, "type": kind, "param": param}}
        out[status] = {"model": ErrorResponse, "description": why,
                       "content": {"application/json": {"example": example}}}
    return out


_QUERY = "What is the capital of France?"
_DOCS = ["Paris is the capital of France.", "Berlin is in Germany.", "France borders Spain."]


def examples(dialect: str) -> dict[str, dict[str, Any]]:
    """OpenAPI ``examples`` of a request body: ``v1``, ``v2``, ``tei`` or ``documents``."""
    table: dict[str, dict[str, dict[str, Any]]] = {
        "v1": {
            "strings": {"summary": "Strings, best two", "value": {
                "query": _QUERY, "documents": _DOCS, "top_n": 2, "return_documents": True}},
            "objects": {"summary": "Objects ranked on chosen fields (Cohere v1, Jina)", "value": {
                "query": _QUERY, "rank_fields": ["title", "body"], "documents": [
                    {"title": "Paris", "body": _DOCS[0]}, {"title": "Berlin", "body": _DOCS[1]}]}},
        },
        "v2": {
            "basic": {"summary": "Cohere v2", "value": {
                "model": "default", "query": _QUERY, "documents": _DOCS, "top_n": 2}},
        },
        "tei": {
            "basic": {"summary": "text-embeddings-inference", "value": {
                "query": _QUERY, "texts": _DOCS, "return_text": True}},
        },
        "documents": {
            "basic": {"summary": "Infinity / vLLM (documents instead of texts)", "value": {
                "query": _QUERY, "documents": _DOCS, "top_n": 2, "return_documents": True}},
        },
    }
    return table[dialect]
