"""Request and response bodies of the HTTP API, in the shapes existing clients already send.

- ``POST /v1/rerank``: Cohere v1 and Jina (``documents`` as strings or objects, ``rank_fields``,
  ``return_documents``, ``max_chunks_per_doc``).
- ``POST /v2/rerank``: Cohere v2 (``documents`` as strings, ``max_tokens_per_doc``).
- ``POST /rerank``: text-embeddings-inference (``texts``, ``raw_scores``, ``return_text``), which
  answers with a bare list; or, when the body has ``documents`` instead of ``texts``, Infinity and
  vLLM (``query``, ``documents``, ``top_n``), which answer with an object of ``results``.

Unknown request fields are ignored, as the providers' newer SDKs send fields older servers do
not know (``priority``, ``relevant_spans``). Known fields are strict: JSON types are never
coerced (``top_n: true``, ``top_n: "3"`` and ``truncate: 0`` are 422s naming the field, as the
library refuses them too), so a client's mistake is reported instead of guessed at.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from reranker.registry import variant_names

__all__ = [
    "DocumentsRerankRequest",
    "DocumentsRerankResponse",
    "DocumentsResult",
    "ErrorDetail",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "RerankAnswer",
    "TeiRerankRequest",
    "TeiResult",
    "V1RerankRequest",
    "V1RerankResponse",
    "V1Result",
    "V2RerankRequest",
    "V2RerankResponse",
    "V2Result",
]

_MODEL_HELP = "A configured model name (GET /v1/models); default: the server's default model."
_QUERY_HELP = "The search query the documents are ranked for (not empty)."
_TOP_N_HELP = "Return only the best N results (N >= 1); default: all, best first."
_INSTRUCTION_HELP = (
    "Extension: the task instruction of an instruction-following reranker (Qwen3-Reranker), "
    "e.g. 'Given a legal question, retrieve passages that answer it'. Default: the model's "
    "configured instruction. A model that takes none answers 400 naming this field."
)
_MIN_SCORE_HELP = (
    "Extension: drop results scoring below this, on the score returned (a probability unless "
    "raw scores); with top_n, at most top_n results, all at or above it. Default: the model's "
    "configured min_score, else none."
)
_SPANS_HELP = (
    "Extension: give each result the character span [start, end) of the document's "
    "best-scoring window, for models that chunk long documents."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class V1RerankRequest(_Request):
    """Cohere v1 / Jina rerank request."""

    model: str | None = Field(default=None, description=_MODEL_HELP)
    query: str = Field(description=_QUERY_HELP)
    documents: list[str | dict[str, Any]] = Field(
        description="Strings, or objects whose 'text' (or rank_fields) hold the text; "
        "for vision rerankers, objects with an 'image' (base64, a data: URI or, where the "
        "server allows, a URL), with or without 'text' (Jina m0's shape)."
    )
    top_n: int | None = Field(default=None, ge=1, description=_TOP_N_HELP)
    return_documents: bool = Field(default=False, description="Attach each document.")
    rank_fields: list[str] | None = Field(
        default=None, description="Object fields to rank on, joined as 'field: value' lines."
    )
    max_chunks_per_doc: int | None = Field(
        default=None, ge=1,
        description="Cap on windows per long document, for local models configured to chunk "
        "long documents (never above the model's own max_chunks_per_doc).",
    )
    instruction: str | None = Field(default=None, description=_INSTRUCTION_HELP)
    min_score: float | None = Field(default=None, description=_MIN_SCORE_HELP)
    return_spans: bool = Field(default=False, description=_SPANS_HELP)


class V2RerankRequest(_Request):
    """Cohere v2 rerank request."""

    model: str | None = Field(default=None, description=_MODEL_HELP)
    query: str = Field(description=_QUERY_HELP)
    documents: list[str | dict[str, Any]] = Field(
        description="Strings (objects with 'text' accepted for older clients; objects with "
        "an 'image' for vision rerankers, as on /v1/rerank)."
    )
    top_n: int | None = Field(default=None, ge=1, description=_TOP_N_HELP)
    max_tokens_per_doc: int | None = Field(
        default=None, ge=1,
        description="Score at most this many tokens of each document (local models; the "
        "model's window still applies). Default: as many as the window holds.",
    )
    return_documents: bool = Field(default=False, description="Deprecated by Cohere; honoured.")
    instruction: str | None = Field(default=None, description=_INSTRUCTION_HELP)
    min_score: float | None = Field(default=None, description=_MIN_SCORE_HELP)
    return_spans: bool = Field(default=False, description=_SPANS_HELP)


class TeiRerankRequest(_Request):
    """text-embeddings-inference rerank request."""

    query: str = Field(description=_QUERY_HELP)
    texts: list[str] = Field(description="The texts to rank for the query.")
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities.")
    return_text: bool = Field(default=False, description="Attach each text to its result.")
    truncate: bool | None = Field(
        default=None,
        description="Cut texts that do not fit the model's window (true) or answer 413 "
        "(false). Default: the server's tei_auto_truncate setting (true unless configured).",
    )
    truncation_direction: Literal["left", "right", "Left", "Right"] = Field(
        default="right",
        description="'right' cuts the end of a text (keeps its start); 'left' keeps its end.",
    )
    model: str | None = Field(default=None, description=_MODEL_HELP + " (extension)")
    instruction: str | None = Field(default=None, description=_INSTRUCTION_HELP)
    min_score: float | None = Field(default=None, description=_MIN_SCORE_HELP)
    return_spans: bool = Field(default=False, description=_SPANS_HELP)


class DocumentsRerankRequest(_Request):
    """Infinity / vLLM rerank request: ``POST /rerank`` with ``documents`` instead of ``texts``."""

    model: str | None = Field(default=None, description=_MODEL_HELP)
    query: str = Field(description=_QUERY_HELP)
    documents: list[str | dict[str, Any]] = Field(
        description="Strings (objects with 'text' accepted, as vLLM does)."
    )
    top_n: int | None = Field(default=None, ge=1, description=_TOP_N_HELP)
    return_documents: bool = Field(default=False, description="Attach each document's text.")
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities "
                             "(Infinity).")
    max_tokens_per_doc: int | None = Field(
        default=None, ge=1,
        description="Score at most this many tokens of each document (local models; vLLM).",
    )
    instruction: str | None = Field(default=None, description=_INSTRUCTION_HELP)
    min_score: float | None = Field(default=None, description=_MIN_SCORE_HELP)
    return_spans: bool = Field(default=False, description=_SPANS_HELP)


class DocumentText(BaseModel):
    text: str


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, for a person to read.")
    type: str = Field(description="A stable error kind, e.g. invalid_request_error.")
    param: str | None = Field(description="The request field at fault, when there is one.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class V1Result(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None
    span: tuple[int, int] | None = Field(
        default=None, description="Best window's character span (with return_spans).")


class V2Result(BaseModel):
    index: int
    relevance_score: float
    document: DocumentText | None = None
    span: tuple[int, int] | None = Field(
        default=None, description="Best window's character span (with return_spans).")


class TeiResult(BaseModel):
    index: int
    score: float
    text: str | None = None
    span: tuple[int, int] | None = Field(
        default=None, description="Best window's character span (with return_spans).")


class DocumentsResult(BaseModel):
    index: int
    relevance_score: float
    document: DocumentText | str | None = Field(
        default=None,
        description="{'text': ...} on /rerank (vLLM, Cohere); a bare string on "
        "/infinity/rerank (Infinity's own shape).",
    )


class DocumentsRerankResponse(BaseModel):
    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    created: int
    results: list[DocumentsResult]


class RerankAnswer(RootModel[list[TeiResult] | DocumentsRerankResponse]):
    """What ``POST /rerank`` answers: TEI's bare list, or Infinity's / vLLM's object."""


class V1RerankResponse(BaseModel):
    id: str
    model: str
    results: list[V1Result]
    meta: dict[str, Any]
    usage: dict[str, int] | None = Field(
        default=None, description="Jina's usage: total_tokens scored (when the model says).")


class V2RerankResponse(BaseModel):
    id: str
    results: list[V2Result]
    meta: dict[str, Any]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    variant: str = Field(description=f"One of: {', '.join(variant_names())}.",
                         json_schema_extra={"enum": list(variant_names())})
    backend: str = Field(description="What serves it: preset name, repo or folder, provider.")
    default: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
    default_model: str
