"""Every library error survives a pickle round trip with its fields (Ray sends them as they are)."""

from __future__ import annotations

import pickle

import pytest

from reranker import errors as rerr

_FIELDS = ("param", "provider", "status_code", "retry_after_s")


def _instance(cls: type[rerr.RerankerError]) -> rerr.RerankerError:
    if issubclass(cls, rerr.InvalidInputError):
        return cls("bad field", param="documents[3]")
    if issubclass(cls, rerr.ProviderRateLimitError):
        return cls("slow down", provider="cohere", retry_after_s=2.5)
    if issubclass(cls, rerr.ProviderStatusError):
        return cls("bad gateway", provider="jina", status_code=502)
    if issubclass(cls, rerr.ProviderError):
        return cls("provider broke", provider="voyage")
    return cls("it failed")


@pytest.mark.parametrize("name", rerr.__all__)
def test_error_pickles_with_its_fields(name: str) -> None:
    cls = getattr(rerr, name)
    exc = _instance(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert str(back) == str(exc)
    assert back.args == exc.args
    for field in _FIELDS:
        assert getattr(back, field, "absent") == getattr(exc, field, "absent"), field
    assert isinstance(back, rerr.RerankerError)


def test_subclass_defined_elsewhere_pickles() -> None:
    back = pickle.loads(pickle.dumps(_Custom("mine", param="query")))
    assert type(back) is _Custom and back.param == "query" and str(back) == "mine"


class _Custom(rerr.InvalidInputError):
    """A subclass outside the library (plugins may define their own)."""
