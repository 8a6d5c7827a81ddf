"""Request and result types, and the validation of caller input.

A document is a string or a mapping with a text field (``"text"`` unless told otherwise).
Validation raises :class:`~reranker.errors.InvalidInputError` naming the field, never a bare
pydantic error, so that the API and the CLI can report it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from reranker.errors import InvalidInputError

__all__ = [
    "DECODER_TRUNCATION_FIELDS",
    "TRUNCATION_FIELDS",
    "Document",
    "RerankResult",
    "RerankResults",
    "Truncation",
    "Usage",
    "document_texts",
    "validate_query",
]

Document = Union[str, Mapping[str, Any]]  # noqa: UP007

TRUNCATION_FIELDS: tuple[str, ...] = ("max_document_tokens", "side", "allow", "max_chunks")
DECODER_TRUNCATION_FIELDS = frozenset({"max_document_tokens", "side", "allow"})
"""The :class:`Truncation` fields a decoder reranker applies: it cuts documents at the window
and never chunks them, so ``max_chunks`` has nothing to cap."""
"""The :class:`Truncation` fields that change how documents are cut (backends declare which
they apply)."""


class RerankResult(BaseModel):
    """One ranked document: its position in the input, its score, and optionally itself."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="Position of the document in the request.")
    score: float = Field(description="Relevance: a probability unless raw scores were asked.")
    document: str | dict[str, Any] | None = Field(
        default=None, description="The document as given, when documents are returned."
    )
    span: tuple[int, int] | None = Field(
        default=None,
        description="Character span [start, end) of the document's best-scoring window, when "
        "the model chunks long documents (local models); None otherwise.",
    )


@dataclass(frozen=True)
class Usage:
    """What one rerank cost, counted the way hosted rerank APIs bill it.

    Attributes:
        search_units: Cohere's unit: one per query per started 100 documents.
        tokens: tokens actually run through the model (query, document and special tokens of
            every window scored; pairs answered from the score cache count 0); ``None`` when
            the backend does not say (providers, plugins).
    """

    search_units: int
    tokens: int | None = None

    @staticmethod
    def search_units_for(documents: int) -> int:
        """Cohere's count: a query with up to 100 documents is one search unit."""
        return max(1, -(-documents // 100))


class RerankResults(list[RerankResult]):
    """The ranked results (a plain list) with the request's :class:`Usage` as ``usage``."""

    usage: Usage | None = None


@dataclass(frozen=True)
class Truncation:
    """How one request's documents are fitted to the model's window.

    Attributes:
        max_document_tokens: keep at most this many tokens of each document (special tokens
            and the query not counted); ``None`` keeps what the window holds.
        side: which end of a document is cut: ``"right"`` keeps its start, ``"left"`` its end.
            When chunking, ``"left"`` keeps a document's last windows rather than its first.
        allow: ``False`` makes a pair that does not fit (window, or window count when chunking)
            an :class:`~reranker.errors.InputTooLongError` instead of being cut.
        max_chunks: at most this many windows per document when chunking (never more than the
            model's own ``max_chunks_per_doc``).
        field: the request field errors name (``documents``, ``texts``).
        index_offset: added to document positions in errors (when a request is scored in
            chunks, the chunk's first position in the request).
    """

    max_document_tokens: int | None = None
    side: Literal["right", "left"] = "right"
    allow: bool = True
    max_chunks: int | None = None
    field: str = "documents"
    index_offset: int = 0

    @property
    def is_default(self) -> bool:
        """Whether this asks for nothing beyond the model's own settings."""
        return not self.asked

    @property
    def asked(self) -> tuple[str, ...]:
        """The fields of :data:`TRUNCATION_FIELDS` set to something other than their default."""
        return tuple(f for f in TRUNCATION_FIELDS if getattr(self, f) != _DEFAULTS[f])

    @property
    def cache_variant(self) -> str:
        """Every field that changes a score or whether it is given (not the error wording)."""
        return repr(tuple(getattr(self, f) for f in TRUNCATION_FIELDS))


_DEFAULTS = {"max_document_tokens": None, "side": "right", "allow": True, "max_chunks": None}


def validate_query(query: object) -> str:
    """Return the query if it is a non-blank string, else raise ``InvalidInputError``."""
    if not isinstance(query, str):
        raise InvalidInputError(
            f"query must be a string, got {type(query).__name__}", param="query"
        )
    if not query.strip():
        raise InvalidInputError("query must not be empty", param="query")
    return query


def document_texts(documents: object, text_field: str = "text") -> list[str]:
    """Extract the text of each document, validating types.

    Empty strings are allowed (they score like any other text); ``None``, numbers and mappings
    without the text field are not.

    Raises:
        InvalidInputError: naming ``documents`` or ``documents[i]``.
    """
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InvalidInputError(
            f"documents must be a list of strings or objects, got {type(documents).__name__}",
            param="documents",
        )
    if len(documents) == 0:
        raise InvalidInputError("documents must not be empty", param="documents")
    texts: list[str] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            texts.append(doc)
        elif isinstance(doc, Mapping):
            text = doc.get(text_field)
            if not isinstance(text, str):
                raise InvalidInputError(
                    f"documents[{i}] has no string field {text_field!r}",
                    param=f"documents[{i}].{text_field}",
                )
            texts.append(text)
        else:
            raise InvalidInputError(
                f"documents[{i}] must be a string or an object with a {text_field!r} field, "
                f"got {type(doc).__name__}",
                param=f"documents[{i}]",
            )
    return texts
