"""The ``llm`` backend's own logic, without a socket: building it from a config (keys, limits,
base URLs), reading answers (indices, scores), ``Retry-After`` and backoff, and the errors.

What goes over the wire (liter-llm's requests, our retries and timeouts around them) is tested
against the loopback stand-ins in ``tests/integration/test_providers_live.py``.
"""

from __future__ import annotations

import pickle
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import numpy as np
import pytest

from reranker import LlmConfig
from reranker.errors import (
    BackendError,
    ConfigError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
)
from reranker.providers import ApiKey, build_provider_backend, provider_info, rerank_providers
from reranker.providers.backend import scores_from_results
from reranker.providers.client import RetryPolicy, backoff_delay
from reranker.registry import truncation_fields_of
from reranker.retry_after import RETRY_AFTER_CAP_S, bound_retry_after, parse_retry_after

KEY = "sk-test-SECRET-0123456789"


def all_keys() -> dict[str, str]:
    return {p.key_env[0]: KEY for p in rerank_providers() if p.key_env}


def test_scores_come_back_in_input_order() -> None:
    scores = scores_from_results([(2, 0.5), (0, 0.25), (1, 1.0)], 3, provider="cohere")
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, [0.25, 1.0, 0.5])


@pytest.mark.parametrize(("results", "needle"), [
    ([(0, 0.1), (0, 0.2)], "repeats index 0"),
    ([(0, 0.1), (5, 0.2)], "index 5 is out of range for 2"),
    ([(0, 0.1), (-1, 0.2)], "out of range"),
    ([(0, 0.1)], r"missing indices \(1 of 2: 1\)"),
    ([], r"missing indices \(2 of 2: 0, 1\)"),
    ([(0, 0.1), (1, float("nan"))], "not a finite number"),
    ([(0, 0.1), (1, float("inf"))], "not a finite number"),
    ([(True, 0.1), (1, 0.2)], "non-integer index"),
])
def test_unusable_results_are_response_errors(results: Any, needle: str) -> None:
    with pytest.raises(ProviderResponseError, match=needle):
        scores_from_results(results, 2, provider="cohere")


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("tomorrow") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("value", [
    "inf", "Infinity", "1e300", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT",
    "Wed, 21 Oct 2099 07:28:00 GMT",
])
def test_huge_retry_after_is_capped(value: str) -> None:
    assert parse_retry_after(value) == RETRY_AFTER_CAP_S


def test_nan_retry_after_is_unknown() -> None:
    assert parse_retry_after("nan") is None
    assert bound_retry_after(float("nan")) is None
    assert bound_retry_after(True) is None and bound_retry_after("3") is None
    assert bound_retry_after(-2) == 0.0 and bound_retry_after(12) == 12.0


