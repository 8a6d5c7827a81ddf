"""A stand-in Hugging Face Hub on 127.0.0.1, enough for ``hf_hub_download`` (huggingface_hub 2.x).

What the client does, read from huggingface_hub 2.4.0 (``file_download.py``, ``utils/_http.py``):

* ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{path}`` (revision and path URL-quoted), following
  redirects only while they stay on the same origin. It needs ``X-Repo-Commit`` (the commit the
  revision resolves to), an ETag (``X-Linked-Etag`` wins over ``ETag``; it names the cache blob)
  and a size (``X-Linked-Size``, else ``Content-Length`` of a non-redirect answer). No
  ``X-Xet-Hash`` header is sent, so the plain HTTP path is used rather than Xet.
* Files stored in LFS answer ``302`` with ``Location`` on another origin (the CDN); here that is
  ``http://localhost:PORT/cdn/...``, a different host name for the same server.
* ``GET`` of the HEAD's location, with ``Range: bytes=N-`` when resuming a dropped transfer
  (``http_get`` retries up to 5 times after a read error, sleeping 1 s between tries).
* Errors are told apart by ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound`` (which also carries ``X-Repo-Commit`` so the client can cache the absence).

Also served: ``GET /api/models/{repo_id}[/revision/{rev}]`` (id, sha, siblings).

Switches for tests: :meth:`HubStandin.fail_next` (cut a GET mid-body, or send a short but
well-formed body), :attr:`HubStandin.chunk_delay_s` (slow bodies), :attr:`HubStandin.ignore_range`,
and a request log with :meth:`HubStandin.count`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["HubStandin", "LoggedRequest"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_LFS_SUFFIXES = (".onnx", ".onnx_data", ".bin", ".safetensors")


@dataclass
class LoggedRequest:
    """One request as the stand-in understood it; ``at`` and ``done`` are monotonic times."""

    method: str
    kind: str  # "resolve", "cdn", "api" or "other"
    repo_id: str | None
    revision: str | None
    path: str | None
    range: str | None
    at: float = field(default_factory=time.monotonic, compare=False)
    done: float | None = field(default=None, compare=False)


@dataclass
class _Failure:
    times: int
    mode: str  # "cut": close mid-body; "truncate": a complete response with a short body
    after: int | None


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandin:
    """A loopback Hub serving ``{repo_id: {revision: {path: bytes}}}``.

    A revision key that is 40 hex digits is a commit; any other key is a branch or tag that points
    at a commit derived from its content. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, Mapping[str, bytes]]] | None = None,
        *,
        lfs_suffixes: tuple[str, ...] = _LFS_SUFFIXES,
    ) -> None:
        self.lfs_suffixes = lfs_suffixes
        self.chunk_size = 64 * 1024
        self.chunk_delay_s = 0.0
        self.ignore_range = False
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._failures: dict[tuple[str, str], _Failure] = {}
        self.requests: list[LoggedRequest] = []
        for repo_id, revisions in (repos or {}).items():
            for revision, files in revisions.items():
                self.add_repo(repo_id, files, revision=revision)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._cdn = f"http://localhost:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> HubStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- content -------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, bytes], *, revision: str = "main") -> str:
        """Serve ``files`` at ``revision`` of ``repo_id``; return the commit sha."""
        if _COMMIT.match(revision):
            commit = revision
        else:
            digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
            commit = digest.hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            repo.commits[commit] = dict(files)
            if commit != revision:
                repo.refs[revision] = commit
        return commit

    def reset(self) -> None:
        """Forget repos, failures, switches and the request log."""
        with self._lock:
            self._repos.clear()
            self._failures.clear()
            self.requests.clear()
        self.chunk_size = 64 * 1024
        self.chunk_delay_s = 0.0
        self.ignore_range = False

    # --- switches and counters -----------------------------------------------------------------

    def fail_next(
        self,
        repo_id: str,
        path: str,
        *,
        times: int = 1,
        mode: str = "cut",
        after: int | None = None,
    ) -> None:
        """Break the next ``times`` GETs of a file.

        ``mode="cut"`` sends the full ``Content-Length``, then ``after`` bytes (default: half),
        then closes the connection. ``mode="truncate"`` answers a complete response whose body
        (and ``Content-Length``) is only the first ``after`` bytes (default: half).
        """
        if mode not in ("cut", "truncate"):
            raise ValueError(f"unknown failure mode {mode!r}")
        with self._lock:
            self._failures[(repo_id, path)] = _Failure(times, mode, after)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def count(
        self,
        method: str | None = None,
        repo_id: str | None = None,
        path: str | None = None,
        *,
        kind: str | None = None,
    ) -> int:
        """Requests seen so far matching every given field."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method)
                and (repo_id is None or r.repo_id == repo_id)
                and (path is None or r.path == path)
                and (kind is None or r.kind == kind)
            )

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- request handling (called from server threads) ----------------------------------------

    def _log(self, request: LoggedRequest) -> LoggedRequest:
        with self._lock:
            self.requests.append(request)
        return request

    def _take_failure(self, repo_id: str, path: str) -> _Failure | None:
        with self._lock:
            failure = self._failures.get((repo_id, path))
            if failure is None or failure.times <= 0:
                return None
            failure.times -= 1
            return failure

    def _resolve(self, repo_id: str, revision: str) -> tuple[_Repo | None, str | None]:
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return None, None
            commit = repo.refs.get(revision, revision)
            return repo, commit if commit in repo.commits else None

    def _is_lfs(self, path: str) -> bool:
        return path.endswith(self.lfs_suffixes)

    def _cdn_url(self, repo_id: str, commit: str, path: str) -> str:
        return f"{self._cdn}/cdn/{repo_id}/{commit}/{quote(path)}"


def _make_handler(hub: HubStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a cut transfer never poisons a pooled one.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
            self._route(head=True)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._route(head=False)

        # --- routing ---------------------------------------------------------------------------

        def _route(self, *, head: bool) -> None:
            self.logged: LoggedRequest | None = None
            try:
                self._dispatch(head=head)
            finally:
                if self.logged is not None:
                    self.logged.done = time.monotonic()

        def _dispatch(self, *, head: bool) -> None:
            method = "HEAD" if head else "GET"
            raw_path = urlsplit(self.path).path
            rng = self.headers.get("Range")
            if raw_path.startswith("/api/models/"):
                self._api(raw_path[len("/api/models/") :], method, head)
                return
            if raw_path.startswith("/cdn/"):
                parts = raw_path[len("/cdn/") :].split("/", 3)
                if len(parts) == 4:
                    repo_id, commit, path = f"{parts[0]}/{parts[1]}", parts[2], unquote(parts[3])
                    self.logged = hub._log(LoggedRequest(method, "cdn", repo_id, commit, path, rng))
                    self._serve_cdn(repo_id, commit, path, head)
                    return
            match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", raw_path)
            if match is None:
                self.logged = hub._log(LoggedRequest(method, "other", None, None, raw_path, rng))
                self._error(404, None, "Not Found", head)
                return
            repo_id, revision, path = match[1], unquote(match[2]), unquote(match[3])
            self.logged = hub._log(LoggedRequest(method, "resolve", repo_id, revision, path, rng))
            self._serve_resolve(repo_id, revision, path, head)

        def _serve_resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
            repo, commit = hub._resolve(repo_id, revision)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", head)
                return
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                return
            data = repo.commits[commit].get(path)
            if data is None:
                extra = {"X-Repo-Commit": commit}
                self._error(404, "EntryNotFound", "Entry not found", head, extra)
                return
            if hub._is_lfs(path):
                self.send_response(302)
                self.send_header("Location", hub._cdn_url(repo_id, commit, path))
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{_git_blob_sha1(data)}"')
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send_file(repo_id, path, data, head, {"X-Repo-Commit": commit})

        def _serve_cdn(self, repo_id: str, commit: str, path: str, head: bool) -> None:
            repo, resolved = hub._resolve(repo_id, commit)
            data = repo.commits[resolved].get(path) if repo and resolved else None
            if data is None:
                self._error(404, None, "NoSuchKey", head)
                return
            self._send_file(repo_id, path, data, head, {})

        def _api(self, rest: str, method: str, head: bool) -> None:
            match = re.match(r"^([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", rest)
            repo_id = match[1] if match else None
            revision = unquote(match[2]) if match and match[2] else "main"
            self.logged = hub._log(LoggedRequest(method, "api", repo_id, revision, None, None))
            repo, commit = hub._resolve(repo_id, revision) if repo_id else (None, None)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", head)
                return
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                return
            body = json.dumps(
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": commit,
                    "private": False,
                    "siblings": [{"rfilename": p} for p in sorted(repo.commits[commit])],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        # --- responses -------------------------------------------------------------------------

        def _send_file(
            self, repo_id: str, path: str, data: bytes, head: bool, extra: dict[str, str]
        ) -> None:
            etag = hashlib.sha256(data).hexdigest() if hub._is_lfs(path) else _git_blob_sha1(data)
            start = 0
            rng = self.headers.get("Range")
            range_match = re.match(r"^bytes=(\d+)-$", rng or "")
            if not head and range_match and not hub.ignore_range:
                start = min(int(range_match[1]), len(data))
            failure = None if head else hub._take_failure(repo_id, path)
            body = data[start:]
            if failure is not None and failure.mode == "truncate":
                body = body[: len(body) // 2 if failure.after is None else failure.after]
            self.send_response(206 if start else 200)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            if failure is not None and failure.mode == "cut":
                cut = len(body) // 2 if failure.after is None else failure.after
                self._write_slowly(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._write_slowly(body)

        def _write_slowly(self, body: bytes) -> None:
            step = max(1, hub.chunk_size)
            for offset in range(0, len(body), step):
                if hub.chunk_delay_s:
                    time.sleep(hub.chunk_delay_s)
                self.wfile.write(body[offset : offset + step])

        def _error(
            self,
            status: int,
            code: str | None,
            message: str,
            head: bool,
            extra: dict[str, str] | None = None,
        ) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code is not None:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler
