"""/docs and /redoc render in a real headless browser that can reach no host but loopback.

Chromium runs the pages' scripts; the rendered DOM must hold the operations of the OpenAPI
document, which only happens when Swagger UI and ReDoc were loaded from the app itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.docs_browser import chromium_path, dump_dom, screenshot, serve_docs_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None,
                       reason="needs a chromium binary on PATH (apt-get install chromium)"),
]

OPERATIONS = ("/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank", "/v1/models")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_docs_app() as url:
        yield url


def test_swagger_ui_renders_offline(base_url: str) -> None:
    dom = dump_dom(f"{base_url}/docs")
    assert 'class="swagger-ui' in dom  # the bundle ran and built its UI
    for path in OPERATIONS:
        assert f'data-path="{path}"' in dom, path
    assert "Rerank (Cohere v2 shape)" in dom


def test_redoc_renders_offline(base_url: str) -> None:
    dom = dump_dom(f"{base_url}/redoc")
    assert "Rerank (Cohere v1 and Jina shape)" in dom  # ReDoc ran and read /openapi.json
    assert "Rerank (Infinity's shape: documents as bare strings)" in dom
    assert "The model is not configured" in dom  # a documented error status


def test_screenshots_are_not_blank(base_url: str, tmp_path: Path) -> None:
    blank = screenshot("about:blank", tmp_path / "blank.png").stat().st_size
    for page in ("docs", "redoc"):
        shot = screenshot(f"{base_url}/{page}", tmp_path / f"{page}.png").stat().st_size
        # A rendered page compresses far worse than a white one (measured: about 120 KB and
        # 180 KB against under 10 KB for a blank page of the same size).
        assert shot > 10 * blank, (page, shot, blank)
