"""Safe defaults of the Serve app: bounded queues and bodies, and a warning when the API is
reachable beyond this machine without keys."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from deployments.serve.args import AppArgs, LimitsArgs
from deployments.serve.exposure import exposure_warning, is_loopback, warn_if_exposed


def test_every_deployment_has_a_bounded_queue_by_default() -> None:
    deployments = AppArgs().deployments
    for name in ("ingress", "preset", "custom", "llm", "plugin"):
        queued = getattr(deployments, name).serve_options()["max_queued_requests"]
        assert queued >= 1, name  # -1 would be Ray's "no bound"
    assert deployments.ingress.serve_options()["max_queued_requests"] == 256
    assert deployments.preset.serve_options()["max_queued_requests"] == 64


def test_a_max_size_request_fits_an_idle_default_replica() -> None:
    args = AppArgs()
    chunks = -(-args.limits.max_documents // args.chunk_size)
    preset = args.deployments.preset
    assert chunks <= preset.max_ongoing_requests + preset.max_queued_requests


def test_queue_bound_can_be_lifted_but_not_zero() -> None:
    lifted = AppArgs.model_validate({"deployments": {"preset": {"max_queued_requests": -1}}})
    assert lifted.deployments.preset.serve_options()["max_queued_requests"] == -1
    for bad in (0, -2):
        with pytest.raises(ValidationError, match="max_queued_requests"):
            AppArgs.model_validate({"deployments": {"preset": {"max_queued_requests": bad}}})


def test_body_budget_default_and_check() -> None:
    limits = LimitsArgs()
    assert limits.max_inflight_body_bytes == 4 * limits.max_body_bytes == 128 * 1024 * 1024
    with pytest.raises(ValidationError, match="max_inflight_body_bytes"):
        LimitsArgs(max_body_bytes=4096, max_inflight_body_bytes=2048)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
     ("my-host.example", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def serve_log() -> Iterator[list[logging.LogRecord]]:
    # Ray's "ray.serve" logger does not propagate to the root logger, so collect it directly.
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("ray.serve")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_open_host_without_keys_logs_a_warning(serve_log: list[logging.LogRecord]) -> None:
    assert warn_if_exposed("0.0.0.0", has_api_keys=False)
    (record,) = serve_log
    assert record.levelno == logging.WARNING
    assert "0.0.0.0" in record.getMessage() and "api_key_env" in record.getMessage()


@pytest.mark.parametrize(("host", "keys"), [("0.0.0.0", True), ("127.0.0.1", False),
                                            (None, False)])
def test_no_warning_with_keys_on_loopback_or_unknown_host(
        serve_log: list[logging.LogRecord], host: str | None, keys: bool) -> None:
    assert not warn_if_exposed(host, has_api_keys=keys)
    assert exposure_warning(host, keys) is None
    assert serve_log == []


def test_serve_host_is_unknown_without_ray() -> None:
    # In a fresh interpreter: the suite's own session Ray may be up in this process.
    import subprocess
    import sys

    code = ("import ray\n"
            "from deployments.serve.exposure import serve_http_host\n"
            "print(serve_http_host(), ray.is_initialized())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    # None: no host is known; False: asking did not start a Ray.
    assert out.stdout.split() == ["None", "False"], out.stderr


def test_serve_config_yaml_spells_out_the_defaults() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    (app,) = yaml.safe_load((root / "serve_config.yaml").read_text())["applications"]
    shown, defaults = AppArgs.model_validate(app["args"]), AppArgs()
    assert shown.limits.max_inflight_body_bytes == defaults.limits.max_inflight_body_bytes
    for name in ("ingress", "preset"):
        assert (getattr(shown.deployments, name).max_queued_requests
                == getattr(defaults.deployments, name).max_queued_requests)


def test_a_full_ingress_queue_is_429_with_retry_after_at_the_proxy() -> None:
    from ray.serve.config import BackpressureConfig

    from deployments.serve.app import ingress_options

    opts = ingress_options(AppArgs())
    assert opts["max_queued_requests"] == 256
    config = BackpressureConfig(**opts["backpressure_config"])  # what Serve validates it with
    assert (config.status_code, config.retry_after_s) == (429, 1.0)
