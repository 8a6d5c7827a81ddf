"""The code blocks of README.md and docs/*.md, and how each is checked against the real code.

Every fenced block is checked by its language, with the strongest check this machine allows:

- ``python``: run. The blocks of one page run in order in one fresh interpreter (names carry
  over, as for a reader pasting them), against the Hub stand-in. A block that needs what no test
  has (a cluster, a provider account, torch, a package of the reader's) is marked
  ``<!-- docs-test: compile REASON -->`` on the line above it: it is compiled, and every
  ``reranker``/``deployments`` import and ``module:attr`` plugin path in it must resolve.
- ``bash``: every command line is split as the shell would (``shlex``). ``reranker ...`` is
  parsed by the real argparse parser; ``curl`` is sent to the app's HTTP layer; ``pip install``
  extras must exist in pyproject.toml; files named by ``-f``, ``serve deploy``, ``python
  script.py`` must exist, with the flags and build args they are given; an exported
  ``*_IMPORT_PATH`` must import. Tools that need a cluster or registry (``helm``,
  ``kubectl get``, ``docker push``, ``ray start``) are listed in ``EXTERNAL`` and not run.
  A command with no checker fails the test, so a new kind of command gets one.
- ``yaml``: Serve config files (``applications:``) are validated app by app with ``AppArgs``;
  fragments of app args on one page are merged and validated with ``AppArgs``.
- ``json``: an object with a ``type`` is a model config, validated by
  ``reranker.config.parse_backend_config`` (unknown fields are refused). Any other object is a
  request body of the Cohere-shaped routes: it must validate with both ``V1RerankRequest`` and
  ``V2RerankRequest`` (strict types), use only their fields (the schemas ignore unknown ones,
  so a typo would pass them), and give document objects only ``text`` and ``image`` strings.
- ``text``: output or usage shown to the reader, not code: not run.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]+)[^\n]*\n(?P<code>.*?)^(?P=indent)```",
                    flags=re.S | re.M)
_MARK = re.compile(r"<!-- docs-test: (?P<mode>\w+)(?: (?P<why>.*?))? -->")
_PLUGIN_PATH = re.compile(r"[\"']((?:reranker|deployments)(?:\.\w+)+:\w+)[\"']")
MODES = ("run", "compile")


@dataclass(frozen=True)
class Block:
    page: str  # path from the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mode: str | None = None  # from a docs-test marker on the line above
    why: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and the site's pages (docs/notes/ is not part of the site)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = [ln for ln in text[:match.start()].splitlines() if ln.strip()]
        mark = _MARK.search(before[-1]) if before else None
        indent = len(match.group("indent"))
        code = "".join(ln[indent:] + "\n" for ln in match.group("code").splitlines())
        out.append(Block(str(path.relative_to(ROOT)), line, match.group("lang"), code,
                         mark.group("mode") if mark else None,
                         mark.group("why") if mark else None))
    return out


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p)]


# --- Python --------------------------------------------------------------------------------

def resolve(dotted: str) -> object:
    """``module:attr`` or ``module.attr`` imported; raises naming what did not resolve."""
    module, sep, attr = dotted.partition(":")
    if not sep:
        module, _, attr = dotted.rpartition(".")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AssertionError(f"{dotted}: {module} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def check_compiles(block: Block) -> None:
    """Compiled, and its own project's imports and plugin paths resolve."""
    tree = ast.parse(block.code, filename=block.where)
    ours = ("reranker", "deployments")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ours:
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.where}: {node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ours:
                    importlib.import_module(alias.name)
    for path in _PLUGIN_PATH.findall(block.code):
        resolve(path)


# One interpreter for every page (starting one costs about 2 s here); each page gets a fresh
# namespace, and a failing block's traceback names its page and line.
RUNNER = """\
import json, sys
namespaces = {}
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    ns = namespaces.setdefault(block["page"], {"__name__": "__main__"})
    print(f"--- {block['where']}", flush=True)
    exec(compile(block["code"], block["where"], "exec"), ns)
"""


# --- bash ----------------------------------------------------------------------------------

#: Commands that need a cluster, a registry or an account: named here, not run.
EXTERNAL = {"helm", "cat", "ray", "huggingface-cli", "docker push", "kubectl get",
            "serve status"}
#: The lint, type and docs tools of the test command, which CI runs as written.
TEST_TOOLS = {"ruff", "mypy", "mkdocs"}


def commands(code: str) -> Iterator[list[str]]:
    """Each simple command of a shell block (``&&``, ``||``, ``|``, ``;`` split), comments dropped.

    Commands are written with spaces around those operators, as every page does.
    """
    for line in code.replace("\\\n", " ").splitlines():
        current: list[str] = []
        for token in shlex.split(line, comments=True):
            if token in {"&&", "||", "|", ";"}:
                if current:
                    yield current
                current = []
            else:
                current.append(token)
        if current:
            yield current


def _name(argv: list[str]) -> str:
    name = Path(argv[0]).name  # .venv/bin/reranker is reranker
    return "python" if re.fullmatch(r"python3?(\.\d+)?", name) else name


def _extras() -> set[str]:
    from importlib.metadata import metadata

    return set(metadata("reranker").get_all("Provides-Extra") or [])


def check_reranker(args: list[str], ctx: Context) -> None:
    from reranker.cli.main import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"reranker {' '.join(args)}: {err.getvalue().strip()}") from exc


