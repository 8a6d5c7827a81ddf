"""Ray Serve deployment of reranker: a thin layer that puts ``reranker`` backends in replicas.

- ``deployments.serve.app.build_app``: the app builder (``serve_config.yaml``'s ``import_path``).
- ``deployments.serve.args.AppArgs``: its validated arguments.
- ``deployments.serve.cli.serve_main``: what ``reranker serve`` runs.

Importing this package does not import Ray; the modules that need it do.
"""

from __future__ import annotations

__all__ = ["AppArgs", "build_app", "serve_main"]


def __getattr__(name: str) -> object:
    if name == "AppArgs":
        from deployments.serve.args import AppArgs

        return AppArgs
    if name == "build_app":
        from deployments.serve.app import build_app

        return build_app
    if name == "serve_main":
        from deployments.serve.cli import serve_main

        return serve_main
    raise AttributeError(f"module 'deployments' has no attribute {name!r}")
