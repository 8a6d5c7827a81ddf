"""The ``reranker`` command line: rerank, presets, models, download, eval and bench here;
``serve`` and ``batch`` are contributed by ``deployments/`` (Ray) through the
``reranker.commands`` entry points, so this package never imports it.

Errors from the library are printed as one ``error:`` line on stderr with exit status 2; the
command never prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from reranker.cli.arguments import model_arg, read_text_file
from reranker.errors import InvalidInputError, RerankerError

__all__ = ["COMMAND_GROUP", "main", "build_parser"]

#: Entry-point group of commands contributed by other packages (see pyproject.toml).
COMMAND_GROUP = "reranker.commands"


def _read_documents(args: argparse.Namespace) -> list[Any]:
    images: list[Any] = [{"image": path} for path in args.image or ()]
    if args.documents or images:
        return list(args.documents) + images
    if args.documents_file:
        text = read_text_file(args.documents_file, "--documents-file")
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise InvalidInputError(
            "no documents: pass them as arguments, with --documents-file, or on stdin",
            param="documents",
        )
    return _parse_documents(text)


def _parse_documents(text: str) -> list[Any]:
    """A JSON array, JSON lines (strings or objects), or plain lines of text."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise InvalidInputError(f"documents are not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise InvalidInputError("a JSON documents file must hold an array")
        return data
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(line.lstrip().startswith(("{", '"')) for line in lines):
        try:
            return [json.loads(line) for line in lines]
        except ValueError as exc:
            raise InvalidInputError(f"documents are not valid JSON lines: {exc}") from exc
    return lines