def check_pip(args: list[str], ctx: Context) -> None:
    assert args and args[0] == "install", args
    for spec in args[1:]:
        extras = re.search(r"\[([\w,-]+)\]", spec)
        if extras and spec.split("[")[0] in {".", "reranker", "-e ."}:
            missing = set(extras.group(1).split(",")) - _extras()
            assert not missing, f"pip install {spec}: no extra {sorted(missing)} in pyproject.toml"


def check_python(args: list[str], ctx: Context) -> None:
    if args[:2] == ["-m", "pytest"]:
        return
    if args[:1] == ["-m"]:
        assert importlib.util.find_spec(args[1]), f"no module {args[1]}"
        return
    if args[:1] == ["-c"]:
        compile(args[1], "<python -c>", "exec")
        return
    script = ROOT / args[0]
    assert script.is_file(), f"python {args[0]}: no such file"
    sources = "".join(p.read_text(encoding="utf-8") for p in script.parent.glob("*.py"))
    for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
        assert f'"{flag}"' in sources, f"{args[0]} takes no {flag}"


def check_file(path: str) -> Path:
    found = ROOT / path
    assert found.is_file(), f"{path}: no such file in the repository"
    return found


def check_docker(args: list[str], ctx: Context) -> None:
    assert args[0] == "build", args
    dockerfile = check_file(args[args.index("-f") + 1])
    declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(encoding="utf-8"), re.M))
    for i, arg in enumerate(args):
        if arg == "--build-arg":
            name = args[i + 1].split("=")[0]
            assert name in declared, f"{dockerfile.name} declares no ARG {name}"


def check_kubectl(args: list[str], ctx: Context) -> None:
    assert args[0] == "apply", args
    check_file(args[args.index("-f") + 1])


def check_serve(args: list[str], ctx: Context) -> None:
    assert args[0] in {"deploy", "run"}, args
    check_file(args[1])


def check_export(args: list[str], ctx: Context) -> None:
    for assignment in args:
        name, _, value = assignment.partition("=")
        if name.endswith("_IMPORT_PATH"):
            resolve(value)


def check_curl(args: list[str], ctx: Context) -> None:
    headers, data, url = {}, None, None
    it = iter(args)
    for arg in it:
        if arg == "-H":
            key, _, value = next(it).partition(":")
            headers[key.strip()] = value.strip()
        elif arg in {"-d", "--data"}:
            data = next(it)
        elif not arg.startswith("-"):
            url = arg
    assert url is not None, args
    url = re.sub(r"^(https?://)?localhost:8000", ctx.base_url, url)
    response = httpx.request("POST" if data else "GET", url, headers=headers,
                             content=data, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text)
    ctx.responses.append(response.json())


@dataclass
class Context:
    base_url: str  # the app's HTTP layer, where curl examples are sent
    responses: list[Any]


CHECKS: dict[str, Callable[[list[str], Context], None]] = {
    "reranker": check_reranker, "pip": check_pip, "python": check_python,
    "docker": check_docker, "kubectl": check_kubectl, "serve": check_serve,
    "export": check_export, "curl": check_curl,
}


def check_command(argv: list[str], ctx: Context) -> str:
    """Check one command; returns how (``checked``, ``external``, ``test tool``)."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
        argv = argv[1:]  # VAR=value prefix
    name = _name(argv)
    if name in TEST_TOOLS:
        return "test tool"
    if name in EXTERNAL or f"{name} {argv[1] if len(argv) > 1 else ''}" in EXTERNAL:
        return "external"
    if name not in CHECKS:
        raise AssertionError(f"no checker for `{' '.join(argv)}`: add one to doc_blocks.CHECKS"
                             " or, for a tool that needs a cluster, to EXTERNAL")
    CHECKS[name](argv[1:], ctx)
    return "checked"


# --- YAML ----------------------------------------------------------------------------------

def check_yaml(page_blocks: list[Block]) -> int:
    """Validate a page's YAML blocks; returns how many were validated."""
    from deployments.serve.args import AppArgs

    fragments: dict[str, Any] = {}
    for block in page_blocks:
        data = yaml.safe_load(block.code)
        assert isinstance(data, dict), f"{block.where}: not a mapping"
        if "applications" in data:
            for app in data["applications"]:
                resolve(app["import_path"])
                AppArgs.model_validate(app.get("args") or {})
        else:
            unknown = set(data) - set(AppArgs.model_fields)
            assert not unknown, f"{block.where}: not AppArgs fields: {sorted(unknown)}"
            fragments.update(data)
    if fragments:
        AppArgs.model_validate({"models": {"fast": "fast"}, **fragments})
    return len(page_blocks)


# --- JSON ----------------------------------------------------------------------------------

def check_json(block: Block) -> None:
    """A model config, or a rerank request body as ``/v1/rerank`` and ``/v2/rerank`` take it."""
    import json

    from deployments.serve.schemas import V1RerankRequest, V2RerankRequest
    from reranker.config import parse_backend_config

    body = json.loads(block.code)
    assert isinstance(body, dict), f"{block.where}: a config or request body is an object"
    if "type" in body:
        parse_backend_config(body)  # ConfigError (a ValueError) names the field
        return
    for schema in (V1RerankRequest, V2RerankRequest):
        unknown = set(body) - set(schema.model_fields)
        assert not unknown, f"{block.where}: {schema.__name__} has no {sorted(unknown)}"
        schema.model_validate(body)
    for i, doc in enumerate(body["documents"]):
        if isinstance(doc, dict):
            assert doc and set(doc) <= {"text", "image"}, f"{block.where}: documents[{i}]"
            assert all(isinstance(v, str) for v in doc.values()), f"{block.where}: documents[{i}]"
