"""One local Ray (and Serve's HTTP proxy) per test session, always shut down at the end.

``ray_cluster`` starts Ray with 4 logical CPUs and no dashboard, usage reporting off, and the
repository root on the workers' ``PYTHONPATH`` (so replicas import ``tests.integration``
plugins). Test modules deploy their apps with :func:`deploy_app` and delete them when done, so
one module's app does not outlive it. Set ``RERANKER_TEST_RAY_LOGS=1`` to see replica logs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["RayCluster", "deploy_app", "ray_cluster", "wait_for"]


@dataclass(frozen=True)
class RayCluster:
    """The session's Ray: where Serve's HTTP proxy and the Prometheus exporter listen."""

    http_url: str
    metrics_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A local Ray with Serve started on a free port; torn down after the session."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    # Workers inherit this process's environment: make the repo importable in replicas.
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    import ray
    from ray import serve

    if ray.is_initialized():
        raise RuntimeError("a Ray instance is already running in this process")
    metrics_port = _free_port()
    ray.init(
        address="local",  # a Ray of its own, never another one running on this machine
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=os.environ.get("RERANKER_TEST_RAY_LOGS") == "1",
        _metrics_export_port=metrics_port,
    )
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield RayCluster(http_url=f"http://127.0.0.1:{port}",
                         metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()


def deploy_app(app: Any, name: str, route_prefix: str = "/", *, wait: bool = True) -> None:
    """Run a Serve app; with ``wait=False`` return once its ingress exists, not when ready."""
    from ray import serve

    if wait:
        serve.run(app, name=name, route_prefix=route_prefix)
    else:
        serve.run_many(
            [serve.RunTarget(target=app, name=name, route_prefix=route_prefix)],
            wait_for_applications_running=False,
        )


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.25, what: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(interval_s)
