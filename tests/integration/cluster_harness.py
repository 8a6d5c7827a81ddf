"""A several-node Ray on this machine, the app deployed from serve_config.yaml, and HTTP load.

:class:`LocalCluster` starts a head and worker raylets with ``ray.cluster_utils.Cluster`` (each
node its own raylet and proxy, 1 logical CPU each, so replicas at fractional CPUs spread), deploys
with the controller's config path (what ``serve deploy`` sends: a ``ServeDeploySchema``, not
Python handles), kills and adds nodes. Every node's proxy binds its own port (Ray's
``RAY_SERVE_WORKER_PROXY_HTTP_PORT``, set per raylet), so a test can reach each proxy. The proxy
middleware (``deployments.serve.proxy_middleware``) is installed on every node as a cluster would
install it: through the environment the raylets start with.

:class:`Load` is N client threads posting rerank requests with a timeout; each outcome records
its status, whether an error body was the documented JSON, and when it started and ended.

Used by tests/integration/test_multinode.py and benchmarks/autoscale.py.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "reranker"
PROXY_CALLBACK = "deployments.serve.proxy_middleware:proxy_middlewares"
# Node loss is noticed in ~3 s instead of Ray's default ~30 s: tests and a benchmark wait on it.
FAST_FAILURE_DETECTION = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3,
                          "health_check_timeout_ms": 1000}

__all__ = ["APP", "Load", "LocalCluster", "Outcome", "app_config", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_config(model_dir: Path, port: int, **arg_overrides: Any) -> dict[str, Any]:
    """serve_config.yaml, with its app serving ``model_dir`` as a ``custom`` local folder.

    The shipped ``deployments:`` section is kept (two ingress replicas, one per node) and the
    ``custom`` variant gets ``arg_overrides["custom"]``; other keys replace top-level args.
    """
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    config["http_options"] = {**config["http_options"], "host": "127.0.0.1", "port": port}
    (app,) = config["applications"]
    args = app["args"]
    args["models"] = {"fast": {"type": "custom", "model_id": str(model_dir)}}
    deployments = copy.deepcopy(args["deployments"])
    deployments["ingress"]["ray_actor_options"] = {"num_cpus": 0.25}
    deployments["custom"] = arg_overrides.pop("custom", deployments["custom"])
    args["deployments"] = deployments
    args.update(arg_overrides)
    return config


class LocalCluster:
    """A head and ``workers`` worker nodes on this machine, with Serve on every node."""

    def __init__(self, workers: int = 2, cpus_per_node: float = 1.0, log_to_driver: bool = False
                 ) -> None:
        self.cpus_per_node = cpus_per_node
        self.log_to_driver = log_to_driver
        self.workers_wanted = workers
        self.http_port = free_port()
        self.ports: dict[str, int] = {}  # node id -> its proxy's port
        self.cluster: Any = None
        self.workers: list[Any] = []

    def __enter__(self) -> LocalCluster:
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            raise RuntimeError("a Ray instance is already running in this process; the "
                               "multi-node tests run first (tests/conftest.py orders them)")
        # Raylets, and so proxies and replicas, inherit this environment.
        path = os.environ.get("PYTHONPATH", "")
        if str(REPO_ROOT) not in path.split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
        os.environ["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = PROXY_CALLBACK
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": self.cpus_per_node, "include_dashboard": False,
            "_system_config": FAST_FAILURE_DETECTION})
        self.ports[self.cluster.head_node.node_id] = self.http_port
        try:
            for _ in range(self.workers_wanted):
                self.add_worker()
            ray.init(address=self.cluster.address, log_to_driver=self.log_to_driver)
            serve.start(proxy_location="EveryNode",
                        http_options={"host": "127.0.0.1", "port": self.http_port})
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import ray
        from ray import serve

        try:
            if ray.is_initialized():
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()
            os.environ.pop("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", None)

    @property
    def url(self) -> str:
        """The head node's proxy."""
        return f"http://127.0.0.1:{self.http_port}"

    def add_worker(self) -> Any:
        port = free_port()
        node = self.cluster.add_node(
            num_cpus=self.cpus_per_node,
            env_vars={"RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(port)})
        self.ports[node.node_id] = port
        self.workers.append(node)
        return node

    def kill_node(self, node_id: str) -> None:
        """Kill a worker node's processes at once (no graceful drain), as a lost machine."""
        node = next(n for n in self.workers if n.node_id == node_id)
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def deploy(self, config: dict[str, Any], timeout_s: float = 120.0) -> None:
        """Deploy ``config`` the way ``serve deploy`` does and wait until it is RUNNING."""
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
        self.wait_for(lambda: self.app_status() == "RUNNING", timeout_s, "the app to run")

    @staticmethod
    def app_status() -> str | None:
        from ray import serve

        app = serve.status().applications.get(APP)
        return None if app is None else str(getattr(app.status, "value", app.status))

    @staticmethod
    def running(deployment: str) -> int:
        """RUNNING replicas of ``deployment`` in the app, as Serve's controller sees them."""
        from ray import serve

        app = serve.status().applications.get(APP)
        if app is None or deployment not in app.deployments:
            return 0
        states = app.deployments[deployment].replica_states
        return sum(n for s, n in states.items() if str(getattr(s, "value", s)) == "RUNNING")

    @staticmethod
    def actor_nodes(name_prefix: str) -> dict[str, str]:
        """Live actor name -> node id for Serve actors whose name starts with ``name_prefix``."""
        # The GCS actor table: Ray's state API would need the dashboard, which is off.
        from ray._private import state

        return {a["Name"]: a["Address"]["NodeID"]
                for a in state.actors(actor_state_name="ALIVE").values()
                if a["Name"].startswith(name_prefix)}

    @staticmethod
    def replica_nodes(deployment: str) -> dict[str, str]:
        return LocalCluster.actor_nodes(f"SERVE_REPLICA::{APP}#{deployment}#")

    @staticmethod
    def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
                 interval_s: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(interval_s)


@dataclass(frozen=True)
class Outcome:
    """One request: HTTP status (or the transport error's name), timings, and its error body."""

    status: int | str
    started: float
    ended: float
    documents: int
    json_error: bool | None = None  # for a non-200: was the body {"error": {...}}?
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


class Load:
    """``clients`` threads posting ``documents`` documents per request until stopped."""

    def __init__(self, url: str, clients: int, documents: int = 48,
                 timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.docs = [f"document {i} about {'capital cities' if i % 3 else 'rivers'}"
                     for i in range(documents)]
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(clients)]

    def _client(self) -> None:
        body = {"query": "capital cities", "documents": self.docs}
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = client.post(f"{self.url}/v1/rerank", json=body)
                except httpx.HTTPError as exc:  # a timeout here is a request that hung
                    self.outcomes.append(Outcome(type(exc).__name__, started, time.monotonic(),
                                                 len(self.docs)))
                    continue
                self.outcomes.append(Outcome(
                    r.status_code, started, time.monotonic(), len(self.docs),
                    None if r.status_code == 200 else _is_json_error(r.text),
                    "" if r.status_code == 200 else r.text[:300]))

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 5)
        if any(t.is_alive() for t in self._threads):
            raise AssertionError("a client thread hung past its timeout")
        return sorted(self.outcomes, key=lambda o: o.started)

    @contextmanager
    def running(self) -> Iterator[Load]:
        self.start()
        try:
            yield self
        finally:
            if not self._stop.is_set():
                self.stop()


def _is_json_error(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and {
        "message", "type"} <= set(body["error"])
