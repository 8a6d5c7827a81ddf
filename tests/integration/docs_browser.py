"""Render the app's /docs and /redoc in headless Chromium with every outside host unreachable.

The app is the real FastAPI app of the ingress over fake deployment handles (no Ray), served by
uvicorn on a loopback port. Chromium resolves no host but 127.0.0.1, so a page that still
loaded Swagger UI or ReDoc from a CDN would render blank.

As a script, it writes screenshots to look at::

    PYTHONPATH=. python -m tests.integration.docs_browser /tmp/docs-shots
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["chromium_path", "dump_dom", "screenshot", "serve_docs_app"]

# Every host but loopback fails to resolve: the browser is as offline as an air-gapped cluster.
_OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def chromium_path() -> str | None:
    """The Chromium (or Chrome) binary on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def serve_docs_app() -> Iterator[str]:
    """The ingress app over fake handles, served by uvicorn; yields its base URL."""
    from deployments.serve.http_api import build_api
    from tests.unit.serve_fakes import serve_on_loopback, service, settings

    with serve_on_loopback(build_api(service(settings(api_keys=("docs-key",))))) as url:
        yield url


def _chromium(args: list[str], timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", _OFFLINE,
               "--virtual-time-budget=15000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=True)


def screenshot(url: str, out: Path, size: tuple[int, int] = (1280, 1600)) -> Path:
    """A PNG of ``url`` once its scripts have run."""
    _chromium([f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", url])
    return out


def dump_dom(url: str) -> str:
    """The page's DOM after its scripts have run."""
    return _chromium(["--dump-dom", url]).stdout


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with serve_docs_app() as base:
        for page in ("docs", "redoc"):
            shot = screenshot(f"{base}/{page}", out / f"{page}.png")
            print(f"{shot}: {shot.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs-screenshots")