def test_errors_carry_a_bounded_retry_after_and_pickle_with_it() -> None:
    err = ProviderRateLimitError("slow down", provider="cohere", retry_after_s=float("inf"))
    assert err.retry_after_s == RETRY_AFTER_CAP_S and err.status_code == 429
    status = ProviderStatusError("busy", provider="jina_ai", status_code=503, retry_after_s=1e300)
    assert status.retry_after_s == RETRY_AFTER_CAP_S
    assert ProviderError("down", provider="x").retry_after_s is None
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.retry_after_s, back.provider) == (
        ProviderRateLimitError, RETRY_AFTER_CAP_S, "cohere")


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        delays = [backoff_delay(attempt, policy, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


def test_api_key_shows_a_mask() -> None:
    key = ApiKey(KEY)
    assert KEY not in repr(key) and KEY not in str(key) and key.reveal() == KEY
    assert key.scrub(f"bad token {KEY}!") == "bad token ***!"


def test_built_backend_keeps_the_key_out_of_reprs() -> None:
    backend = build_provider_backend(LlmConfig(provider="cohere", model="m"),
                                     environ={"COHERE_API_KEY": KEY})
    for text in (repr(backend), repr(backend.client), str(vars(backend)),
                 str(vars(backend.client))):
        assert KEY not in text
    backend.close()


def test_missing_key_env_var_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="VOYAGE_API_KEY"):
        build_provider_backend(LlmConfig(provider="voyage", model="rerank-2.5"), environ={})
    with pytest.raises(ConfigError, match="NVIDIA_NIM_API_KEY"):
        build_provider_backend(LlmConfig(provider="nvidia_nim", model="m"), environ={})
    with pytest.raises(ConfigError, match="MY_KEY_VAR"):
        build_provider_backend(
            LlmConfig(provider="cohere", model="m", api_key_env="MY_KEY_VAR"),
            environ={"MY_KEY_VAR": "   ", "COHERE_API_KEY": KEY},
        )


def test_every_provider_builds_from_its_own_key_variable() -> None:
    for p in rerank_providers():
        base = None if p.default_base_url else "http://127.0.0.1:9"
        env = {p.key_env[0]: KEY} if p.reads_key else {}
        backend = build_provider_backend(
            LlmConfig(provider=p.name, model="m", base_url=base), environ=env)
        assert backend.name == f"{p.name}:m"
        assert backend.scores_are_probabilities == p.scores_are_probabilities
        backend.close()


def test_local_servers_need_no_key() -> None:
    backend = build_provider_backend(
        LlmConfig(provider="vllm", model="BAAI/bge-reranker-v2-m3"), environ={})
    assert backend.client.base_url == "http://localhost:8000/v1"
    backend.close()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"provider": "voyage", "max_tokens_per_doc": 100}, "max_tokens_per_doc"),
        ({"provider": "jina", "max_tokens_per_doc": 100}, "max_tokens_per_doc"),
        ({"provider": "voyage", "max_documents_per_request": 1001}, "at most 1000"),
        ({"provider": "cohere", "max_documents_per_request": 10_001}, "at most 10000"),
        ({"provider": "cohere", "base_url": "ftp://x.test"}, "http"),
        ({"provider": "cohere", "base_url": "http://"}, "http"),
        ({"provider": "hosted_vllm"}, "no default base URL"),
    ],
)
def test_invalid_provider_settings_are_config_errors(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_provider_backend(LlmConfig(model="m", **options), environ=all_keys())


def test_response_byte_limit_is_validated() -> None:
    with pytest.raises(ValueError, match="max_response_bytes"):
        LlmConfig(provider="cohere", model="m", max_response_bytes=10)


def test_truncation_fields_follow_the_provider() -> None:
    cohere = LlmConfig(provider="cohere", model="m")
    assert truncation_fields_of(cohere) == frozenset({"max_document_tokens"})
    assert truncation_fields_of(LlmConfig(provider="nvidia_nim", model="m")) == frozenset()
    assert provider_info("cohere").default_base_url == "https://api.cohere.com/v2"


def test_closed_backend_refuses_work() -> None:
    backend = build_provider_backend(LlmConfig(provider="cohere", model="m"),
                                     environ={"COHERE_API_KEY": KEY})
    backend.close()
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.score("q", ["doc-1"])


def test_empty_document_list_sends_nothing() -> None:
    # Port 9 (discard) on loopback: a request would fail, so an answer proves none was sent.
    backend = build_provider_backend(
        LlmConfig(provider="cohere", model="m", base_url="http://127.0.0.1:9", max_retries=0),
        environ={"COHERE_API_KEY": KEY})
    assert backend.score("q", []).shape == (0,)
    backend.close()


def test_instructions_are_refused_before_sending() -> None:
    from reranker.errors import InvalidInputError

    backend = build_provider_backend(
        LlmConfig(provider="cohere", model="m", base_url="http://127.0.0.1:9", max_retries=0),
        environ={"COHERE_API_KEY": KEY})
    with pytest.raises(InvalidInputError, match="instruction"):
        backend.score("q", ["a"], instruction="judge relevance")
    backend.close()
