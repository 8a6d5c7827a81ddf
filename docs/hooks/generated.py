"""MkDocs hook: the site's reference tables come from the code at build time, never by hand.

A page asks for a table with a marker on a line of its own, replaced when the page is built:

- ``<!-- generated: NAME -->``: the output of ``GENERATORS[NAME]`` (the CLI reference from the
  argparse parser, the public names of ``reranker``, the Supported models table from the one
  architecture table and its memory column, the Providers table from the provider list);
- ``<!-- include: PATH -->``: a file of the repository (a benchmark's Markdown table), so the
  figures on the Performance page are the ones the benchmark wrote;
- ``<!-- fields: module.Class -->``: a pydantic config model's fields (name, default, bounds,
  description), so a table of settings is the one the validator applies.

The benchmark plots under ``benchmarks/results/`` are added to the site as
``results/<name>.png``. An unknown marker, or a generator that fails (a contract function not
there yet), fails the build: a page never ships with a hole where a table should be.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
_MARKER = re.compile(r"^<!-- (generated|include|fields): ([\w./-]+) -->$", flags=re.M)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{n}`" for n in action.option_strings) or f"`{action.dest}`"
    if action.nargs in ("*", "+") and not action.option_strings:
        names += " ..."
    if action.choices:
        takes = ", ".join(f"`{c}`" for c in action.choices)
    elif action.nargs == 0:
        takes = "flag"
    else:
        takes = (action.metavar or action.dest).upper() if action.option_strings else "text"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else (
        f"`{default}`")
    if action.required and action.nargs not in ("*", "?"):
        shown = "required"
    return f"| {names} | {_cell(takes)} | {shown} | {_cell(action.help or '')} |"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def cli_markdown() -> str:
    """One section per ``reranker`` subcommand: usage, then a table of its arguments."""
    from reranker.cli.main import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"  # argparse wraps usage to the terminal; pin it for the page
    try:
        parser = build_parser()
        helps = _helps(parser)
        out = []
        for name, sub in _subcommands(parser).items():
            rows = [_option_row(a) for a in sub._actions
                    if not isinstance(a, argparse._HelpAction)]
            summary = _cell(helps.get(name, ""))
            usage = sub.format_usage().strip().removeprefix("usage: ")
            # Continuation lines were indented past "usage: "; keep them under the command.
            usage = usage.replace("\n" + " " * len("usage: "), "\n")
            out += [f"### reranker {name}", "", summary[:1].upper() + summary[1:] + ".", "",
                    "```text", usage, "```", ""]
            if rows:
                out += ["| argument | takes | default | meaning |", "|---|---|---|---|",
                        *rows, ""]
        return "\n".join(out)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def _bounds(metadata: list[Any]) -> str:
    names = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    out = []
    for item in metadata:
        for attr, sign in names.items():
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
    return ", ".join(out)


def fields_markdown(dotted: str) -> str:
    """A table of a pydantic model's fields: ``module.Class`` -> name, default, bounds, meaning."""
    import importlib

    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    module, _, name = dotted.rpartition(".")
    model = getattr(importlib.import_module(module), name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{dotted} is not a pydantic model")
    rows = ["| field | default | bounds | meaning |", "|---|---|---|---|"]
    for field, info in model.model_fields.items():
        if field == "type":
            continue
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif info.default_factory is not None:
            default = f"`{info.default_factory()!r}`"
        elif isinstance(info.default, int) and not isinstance(info.default, bool):
            default = f"`{info.default:,}`"
        else:
            default = f"`{info.default!r}`"
        rows.append(f"| `{field}` | {default} | {_bounds(info.metadata)} "
                    f"| {_cell(info.description or '')} |")
    return "\n".join(rows)


def _summary(obj: object) -> str:
    """The first line of an object's own docstring, RST roles turned into Markdown code."""
    import inspect

    module = getattr(obj, "__module__", "") or ""
    if not module.startswith(("reranker", "deployments")):
        return ""
    line = (inspect.getdoc(obj) or "").split("\n")[0]
    line = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", line)
    return line.replace("``", "`")


def public_api_markdown() -> str:
    """``reranker.__all__``: each public name, what it is, and its docstring's first line."""
    import inspect

    import reranker

    rows = ["| name | kind | what it is |", "|---|---|---|"]
    for name in reranker.__all__:
        obj = getattr(reranker, name)
        if inspect.isclass(obj):
            kind = "error" if issubclass(obj, BaseException) else "class"
        elif inspect.isfunction(obj):
            kind = "function"
        else:
            kind = "value"
        rows.append(f"| `{name}` | {kind} | {_cell(_summary(obj))} |")
    return "\n".join(rows)


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _table_rows(markdown: str) -> tuple[list[str], list[list[str]]]:
    """A Markdown table's header cells and body rows (cells stripped, escapes kept)."""
    lines = [ln for ln in markdown.strip().split("\n") if ln.startswith("|")]
    split = [[c.strip() for c in _CELL_SPLIT.split(ln)[1:-1]] for ln in lines]
    return split[0], split[2:]


def _models_table() -> tuple[list[str], list[list[str]]]:
    from reranker.models.architectures import supported_models_markdown as table

    return _table_rows(table())


def supported_models_markdown() -> str:
    """The Supported models table (contract 1, from the one architecture table), without its
    Memory column: that column's formulas are long and mostly shared, so they get their own
    table (``supported-models-memory``) and the families' table stays readable."""
    header, rows = _models_table()
    keep = [i for i, name in enumerate(header) if name != "Memory"]
    out = ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    out += ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]
    return "\n".join(out)


