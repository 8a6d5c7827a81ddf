"""The per-request token budget at the ingress: counted once over the whole request.

A scorer replica checks ``max_request_tokens`` on its own chunk only, so a request of many chunks,
each under the budget, could run chunks x the budget. The ingress counts the whole request with
the model's tokenizer (``reranker.request_tokens``) and refuses it with 413 before any chunk runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reranker.backends.local import load_local_backend
from reranker.config import parse_backend_config
from reranker.errors import RequestTooLargeError
from reranker.request_tokens import request_token_counter, token_bound
from reranker.testing.families.qwen3 import make_checkpoint
from reranker.types import Truncation
from tests.unit.serve_fakes import FakeScorer, service, settings

WORDS = "river bank money loan water fish boat stone tree field".split()


def _doc(words: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(words))


DOCS = [_doc(40 + 13 * i, i) for i in range(12)]


@pytest.mark.parametrize("options", [
    {},
    {"long_documents": "chunk", "max_length": 32, "chunk_overlap": 4, "max_chunks_per_doc": 3},
    {"max_length": 24},
])
def test_counts_what_the_backend_runs(bert_model: Path, options: dict[str, object]) -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": str(bert_model), **options})
    backend = load_local_backend(cfg)  # type: ignore[arg-type]
    counter = request_token_counter(cfg)  # type: ignore[arg-type]
    for cut in (None, Truncation(max_document_tokens=9), Truncation(max_chunks=2, side="left")):
        expected = backend.encode("river bank", DOCS, cut).tokens
        assert counter.count("river bank", DOCS, cut) == (expected, len(DOCS))
        assert counter.upper_bound(len(DOCS), cut) >= expected


def test_counts_a_decoders_prompts(tmp_path: Path) -> None:
    from reranker.models.prompts.qwen3 import DEFAULT_INSTRUCTION, PromptTokenizer

    folder = make_checkpoint(tmp_path / "qwen3")
    cfg = parse_backend_config({"type": "custom", "model_id": str(folder), "max_length": 160})
    counter = request_token_counter(cfg)  # type: ignore[arg-type]
    prompts = PromptTokenizer(folder / "tokenizer.json", 160)
    for instruction in (None, "Find the passage about boats"):
        rows = prompts.encode(instruction or DEFAULT_INSTRUCTION, "river", DOCS)
        assert counter.count("river", DOCS, None, instruction)[0] == sum(map(len, rows))


def test_counting_stops_once_past_the_budget(bert_model: Path) -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": str(bert_model)})
    counter = request_token_counter(cfg)  # type: ignore[arg-type]
    many = DOCS * 20  # 240 documents, counted 64 at a time
    tokens, counted = counter.count("river", many, stop_above=100)
    assert tokens > 100 and counted == 64
    with pytest.raises(RequestTooLargeError, match=r"first 64 of 240 documents") as err:
        counter.check("river", many, None, None, 100)
    assert err.value.param == "max_request_tokens"
    assert "max_request_tokens=100" in str(err.value)


def test_the_bound_needs_no_files_when_the_window_is_configured() -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": "/nowhere", "max_length": 128,
                                "long_documents": "chunk", "max_chunks_per_doc": 4})
    assert token_bound(cfg, 10) == 10 * 4 * 128  # type: ignore[arg-type]
    assert token_bound(cfg, 10, Truncation(max_chunks=2)) == 10 * 2 * 128  # type: ignore[arg-type]
    unknown = parse_backend_config({"type": "custom", "model_id": "/nowhere"})
    assert token_bound(unknown, 10) is None  # type: ignore[arg-type]


def _ingress(bert_model: Path, limit: int, chunk_size: int = 4) -> tuple[object, FakeScorer]:
    scorer = FakeScorer()
    cfg = settings({"local": {"type": "custom", "model_id": str(bert_model)}},
                   chunk_size=chunk_size, limits={"max_request_tokens": limit})
    return service(cfg, custom=scorer), scorer


async def _rerank(svc, texts, **kw):  # type: ignore[no-untyped-def]
    return await svc.rerank(model="local", query="river bank", texts=list(texts), documents=None,
                            top_n=None, return_documents=False, **kw)


async def test_many_chunks_each_under_the_budget_are_refused_whole(bert_model: Path) -> None:
    cfg = parse_backend_config({"type": "custom", "model_id": str(bert_model)})
    backend = load_local_backend(cfg)  # type: ignore[arg-type]
    per_chunk = [backend.encode("river bank", DOCS[i:i + 4]).tokens for i in range(0, 12, 4)]
    total = sum(per_chunk)
    limit = max(per_chunk) + 1  # every chunk fits; the request does not
    assert total > limit
    svc, scorer = _ingress(bert_model, limit)
    with pytest.raises(RequestTooLargeError) as err:
        await _rerank(svc, DOCS)
    assert err.value.param == "max_request_tokens"
    assert f"needs {total} tokens" in str(err.value)
    assert f"max_request_tokens={limit}" in str(err.value)
    assert not scorer.calls  # refused before any chunk ran
    # Within the budget the same request is scored, in its three chunks.
    svc, scorer = _ingress(bert_model, total)
    outcome = await _rerank(svc, DOCS)
    assert len(outcome.results) == 12 and len(scorer.calls) == 3


async def test_a_models_own_budget_is_the_one_the_ingress_applies(bert_model: Path) -> None:
    scorer = FakeScorer()
    cfg = settings({"local": {"type": "custom", "model_id": str(bert_model),
                              "max_request_tokens": 50}},
                   limits={"max_request_tokens": 10**6})
    with pytest.raises(RequestTooLargeError, match="max_request_tokens=50"):
        await _rerank(service(cfg, custom=scorer), DOCS)
    assert not scorer.calls


async def test_the_request_truncation_counts(bert_model: Path) -> None:
    svc, scorer = _ingress(bert_model, limit=12 * 14)
    with pytest.raises(RequestTooLargeError):
        await _rerank(svc, DOCS)
    # 12 documents cut to 5 tokens each: [CLS] river bank [SEP] + 5 + [SEP] = 10 tokens a pair.
    outcome = await _rerank(svc, DOCS, truncation=Truncation(max_document_tokens=5))
    assert len(outcome.results) == 12 and scorer.calls


async def test_a_model_whose_tokenizer_the_ingress_lacks_is_still_served() -> None:
    # No files here and no configured window: the scorers' own per-call check is what applies.
    scorer = FakeScorer()
    cfg = settings({"local": {"type": "custom", "model_id": "/models/absent"}},
                   limits={"max_request_tokens": 1})
    outcome = await _rerank(service(cfg, custom=scorer), DOCS)
    assert len(outcome.results) == 12 and scorer.calls
