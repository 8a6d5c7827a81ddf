"""Client libraries built for other rerank servers, pointed at the app by base URL only.

The app is the real FastAPI app over fake deployment handles, served by uvicorn on loopback (no
Ray); the integration suite runs the same clients against the real Ray Serve app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from deployments.serve.http_api import build_api
from tests.unit.serve_fakes import overlap_scores, serve_on_loopback, service, settings

KEY = "client-key"
QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "the cat sat", "France", "capital cities"]
SCORES = overlap_scores(QUERY, DOCS)
BEST = sorted(range(len(DOCS)), key=lambda i: -SCORES[i])[:3]


@pytest.fixture(scope="module")
def litellm() -> Any:
    # litellm fetches a model cost map from the internet at import unless told to use its own.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm", reason="litellm is in the 'test' extra")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_on_loopback(build_api(service(settings(api_keys=(KEY,))))) as url:
        yield url


@pytest.mark.parametrize(
    ("provider", "base_path"),
    [("hosted_vllm", ""), ("together_ai", ""), ("infinity", "/infinity"), ("cohere", "")],
)
def test_litellm_rerank_providers(litellm: Any, base_url: str, provider: str, base_path: str
                                  ) -> None:
    # Regression: infinity/, hosted_vllm/ and together_ai/ send {query, documents, top_n} to
    # /rerank, which answered "texts: Field required".
    resp = litellm.rerank(model=f"{provider}/words", query=QUERY, documents=DOCS, top_n=3,
                          api_base=base_url + base_path, api_key=KEY)
    assert [r["index"] for r in resp.results] == BEST
    assert [r["relevance_score"] for r in resp.results] == pytest.approx(
        [SCORES[i] for i in BEST])
    assert [r["document"]["text"] for r in resp.results] == [DOCS[i] for i in BEST]
    with pytest.raises(litellm.NotFoundError, match="no-such-model"):
        litellm.rerank(model=f"{provider}/no-such-model", query="q", documents=["a"],
                       api_base=base_url + base_path, api_key=KEY)
    with pytest.raises(litellm.AuthenticationError):
        litellm.rerank(model=f"{provider}/words", query="q", documents=["a"],
                       api_base=base_url + base_path, api_key="wrong")
