"""``reranker serve``: a local Ray, the rerank app on it, until Ctrl-C.

:func:`serve_main` is what the ``reranker serve`` subcommand calls. It checks the models first
(``deployments.startup.check_models``: a missing folder or file, an offline cache miss, a
missing API key fail here, before Ray starts), then starts a local Ray with usage reporting off,
runs the app built by ``deployments.serve.app.build_app`` and blocks. A deployment that still
fails is reported by its root cause (:class:`~deployments.startup.StartupError`, one line). On
Ctrl-C or SIGTERM it deletes the app, which drains the replicas, and stops Ray.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deployments.serve.args import AppArgs
from deployments.startup import StartupError, check_models, root_cause
from reranker.cli.arguments import model_arg, read_text_file
from reranker.registry import variant_names

__all__ = ["APP_NAME", "add_serve_parser", "app_args_for", "serve_main"]

APP_NAME = "reranker"


def app_args_for(
    model: str | Mapping[str, Any] = "fast",
    *,
    name: str | None = None,
    api_key_env: str | None = None,
    chunk_size: int | None = None,
    replicas: int | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
) -> AppArgs:
    """The app arguments for one model (shorthand, config mapping) or a YAML/JSON args file.

    ``config`` (a file holding what ``serve_config.yaml``'s ``args`` holds, or that mapping)
    wins over ``model``; the other keywords override it.
    """
    if config is not None:
        data = dict(config) if isinstance(config, Mapping) else _read_args_file(Path(config))
    else:
        model_name = name or (model if isinstance(model, str) and _plain_name(model) else "default")
        data = {"models": {model_name: model}}
    if api_key_env is not None:
        data["api_key_env"] = api_key_env
    if chunk_size is not None:
        data["chunk_size"] = chunk_size
    if replicas is not None:
        per_variant = {"num_replicas": replicas, "autoscaling_config": None}
        deployments = dict(data.get("deployments") or {})
        for variant in variant_names():
            deployments[variant] = {**dict(deployments.get(variant) or {}), **per_variant}
        data["deployments"] = deployments
    return AppArgs.model_validate(data)


def _plain_name(text: str) -> bool:
    return text.replace("-", "").replace("_", "").isalnum()


def _read_args_file(path: Path) -> dict[str, Any]:
    text = read_text_file(path, "--config")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
        if isinstance(data, dict) and "applications" in data:  # a whole serve_config.yaml
            data = data["applications"][0].get("args", {})
    else:
        import json

        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of app arguments")
    return data


def serve_main(
    model: str | Mapping[str, Any] = "fast",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_cpus: int | None = None,
    block: bool = True,
    **app_options: Any,
) -> int:
    """Serve ``model`` over HTTP on a local Ray until interrupted.

    Example:
        >>> serve_main("fast", port=8000)                       # doctest: +SKIP
        >>> serve_main("./models/my-reranker", name="mine")       # doctest: +SKIP

    Args:
        model: a preset name (default ``fast``), a local model folder when offline, any
            shorthand or config mapping ``reranker.parse_backend_config`` accepts.
        host: interface the HTTP proxy binds (``0.0.0.0`` to expose it).
        port: HTTP port.
        num_cpus: CPUs Ray may use; default: all.
        block: wait for Ctrl-C, then shut down (``False`` returns once the app is up, for
            tests; the caller then owns the shutdown).
        app_options: keywords of :func:`app_args_for` (``name``, ``api_key_env``,
            ``chunk_size``, ``replicas``, ``config``).

    Returns:
        0 after a clean shutdown.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import ray
    from ray import serve

    from deployments.serve.app import build_app

    args = app_args_for(model, **app_options)
    app = build_app(args)
    check_models(args.models.values())
    # address="local": always a Ray of its own, never one another process left running here.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    # ray.init installs a native SIGTERM handler that aborts the process; take SIGTERM back at
    # once, before the app is up, so a stop that arrives while starting is still graceful.
    stop = threading.Event()
    previous = None
    if block and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except RuntimeError as exc:  # "Deploying application reranker failed: ..."
            raise StartupError(f"the app did not start: {_deploy_failure(exc)}") from None
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        sys.stderr.write(
            f"reranker is serving {', '.join(args.models)} at http://{shown}:{port} "
            f"(docs: /docs); Ctrl-C stops it\n"
        )
        if not block:
            return 0
        _wait_for_interrupt(stop)
    except BaseException:
        _shutdown(args)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _shutdown(args)
    return 0


def _deploy_failure(exc: RuntimeError) -> str:
    """The root cause of a failed deployment: Serve's own error names only the deployment; the
    replicas' errors are in the status of each deployment."""
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # the controller is gone too: the error is all there is
        return root_cause(exc)
    if app is None:
        return root_cause(exc)
    messages = [d.message for d in app.deployments.values() if d.message]
    return root_cause("\n".join(messages or [app.message or str(exc)]))


def _wait_for_interrupt(stop: threading.Event) -> None:
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def _shutdown(args: AppArgs) -> None:
    import ray

    if not ray.is_initialized():
        return
    # Not serve.shutdown(): it asks the controller to end itself, which kills the actor that
    # runs that very call, so Ray logged "ServeController.graceful_shutdown failed" on every
    # stop, and it waited 30 s when the controller was already gone. Deleting the app drains
    # the replicas (bounded by their graceful_shutdown_timeout_s); ray.shutdown() then ends
    # the controller and the proxy with the rest of this process's local cluster.
    # A stop sent to the whole process group (systemd, a terminal's Ctrl-C) reaches Ray's own
    # processes too; a controller that does not answer at once has nothing left to drain, and
    # waiting on it cost 25 s or more.
    opts = args.deployments
    drain_s = max(d.graceful_shutdown_timeout_s for d in
                  (opts.ingress, opts.preset, opts.custom, opts.llm, opts.plugin))
    if _bounded(_ping_controller, 2.0):
        _bounded(_delete_app, drain_s + 5.0)
    ray.shutdown()


def _bounded(call: Any, timeout_s: float) -> bool:
    """Run ``call`` in a daemon thread; whether it returned without error within the time."""
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except Exception:  # a dead controller or cluster: report it as not done
            return
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(timeout_s)


def _ping_controller() -> None:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    ray.get(controller.__ray_ready__.remote(), timeout=2.0)


def _delete_app() -> None:
    from ray import serve

    serve.delete(APP_NAME)


def _cmd_serve(args: argparse.Namespace) -> int:
    return serve_main(
        model_arg(args.model), host=args.host, port=args.port, num_cpus=args.num_cpus,
        name=args.name, config=args.config, api_key_env=args.api_key_env,
        replicas=args.replicas,
    )


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``reranker serve`` (the ``reranker.commands`` entry point)."""
    p = subparsers.add_parser(
        "serve", help="serve the rerank HTTP API on a local Ray (Ctrl-C stops)"
    )
    p.add_argument("--model", "-m", default="fast",
                   help="the default model: preset, repo id, ./folder (offline), provider:model")
    p.add_argument("--name", help="name clients use in the request's model field")
    p.add_argument("--config", help="YAML/JSON app arguments (as in serve_config.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to expose it")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--num-cpus", type=int, help="CPUs Ray may use (default all)")
    p.add_argument("--replicas", type=int, help="fixed replicas per variant (no autoscaling)")
    p.add_argument("--api-key-env", help="variable holding accepted API keys, comma-separated")
    p.set_defaults(func=_cmd_serve)
    return p
