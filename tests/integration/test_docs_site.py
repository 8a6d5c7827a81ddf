"""The docs site: it builds strict, references nothing off-site, its generated tables match the
code, and its first pages render in a headless browser that can reach no host but loopback.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.docs_browser import chromium_path, screenshot
from tests.integration.site_browser import (
    PAGES,
    ROOT,
    build_site,
    external_references,
    serve_site,
)

pytestmark = pytest.mark.integration

needs_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="needs a chromium binary on PATH (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("site") / "site")


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    with serve_site(site) as url:
        yield url


def _text(site: Path, page: str) -> str:
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_strict_build_fails_on_a_broken_link_or_anchor(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("notes"))
    shutil.copytree(ROOT / "benchmarks" / "results", copy / "benchmarks" / "results")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    with (copy / "docs" / "limits.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [a](serving.md#no-such-section) and [b](no-such-page.md).\n")
    with pytest.raises(RuntimeError, match="strict mode") as failed:
        build_site(tmp_path / "site", copy / "mkdocs.yml")
    assert "no-such-section" in str(failed.value) and "no-such-page.md" in str(failed.value)


def test_site_fetches_nothing_off_site(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert external_references(site) == []
    # The check finds what it looks for: a stylesheet from a CDN would be counted.
    probe = site / "probe" / "index.html"
    probe.parent.mkdir()
    probe.write_text('<link rel="stylesheet" href="https://cdn.example/x.css">')
    try:
        assert len(external_references(site)) == 1
    finally:
        probe.unlink()
        probe.parent.rmdir()


def test_cli_page_lists_every_subcommand_and_option(site: Path) -> None:
    from reranker.cli.main import build_parser

    text = _text(site, "cli")
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in sub.choices.items():
        assert f"reranker {name}" in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)


def test_supported_models_page_lists_every_family(site: Path) -> None:
    from reranker.models.architectures import families

    text = _text(site, "supported-models")
    assert families()
    for family in families():
        for architecture in family.architectures:
            assert architecture in text, (family.name, architecture)
        for repo in family.repos:
            assert repo in text, (family.name, repo)
        # The Memory column is rendered as its own table (one row per formula): none is lost.
        assert family.memory in text, (family.name, family.memory)


def test_providers_page_lists_every_provider(site: Path) -> None:
    from reranker.providers.catalog import provider_names

    text = _text(site, "providers")
    assert provider_names()
    for name in provider_names():
        assert f"{name}:MODEL" in text, name


def test_python_api_page_lists_every_public_name(site: Path) -> None:
    import reranker

    raw = (site / "python-api" / "index.html").read_text(encoding="utf-8")
    listed = set(re.findall(r"<tr>\s*<td><code>(\w+)</code></td>", raw))
    assert set(reranker.__all__) <= listed, set(reranker.__all__) - listed


def test_limits_page_lists_every_limit(site: Path) -> None:
    from deployments.serve.args import LimitsArgs

    text = _text(site, "limits")
    for name, info in LimitsArgs.model_fields.items():
        assert name in text and f"{info.default:,}" in text, name


def test_benchmark_plots_are_on_the_site(site: Path) -> None:
    for name in ("throughput.png", "autoscale.png"):
        assert (site / "results" / name).stat().st_size > 10_000
    assert 'src="../results/throughput.png"' in (site / "performance" / "index.html").read_text(
        encoding="utf-8")


def test_first_pages_have_their_heading_and_navigation(site: Path) -> None:
    headings = {"home": "reranker", "supported-models": "Supported models",
                "serving": "Serving over HTTP"}
    for name, path in PAGES.items():
        raw = (site / path / "index.html").read_text(encoding="utf-8")
        assert re.search(rf"<h1[^>]*>{re.escape(headings[name])}", raw), name
        assert 'class="md-nav' in raw and "Quick start" in raw, name


@needs_chromium
def test_first_pages_render_offline(base_url: str, tmp_path: Path) -> None:
    blank = screenshot("about:blank", tmp_path / "blank.png").stat().st_size
    for name, path in PAGES.items():
        shot = screenshot(f"{base_url}/{path}", tmp_path / f"{name}.png", size=(1280, 1000))
        # A rendered page compresses far worse than a white one (about 110-200 KB against
        # under 10 KB for a blank page of the same size).
        assert shot.stat().st_size > 10 * blank, (name, shot.stat().st_size, blank)
