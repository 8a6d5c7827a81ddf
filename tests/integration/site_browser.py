"""Build the MkDocs site and render its pages in headless Chromium, offline.

The site is built with ``mkdocs build --strict`` (the README's test command does the same) into
a folder, served by a loopback HTTP server, and rendered by Chromium that can resolve no host
but 127.0.0.1 (``docs_browser``'s rules), so a page that needed a web font or a script from a
CDN would render without it.

As a script, it writes the review screenshots of the pages in ``PAGES``::

    .venv/bin/python -m tests.integration.site_browser docs/screenshots
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.integration.docs_browser import screenshot

__all__ = ["PAGES", "ROOT", "build_site", "external_references", "serve_site"]

ROOT = Path(__file__).resolve().parents[2]
#: The pages a reader looks at first: screenshot name -> path in the site.
PAGES = {"home": "", "supported-models": "supported-models/", "serving": "serving/"}

# What makes a browser fetch something: scripts, stylesheets, images, fonts, frames, CSS url()
# and @import. Links a reader may click (<a href>) are not fetched, so they are not counted.
_FETCHED = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=[\"']?(https?:)?//"
    r"|<link\b[^>]*\bhref=[\"']?(https?:)?//"
    r"|url\(\s*[\"']?(https?:)?//"
    r"|@import\s+[\"']?(https?:)?//",
    flags=re.I,
)


def build_site(out: Path, config: Path = ROOT / "mkdocs.yml") -> Path:
    """``mkdocs build --strict`` of ``config`` into ``out``; raises with mkdocs' output.

    Never with ``-q``: it hides the warnings that ``--strict`` turns into a failed build, so a
    broken link would pass.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        capture_output=True, text=True, timeout=300, cwd=config.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}")
    return out


def external_references(site: Path) -> list[str]:
    """Every ``file: snippet`` of the built site that makes a browser fetch from another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in {".html", ".css", ".js"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _FETCHED.finditer(text):
            start = max(match.start() - 40, 0)
            found.append(f"{path.relative_to(site)}: {text[start:match.end() + 40]!r}")
    return found


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_site(site: Path) -> Iterator[str]:
    """Serve the built ``site`` folder on a loopback port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(Path(tmp) / "site")
        with serve_site(site) as base:
            for name, path in PAGES.items():
                shot = screenshot(f"{base}/{path}", out / f"{name}.png", size=(1280, 1400))
                print(f"{shot}: {shot.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
