"""The commands and examples of README.md and of every docs/*.md page, run as written.

Python examples that ask for the ``fast`` preset go through the real first-use download path:
the Hub stand-in serves a tiny model under that preset's repo id and pinned revision, so there
is no network. How each kind of block is checked: tests/integration/doc_blocks.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reranker.config import PresetConfig, parse_backend_config
from reranker.errors import RerankerError
from reranker.presets import PRESETS
from reranker.testing.families.encoder_models import build_cross_encoder
from tests.integration import doc_blocks
from tests.integration.doc_blocks import ROOT, Block, Context
from tests.integration.hub_standin import HubStandin

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = doc_blocks.all_blocks()
PAGES = sorted({b.page for b in BLOCKS})


def _blocks(lang: str, page: str = "README.md") -> list[str]:
    return [b.code for b in BLOCKS if b.lang == lang and b.page == page]


def _test_command(page: str) -> str:
    return next(b.strip() for b in _blocks("bash", page) if "pytest" in b)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _test_command("README.md") in ci.splitlines()
    assert "mkdocs build --strict" in _test_command("README.md")
    # The Development page shows the same command, not a stale copy.
    assert _test_command("docs/development.md") == _test_command("README.md")


def test_readme_first_screen_installs_runs_and_calls() -> None:
    first_screen = README[:README.index("\n## ")]
    bash = [b.strip() for b in _blocks("bash")]
    assert bash[0].endswith("pip install -e .")
    assert bash[1] == ".venv/bin/reranker serve"
    assert bash[2].startswith("curl ") and "/v1/rerank" in bash[2]
    (example,) = _blocks("python")
    assert len(example.strip().splitlines()) <= 5
    for block in (bash[0], bash[1], bash[2], example):
        assert block.strip() in first_screen
    for page in ("quickstart", "python-api", "cli", "serving", "supported-models"):
        assert f"(docs/{page}.md" in first_screen, page


def test_every_block_has_a_known_language_and_mode() -> None:
    for block in BLOCKS:
        assert block.lang in {"python", "bash", "yaml", "json", "text"}, block.where
        assert block.mode in (None, *doc_blocks.MODES), block.where
        if block.mode == "compile":
            assert block.why, f"{block.where}: say why the block cannot run"


def _serve_preset(hub: HubStandin, tmp_path: Path, name: str,
                  monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve a tiny model as preset ``name``; the model file its default config downloads."""
    preset = PRESETS[name]
    folder = build_cross_encoder(tmp_path / name, arch="bert", seed=11)
    files = {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    # The float32 export (optimized at first use) and the file optimization 'none' runs.
    files[preset.model_file] = files["onnx/model.onnx"]
    hub.add_repo(preset.repo_id, files, revision=preset.revision)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # optimized models
    return _default_model_file(parse_backend_config(name))


def _serve_decoders(hub: HubStandin, tmp_path: Path) -> None:
    """A tiny Qwen3-Reranker as the ``instruct`` preset and as the 4B repo the docs name."""
    from reranker.testing.families import qwen3

    folder = qwen3.make_checkpoint(tmp_path / "qwen3", seed=3)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    hub.add_repo(PRESETS["instruct"].repo_id, files, revision=PRESETS["instruct"].revision)
    hub.add_repo("Qwen/Qwen3-Reranker-4B", files)


def _default_model_file(config: object) -> str:
    assert isinstance(config, PresetConfig)
    preset = PRESETS[config.name]
    if config.optimization != "none":
        return preset.model_file.removesuffix("_quantized.onnx") + ".onnx"
    return preset.model_file


def _run_python(blocks: list[Block], cwd: Path) -> subprocess.CompletedProcess[str]:
    listing = cwd / "blocks.json"
    listing.write_text(json.dumps([{"page": b.page, "where": b.where, "code": b.code}
                                   for b in blocks]))
    return subprocess.run([sys.executable, "-c", doc_blocks.RUNNER, str(listing)],
                          capture_output=True, text=True, timeout=180, cwd=cwd)


def test_readme_python_example_runs_through_the_preset_download(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_file = _serve_preset(hub, tmp_path, "fast", monkeypatch)
    (example,) = [b for b in BLOCKS if b.page == "README.md" and b.lang == "python"]
    proc = _run_python([example], tmp_path)
    assert proc.returncode == 0, proc.stderr
    index, score, *doc = proc.stdout.splitlines()[-1].split()
    # A tiny random model: which document wins is arbitrary, but the result must name it.
    documents = ["a kind of fish", "ONNX is a format for ML models"]
    assert 0.0 < float(score) < 1.0 and " ".join(doc) == documents[int(index)]
    assert hub.count(path=model_file) >= 1  # downloaded from the stand-in
    # Second run: served from the cache, no new download of the model file.
    before = hub.count(path=model_file, method="GET")
    again = _run_python([example], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == proc.stdout
    assert hub.count(path=model_file, method="GET") == before


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.page == p and b.mode == "compile" for b in BLOCKS)])
def test_page_python_blocks_that_cannot_run_compile(page: str) -> None:
    for block in BLOCKS:
        if block.page == page and block.lang == "python" and block.mode == "compile":
            doc_blocks.check_compiles(block)


