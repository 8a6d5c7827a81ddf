"""Request and result types, and the validation of caller input.

A document is a string or a mapping with a text field (``"text"`` unless told otherwise).
Validation raises :class:`~reranker.errors.InvalidInputError` naming the field, never a bare
pydantic error, so that the API and the CLI can report it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

from reranker.errors import InvalidInputError

__all__ = ["Document", "RerankResult", "RerankRequest", "document_texts", "validate_query"]

Document = Union[str, Mapping[str, Any]]  # noqa: UP007


class RerankResult(BaseModel):
    """One ranked document: its position in the input, its score, and optionally itself."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="Position of the document in the request.")
    score: float = Field(description="Relevance: a probability unless raw scores were asked.")
    document: str | dict[str, Any] | None = Field(
        default=None, description="The document as given, when documents are returned."
    )


class RerankRequest(BaseModel):
    """A rerank call as data: what ``Reranker.rerank`` takes, for APIs and batch jobs."""

    model_config = ConfigDict(frozen=True)

    query: str
    documents: list[str | dict[str, Any]]
    top_k: int | None = Field(default=None, ge=1)
    return_documents: bool = True
    raw_scores: bool = False
    text_field: str = "text"


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
