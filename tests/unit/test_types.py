"""Caller input validation."""

from __future__ import annotations

import pytest

from reranker.errors import InvalidInputError
from reranker.types import document_texts, validate_query


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query(query: str) -> None:
    with pytest.raises(InvalidInputError, match="query must not be empty") as info:
        validate_query(query)
    assert info.value.param == "query"


def test_non_string_query() -> None:
    with pytest.raises(InvalidInputError, match="query must be a string"):
        validate_query(None)


def test_documents_strings_and_objects() -> None:
    assert document_texts(["a", {"text": "b"}, ""]) == ["a", "b", ""]
    assert document_texts([{"body": "x"}], text_field="body") == ["x"]


@pytest.mark.parametrize(
    ("docs", "param"),
    [
        ([], "documents"),
        ("just a string", "documents"),
        (None, "documents"),
        (["ok", 3], "documents[1]"),
        (["ok", None], "documents[1]"),
        ([{"title": "no text"}], "documents[0].text"),
        ([{"text": 5}], "documents[0].text"),
    ],
)
def test_bad_documents_name_the_field(docs: object, param: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        document_texts(docs)
    assert info.value.param == param
