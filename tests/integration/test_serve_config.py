"""The Serve app's configuration and error mapping, without starting Ray.

serve_config.yaml must validate with the code that runs it; bad arguments must fail with the
field named; every library error must map to one documented status.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from deployments.serve.args import AppArgs
from deployments.serve.cli import app_args_for
from deployments.serve.errors import to_api_error
from reranker import errors as rerr

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_yaml_validates() -> None:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "deployments.serve.app:build_app"
    args = AppArgs.model_validate(app["args"])
    assert args.default_model_name == "fast" and args.models["fast"].type == "preset"
    assert args.limits.max_documents == 10_000
    assert args.tei_auto_truncate is True and AppArgs().tei_auto_truncate is True
    opts = args.deployments.preset.serve_options()
    assert opts["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in opts


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"models": {"a": "no-such-preset"}}, "models"),
        ({"models": {"a": "fast"}, "default_model": "b"}, "default_model"),
        ({"models": {}}, "models"),
        ({"models": {"a": "fast"}, "chunk_size": 0}, "chunk_size"),
        ({"models": {"a": "fast"}, "limitz": {}}, "limitz"),
        ({"models": {"a": "fast"}, "warm_models": ["b"]}, "warm_models"),
        ({"deployments": {"preset": {"num_replicas": 2, "autoscaling_config": {}}}},
         "autoscaling_config"),
        ({"deployments": {"preset": {"max_ongoing_requests": 4}}}, "max_batch_size"),
    ],
)
def test_bad_args_name_the_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AppArgs.model_validate(args)
    assert field in str(info.value)


def test_model_shorthand_and_warm_models() -> None:
    args = AppArgs.model_validate({"models": {"p": "plugin:pkg.mod:fn", "f": "fast",
                                              "c": "cohere:rerank-v3.5"}, "default_model": "f"})
    assert [cfg.type for cfg in args.models.values()] == ["plugin", "preset", "llm"]
    assert args.warm_models_of("preset") == ["f"]  # the default model
    assert args.warm_models_of("plugin") == ["p"]  # else the variant's first
    assert args.warm_models_of("custom") == []


def test_cli_args_for_one_model(tmp_path: Path) -> None:
    assert list(app_args_for("fast").models) == ["fast"]
    folder = app_args_for(str(tmp_path), name="mine")
    assert folder.models["mine"].type == "custom"
    replicated = app_args_for("fast", replicas=3, api_key_env="KEYS")
    assert replicated.deployments.preset.num_replicas == 3 and replicated.api_key_env == "KEYS"


def test_api_keys_are_read_at_build_time() -> None:
    from deployments.serve.app import read_api_keys

    assert read_api_keys(None) == ()
    keys = read_api_keys("K", {"K": " a , b,"})
    assert [k.get_secret_value() for k in keys] == ["a", "b"] and "a" not in repr(keys)
    with pytest.raises(rerr.ConfigError, match="'K'"):
        read_api_keys("K", {})


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (rerr.InvalidInputError("bad", param="query"), 400, "invalid_request_error"),
        (rerr.ModelNotFoundError("nope"), 404, "not_found_error"),
        (rerr.ProviderRateLimitError("slow down", retry_after_s=3.0), 429, "rate_limit_error"),
        (rerr.ProviderTimeoutError("late"), 504, "provider_timeout_error"),
        (rerr.ProviderStatusError("500", status_code=500), 502, "provider_error"),
        (rerr.ProviderResponseError("junk"), 502, "provider_error"),
        (rerr.BackendTimeoutError("late"), 504, "backend_timeout_error"),
        (rerr.BackendError("boom"), 500, "backend_error"),
        (rerr.DownloadError("offline"), 503, "model_unavailable_error"),
        (rerr.ModelLoadError("broken"), 500, "model_load_error"),
        (rerr.ConfigError("bad config"), 500, "configuration_error"),
    ],
)
def test_error_mapping_survives_the_wire(exc: rerr.RerankerError, status: int, kind: str
                                         ) -> None:
    for candidate in (exc, pickle.loads(pickle.dumps(exc))):
        err = to_api_error(candidate)
        assert (err.status, err.type) == (status, kind)
        assert err.message == str(exc)
        assert err.param == getattr(exc, "param", None)
    assert type(pickle.loads(pickle.dumps(exc))) is type(exc)


def test_ray_failures_map_to_429_and_503() -> None:
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import BackPressureError

    assert to_api_error(BackPressureError(num_queued_requests=9, max_queued_requests=8)
                        ).status == 429
    assert to_api_error(ActorDiedError()).status == 503
    assert to_api_error(TimeoutError()).status == 504
    assert to_api_error(KeyError("x")).status == 500


def test_shipped_config_has_no_single_ingress() -> None:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    args = AppArgs.model_validate(config["applications"][0]["args"])
    opts = args.deployments.ingress.serve_options()
    assert opts["num_replicas"] >= 2 and opts["max_replicas_per_node"] == 1
    assert "max_replicas_per_node" not in AppArgs().deployments.ingress.serve_options()