def _local_overrides(args: argparse.Namespace, model: Any) -> Any:
    from reranker.config import parse_backend_config

    cfg = parse_backend_config(model)
    cfg = _provider_overrides(args, cfg)
    wanted = {
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "long_documents": args.long_documents,
        "cache_dir": args.cache_dir,
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return cfg
    if not cfg.runs_locally:
        raise InvalidInputError(
            f"{', '.join('--' + k.replace('_', '-') for k in wanted)} apply to local models "
            f"only, not to a {cfg.type!r} backend"
        )
    # Only the fields the user set: re-sending defaults would mark them as chosen (a default
    # model_file then reads as "this ONNX file", refusing a safetensors-only folder).
    return parse_backend_config({**cfg.model_dump(exclude_unset=True), **wanted})


def _provider_overrides(args: argparse.Namespace, cfg: Any) -> Any:
    """``--base-url`` / ``--api-key-env`` for provider models (``-m nvidia_nim:MODEL``)."""
    from reranker.config import LlmConfig, parse_backend_config

    wanted = {k: v for k, v in (("base_url", args.base_url),
                                ("api_key_env", args.api_key_env)) if v is not None}
    if not wanted:
        return cfg
    if not isinstance(cfg, LlmConfig):
        raise InvalidInputError(
            f"{', '.join('--' + k.replace('_', '-') for k in wanted)} apply to provider "
            f"models (PROVIDER:MODEL) only, not to a {cfg.type!r} backend"
        )
    return parse_backend_config({**cfg.model_dump(), **wanted})


def _cmd_rerank(args: argparse.Namespace) -> int:
    from reranker.api import Reranker
    from reranker.backends.base import check_instruction
    from reranker.models.vision.inputs import rerank_inputs
    from reranker.scoring import check_min_score, check_top_k

    documents = _read_documents(args)
    query: Any = args.query
    if args.query_image:
        query = {"text": args.query or None, "image": args.query_image}
    # Bad input is reported before a model is loaded (or downloaded); whether the model reads
    # images is known once it is loaded.
    rerank_inputs(query, documents, args.text_field, takes_images=True, backend="")
    check_top_k(args.top_k)
    check_min_score(args.min_score)
    config = _local_overrides(args, model_arg(args.model))
    check_instruction(f"backend {config.display_name!r}", config.takes_instruction is not False,
                      args.instruction)
    with Reranker(config) as rr:
        results = rr.rerank(
            query, documents, top_k=args.top_k, raw_scores=args.raw_scores,
            return_documents=not args.no_documents, text_field=args.text_field,
            max_tokens_per_doc=args.max_tokens_per_doc, instruction=args.instruction,
            min_score=args.min_score,
        )
        name = rr.name
    if args.format == "json":
        out = {"model": name, "results": [r.model_dump(exclude_none=True) for r in results]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_table(results, with_documents=not args.no_documents)
    return 0


def _print_table(results: Sequence[Any], *, with_documents: bool) -> None:
    # Without documents the table ends at the score: no empty column, no trailing spaces.
    print(f"{'rank':>4}  {'index':>5}  {'score':>10}" + ("  document" if with_documents else ""))
    for rank, r in enumerate(results, 1):
        row = f"{rank:>4}  {r.index:>5}  {r.score:>10.6f}"
        if with_documents:
            doc = r.document if isinstance(r.document, str) else json.dumps(r.document)
            doc = "" if r.document is None else doc.replace("\n", " ")
            row += "  " + (doc if len(doc) <= 70 else doc[:67] + "...")
        print(row)


def _cmd_presets(args: argparse.Namespace) -> int:
    from typing import get_args

    from reranker.optimize import Optimization
    from reranker.presets import PRESETS

    if args.json:
        # model_file and runs say what a default CPU config of the preset fetches and runs
        # (fast: the float32 export, quantized at first use), not the repository's own file.
        rows = [
            {"name": p.name, "repo_id": p.repo_id, "revision": p.revision,
             "optimization": p.optimization, "model_file": p.source_file(p.optimization),
             "runs": p.runs(p.optimization),
             "model_file_by_optimization": {o: p.source_file(o) for o in get_args(Optimization)},
             "additional_files": list(p.additional_files),
             "max_length": p.max_length, "languages": p.languages,
             "download_size_mb": p.download_size_mb, "parameters_m": p.parameters_m,
             "memory_mb": p.memory_mb, "description": p.description}
            for p in PRESETS.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<13}{'repo':<40}{'size':>8}{'memory':>9}{'max len':>9}  languages")
    for p in PRESETS.values():
        memory = f"{p.memory_mb}MB" if p.memory_mb else "-"
        print(f"{p.name:<13}{p.repo_id:<40}{p.download_size_mb:>6}MB{memory:>9}"
              f"{p.max_length:>9}  {p.languages}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from reranker.models.architectures import families, supported_models_markdown

    if args.markdown:
        print(supported_models_markdown(), end="")
        return 0
    if args.json:
        print(json.dumps([asdict(f) for f in families()], indent=2))
        return 0
    for i, f in enumerate(families()):
        print(("\n" if i else "") + f"{f.name}  ({f.display or f.name}, {f.kind})")
        rows = [("architectures", ", ".join(f.architectures)), ("rule", f.rule),
                ("max length", f.max_length), ("memory", f.memory),
                ("instruction", "yes" if f.takes_instruction else "no"),
                ("known repos", ", ".join(f.repos) or "-")]
        for label, value in rows:
            print(f"  {label + ':':<15}{value}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from reranker.backends.local import fetch_local_model
    from reranker.config import CustomConfig, PresetConfig, parse_backend_config

    cfg = parse_backend_config(model_arg(args.model))
    if not isinstance(cfg, (PresetConfig, CustomConfig)):
        raise InvalidInputError(f"only local models are downloaded, not {cfg.type!r} backends")
    if args.cache_dir:
        cfg = cfg.model_copy(update={"cache_dir": args.cache_dir})
    files = fetch_local_model(cfg)
    print(json.dumps({"model": files.name, "folder": str(files.folder),
                      "model_file": str(files.model_file), "max_length": files.max_length}))
    return 0


def _registered_commands() -> list[Callable[[Any], object]]:
    """Commands other packages add (``deployments`` adds ``serve`` and ``batch``), through the
    ``reranker.commands`` entry-point group; each entry is called with the subparsers."""
    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    return [ep.load() for ep in found]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``reranker`` command."""
    from reranker.cli.bench import add_bench_parser
    from reranker.cli.eval import add_eval_parser
    from reranker.cli.providers import add_providers_parser

    parser = argparse.ArgumentParser(
        prog="reranker", description="Rerank documents with cross-encoders, locally or on Ray."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rerank", help="rerank documents for a query")
    p.add_argument("--query", "-q", required=True)
    p.add_argument("documents", nargs="*", help="documents (else --documents-file or stdin)")
    p.add_argument("--documents-file", "-f",
                   help="JSON array, JSON lines, or one document per line")
    p.add_argument("--model", "-m", default="fast",
                   help="preset, repo id, ./folder, provider:model, plugin:name or JSON config")
    p.add_argument("--top-k", "-k", type=int)
    p.add_argument("--raw-scores", action="store_true", help="logits instead of probabilities")
    p.add_argument("--min-score", type=float,
                   help="drop results scoring below this (a probability unless --raw-scores); "
                   "default: the model's configured min_score")
    p.add_argument("--no-documents", action="store_true", help="omit documents from output")
    p.add_argument("--text-field", default="text", help="text key of object documents")
    p.add_argument("--image", action="append", metavar="FILE",
                   help="an image document (repeatable; after the text documents); needs a "
                   "vision reranker such as --model visual")
    p.add_argument("--query-image", metavar="FILE",
                   help="an image for the query (with the query text, which may be empty)")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.add_argument("--max-length", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--long-documents", choices=("truncate", "chunk"))
    p.add_argument("--max-tokens-per-doc", type=int,
                   help="score only each document's first N tokens (local models)")
    p.add_argument("--instruction",
                   help="task instruction of an instruction-following reranker (the instruct "
                        "preset, Qwen3-Reranker); default the model's configured one")
    p.add_argument("--cache-dir")
    p.add_argument("--base-url",
                   help="provider models: where requests go (a proxy, a self-hosted server)")
    p.add_argument("--api-key-env",
                   help="provider models: the environment variable holding the key "
                        "(default the provider's own: `reranker providers`)")
    p.set_defaults(func=_cmd_rerank)

    for register in _registered_commands():
        register(sub)
    add_eval_parser(sub)
    add_bench_parser(sub)
    add_providers_parser(sub)

    p = sub.add_parser("presets", help="list the bundled presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("models", help="list the model families built from safetensors")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true")
    shown.add_argument("--markdown", action="store_true", help="the Supported models table")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("download", help="pre-fetch a model for offline use")
    p.add_argument("model", help="preset name, repo id or local folder")
    p.add_argument("--cache-dir")
    p.set_defaults(func=_cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reranker`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RerankerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # unreadable files; invalid app arguments (pydantic)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