def test_docs_python_blocks_run(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runnable = [b for b in BLOCKS if b.lang == "python" and b.mode != "compile"
                and b.page != "README.md"]  # the README's example has its own test above
    assert {"docs/index.md", "docs/quickstart.md", "docs/python-api.md"} <= {
        b.page for b in runnable}
    _serve_preset(hub, tmp_path, "fast", monkeypatch)
    _serve_decoders(hub, tmp_path)
    proc = _run_python(runnable, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.count("--- ") == len(runnable)


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """The app's HTTP layer (the real FastAPI app over fake deployment handles, no Ray)."""
    from deployments.serve.http_api import build_api
    from tests.unit.serve_fakes import serve_on_loopback, service, settings

    with serve_on_loopback(build_api(service(settings({"fast": "fast"})))) as url:
        yield url


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.page == p and b.lang == "bash" for b in BLOCKS)])
def test_page_shell_commands_check(page: str, app_url: str) -> None:
    ctx = Context(base_url=app_url, responses=[])
    how = []
    for block in (b for b in BLOCKS if b.page == page and b.lang == "bash"):
        for argv in doc_blocks.commands(block.code):
            try:
                how.append(doc_blocks.check_command(argv, ctx))
            except AssertionError as exc:
                raise AssertionError(f"{block.where}: {exc}") from exc
    assert "checked" in how or "test tool" in how, how
    for answer in ctx.responses:  # every curl example got a ranking back
        results = answer["results"] if isinstance(answer, dict) else answer  # TEI: a bare list
        assert results and "index" in results[0], answer
        assert {"relevance_score", "score"} & set(results[0]), answer


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.page == p and b.lang == "yaml" for b in BLOCKS)])
def test_page_yaml_blocks_validate(page: str) -> None:
    assert doc_blocks.check_yaml([b for b in BLOCKS if b.page == page and b.lang == "yaml"])


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.page == p and b.lang == "json" for b in BLOCKS)])
def test_page_json_blocks_validate(page: str) -> None:
    for block in BLOCKS:
        if block.page == page and block.lang == "json":
            doc_blocks.check_json(block)


def test_json_check_catches_mistakes() -> None:
    wrong = ['{"query": "q", "documents": ["a"], "top_k": 1}',  # Cohere says top_n
             '{"query": "q", "documents": [{"img": "x"}]}',
             '{"query": "q", "documents": [{"image": 3}]}',
             '{"query": 1, "documents": ["a"]}',
             '{"type": "preset", "name": "fast", "no_such_option": true}',
             '{"type": "preset", "name": "no-such-preset"}',
             '["not", "an", "object"]']
    for code in wrong:
        with pytest.raises((AssertionError, ValueError, RerankerError)):
            doc_blocks.check_json(Block("test", 1, "json", code))


def test_command_checks_catch_mistakes(app_url: str) -> None:
    ctx = Context(base_url=app_url, responses=[])
    wrong = [
        "reranker rerank --no-such-flag -q x a",
        "reranker servee",
        'pip install "reranker[no-such-extra]"',
        "docker build -f deploy/Dockerfile --build-arg NOPE=1 .",
        "kubectl apply -f deploy/kubernetes/missing.yaml",
        "python benchmarks/compare.py --no-such-flag 3",
        "export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.serve.proxy_middleware:nope",
        "curl -s localhost:8000/v1/rerank -H 'content-type: application/json' -d '{\"query\": 1}'",
        "frobnicate --all",
    ]
    for line in wrong:
        (argv,) = doc_blocks.commands(line)
        with pytest.raises((AssertionError, ImportError)):
            doc_blocks.check_command(argv, ctx)
    assert list(doc_blocks.commands("a x \\\n  y && b | c  # note\nd 'e # f'")) == [
        ["a", "x", "y"], ["b"], ["c"], ["d", "e # f"]]


def test_cli_example_runs(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_preset(hub, tmp_path, "fast", monkeypatch)
    cli_block = next(b for b in _blocks("bash", "docs/cli.md") if "reranker rerank" in b)
    first = cli_block.strip().splitlines()[0]
    script = Path(sys.executable).parent / "reranker"
    args = re.findall(r'"[^"]*"|\S+', first)[1:]
    proc = subprocess.run([str(script), *[a.strip('"') for a in args]], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "a format for ML models" in proc.stdout