def supported_models_memory_markdown() -> str:
    """The Memory column of the Supported models table: each formula once, with its families."""
    header, rows = _models_table()
    memory, family = header.index("Memory"), header.index("Family")
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row[memory], []).append(row[family])
    out = ["| run memory of one pair | families |", "|---|---|"]
    out += [f"| {formula} | {', '.join(names)} |" for formula, names in groups.items()]
    return "\n".join(out)


def providers_markdown() -> str:
    """The Providers table: contract 3, rendered from the provider list (liter-llm)."""
    from reranker.providers import providers_markdown as table  # type: ignore[attr-defined]

    return table()


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_markdown,
    "public-api": public_api_markdown,
    "supported-models": supported_models_markdown,
    "supported-models-memory": supported_models_memory_markdown,
    "providers": providers_markdown,
}


def _escape_line(line: str) -> str:
    parts = re.split(r"(`[^`]*`)", line)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;")
                   for p in parts)


def _escape_html(markdown: str) -> str:
    """``<`` and ``>`` in table rows, outside code spans, as text: a table's ``<s>`` (XLM-R's
    first token) is a token, not a strikethrough tag. Code blocks are left as they are."""
    return "\n".join(_escape_line(ln) if ln.startswith("|") else ln
                     for ln in markdown.split("\n"))


def render_markers(markdown: str, where: str) -> str:
    """``markdown`` with every marker replaced; raises PluginError naming the page and marker."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "include":
            path = (ROOT / name).resolve()
            if ROOT not in path.parents or not path.is_file():
                raise PluginError(f"{where}: include {name!r} is not a file of the repository")
            return path.read_text(encoding="utf-8").strip()
        if kind == "fields":
            try:
                return fields_markdown(name)
            except Exception as exc:
                raise PluginError(f"{where}: fields of {name!r}: {exc!r}") from exc
        if name not in GENERATORS:
            raise PluginError(f"{where}: unknown generated table {name!r}; known: "
                              f"{', '.join(GENERATORS)}")
        try:
            return _escape_html(GENERATORS[name]().strip())
        except Exception as exc:
            raise PluginError(f"{where}: generating {name!r} failed: {exc!r}") from exc

    return _MARKER.sub(replace, markdown)


def on_files(files: Files, config: Any) -> Files:
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return render_markers(markdown, page.file.src_uri)
