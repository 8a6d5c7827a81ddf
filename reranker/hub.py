"""Model files on first use: a local folder, or a Hugging Face repo fetched into the hub cache.

:func:`fetch_model_files` is the one entry point. A model id that looks like a path is a local
folder and is only checked. Anything else is a Hub repo id: each requested file is fetched with
``huggingface_hub.hf_hub_download`` into the standard cache (so a model downloaded by any
Hugging Face tool is reused), together with the external data files its ``*.onnx`` graphs name.

The environment is read when a download is asked for, not at import: ``HF_ENDPOINT`` (a mirror),
``HF_HUB_OFFLINE`` (cache only, no network call at all) and ``HF_HUB_CACHE`` / ``HF_HOME``.
huggingface_hub itself reads these once at import time, which would make a later change invisible.

Every file of one call comes from the same commit: the first file resolves the revision and the
rest are fetched at that commit hash, so a branch that moves mid-download cannot mix two versions,
and a fully cached model costs at most one metadata request (none at a pinned commit or offline).
Partial transfers never look complete: huggingface_hub writes to a uniquely named
``*.incomplete`` file, checks its size and renames it into place, under a per-blob file lock.
"""

from __future__ import annotations

import mmap
import os
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reranker.errors import ConfigError, DownloadError, ModelLoadError, ModelNotFoundError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_OPTIONAL_FILES",
    "external_data_files",
    "fetch_model_files",
    "hub_offline",
    "is_local_model_id",
    "download_command_hint",
]

DEFAULT_OPTIONAL_FILES: tuple[str, ...] = (
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_local_model_id(model_id: str) -> bool:
    """Whether ``model_id`` names a local folder rather than a Hub repo id."""
    return model_id.startswith(("/", "./", "../", "~")) or model_id in (".", "..")


def download_command_hint(model_id: str, revision: str | None = None) -> str:
    """The CLI command that pre-downloads ``model_id`` (at ``revision``) into the cache."""
    return f"reranker download {model_id}{'@' + revision if revision else ''}"


def fetch_model_files(
    model_id: str,
    *,
    files: Sequence[str],
    optional_files: Sequence[str] = DEFAULT_OPTIONAL_FILES,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Make a model's files available locally and return the folder that holds them.

    Each name in ``files`` (and each external data file of a ``*.onnx`` among them) exists at its
    relative path under the returned folder. ``optional_files`` are fetched when the repo has them.

    Example:
        >>> folder = fetch_model_files(
        ...     "Xenova/ms-marco-MiniLM-L-6-v2",
        ...     files=["onnx/model_quantized.onnx", "tokenizer.json"],
        ... )  # doctest: +SKIP
        >>> (folder / "tokenizer.json").is_file()  # doctest: +SKIP
        True

    Args:
        model_id: a local folder (starts with ``/``, ``./``, ``../``, ``~``) or a Hub repo id.
        files: required files, relative POSIX paths inside the model.
        optional_files: files to fetch when present; a missing one is skipped.
        revision: branch, tag or commit of a Hub repo; default ``main``. Ignored for folders.
        cache_dir: hub cache folder; default huggingface_hub's (``HF_HUB_CACHE``, ``HF_HOME``).

    Raises:
        ModelNotFoundError: the folder, repo, revision or a required file does not exist.
        DownloadError: fetching failed (network, server error, offline cache miss).
        ModelLoadError: an ONNX file cannot be read to find its external data.
    """
    required = _check_names(files)
    if not required:
        raise ConfigError("fetch_model_files needs at least one file in 'files'")
    optional = [name for name in _check_names(optional_files) if name not in required]
    if is_local_model_id(model_id):
        return _local_folder(model_id, required)
    return _HubFetch(model_id, revision, cache_dir).run(required, optional)


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        raise ConfigError(f"file names must be a list of strings, got the string {names!r}")
    checked: list[str] = []
    for name in names:
        # An empty part also catches "", a leading "/" and "a//b".
        if "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            raise ConfigError(f"model file {name!r} must be a relative path like 'onnx/m.onnx'")
        if name not in checked:
            checked.append(name)
    return checked


def _local_folder(model_id: str, required: list[str]) -> Path:
    folder = Path(model_id).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"local model folder {str(folder)!r} does not exist (or is not a folder); "
            f"it should contain: {', '.join(required)}"
        )
    missing = [name for name in required if not (folder / name).is_file()]
    for name in required:
        if name.endswith(".onnx") and name not in missing:
            external = external_data_files(folder / name, name)
            missing += [x for x in external if not (folder / x).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"local model folder {str(folder)!r} is missing {', '.join(missing)}"
        )
    return folder.resolve()


def external_data_files(onnx_path: Path, name: str) -> list[str]:
    """Repo-relative paths of the external data files that ``name`` (an ONNX model at
    ``onnx_path``) refers to; the one enumeration of them (downloads and cache hashes alike).

    Raises:
        ModelLoadError: the file is not a readable ONNX model, or names data outside the folder.
    """
    import onnx

    if not _may_have_external_data(onnx_path):
        return []
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError, onnx a few others
        raise ModelLoadError(f"{name!r} ({onnx_path}) is not a readable ONNX model: {exc}") from exc
    found: list[str] = []
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        path = posixpath.normpath(posixpath.join(posixpath.dirname(name), location))
        if not location or posixpath.isabs(location) or path.split("/")[0] == "..":
            raise ModelLoadError(
                f"{name!r}: tensor {tensor.name!r} has external data at {location!r}, "
                "which is not a path inside the model folder"
            )
        if path not in found:
            found.append(path)
    return found


def _may_have_external_data(onnx_path: Path) -> bool:
    # Every external tensor carries the key "location", so a file without those bytes has none.
    # Scanning is much cheaper than parsing a 1 GB single-file model just to learn that.
    try:
        with onnx_path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return view.find(b"location") != -1
    except OSError as exc:
        raise ModelLoadError(f"cannot read ONNX model {onnx_path}: {exc}") from exc


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    def in_graph(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            yield from in_node(node)

    def in_node(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from in_graph(attr.g)
            for graph in attr.graphs:
                yield from in_graph(graph)

    yield from in_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from in_node(node)


def _env_flag(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().upper() in _TRUE for n in names)


def hub_offline() -> bool:
    """Whether Hub downloads are off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``): files
    then resolve from the cache alone, a pure file-system look-up."""
    from huggingface_hub import constants

    # constants.HF_HUB_OFFLINE was read at import; honour both that and the current value.
    return _env_flag("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def _default_cache_dir() -> str:
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(var):
            return _expand(value)
    if home := os.environ.get("HF_HOME"):
        return os.path.join(_expand(home), "hub")
    return str(constants.HF_HUB_CACHE)


class _HubFetch:
    """One call's worth of Hub downloads: settings read once, files pinned to one commit."""

    def __init__(
        self, repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None
    ) -> None:

        self.repo_id = repo_id
        self.requested_revision = revision
        self.revision = revision or "main"
        self.cache_dir = str(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
        self.offline = hub_offline()
        self.commit: str | None = None

    def run(self, required: list[str], optional: list[str]) -> Path:
        snapshot: Path | None = None
        queue = list(required)
        done: set[str] = set()
        while queue:
            name = queue.pop(0)
            if name in done:
                continue
            done.add(name)
            path = self._fetch(name, required=True)
            assert path is not None
            if snapshot is None:
                # hf returns cache/models--o--n/snapshots/<commit>/<name>: strip the name's parts.
                snapshot = path.parents[len(name.split("/")) - 1]
                self.commit = snapshot.name
            if name.endswith(".onnx"):
                queue += external_data_files(path, name)
        assert snapshot is not None
        for name in optional:
            if name not in done:
                self._fetch(name, required=False)
        return snapshot

    def _fetch(self, name: str, *, required: bool) -> Path | None:
        from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError

        try:
            # A pure file-system look-up. Offline, it is the only step: hf_hub_download would
            # still build request headers, and that can reach the network (see _download).
            cached = try_to_load_from_cache(
                self.repo_id, name, cache_dir=self.cache_dir, revision=self.commit or self.revision
            )
        except HFValidationError as exc:
            raise self._not_a_repo() from exc
        if isinstance(cached, str) and (self.offline or self.commit is not None):
            return Path(cached)
        if cached is _CACHED_NO_EXIST and not required:
            return None
        if not self.offline:
            return self._download(name, required=required)
        if not required:
            return None
        raise DownloadError(
            f"{name!r} of Hugging Face repo {self.repo_id!r} (revision {self.revision!r}) is not "
            f"cached in {self.cache_dir} and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
            f"unset HF_HUB_OFFLINE, or {self._remedies()}"
        )

    def _download(self, name: str, *, required: bool) -> Path | None:
        # huggingface_hub 2.x builds its User-Agent with detect_agent(), which fetches
        # {constants.ENDPOINT}/api/agent-harnesses once per process unless telemetry is off.
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (
            EntryNotFoundError,
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return Path(
                hf_hub_download(
                    self.repo_id,
                    name,
                    revision=self.commit or self.revision,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                )
            )
        except HFValidationError as exc:
            raise self._not_a_repo() from exc
        except RevisionNotFoundError as exc:
            raise ModelNotFoundError(
                f"revision {self.revision!r} does not exist in Hugging Face repo "
                f"{self.repo_id!r} on {self._where()}; pass an existing branch, tag or commit"
            ) from exc
        except GatedRepoError as exc:
            raise DownloadError(
                f"Hugging Face repo {self.repo_id!r} is gated: accept its terms on the Hub and "
                f"set HF_TOKEN, or {self._remedies()}"
            ) from exc
        except RepositoryNotFoundError as exc:
            raise ModelNotFoundError(
                f"Hugging Face repo {self.repo_id!r} was not found on {self._where()} (if it is "
                "private, set HF_TOKEN); check the name, or point the model at a local folder"
            ) from exc
        except LocalEntryNotFoundError as exc:  # the Hub was unreachable and nothing is cached
            raise self._failed(name, exc) from exc
        except EntryNotFoundError as exc:
            if not required:
                return None
            raise ModelNotFoundError(
                f"Hugging Face repo {self.repo_id!r} has no file {name!r} at revision "
                f"{self.revision!r} (on {self._where()}); check the model file names"
            ) from exc
        except Exception as exc:  # network errors, size mismatch, disk full: all end the download
            raise self._failed(name, exc) from exc

    def _not_a_repo(self) -> ModelNotFoundError:
        return ModelNotFoundError(
            f"{self.repo_id!r} is neither a Hugging Face repo id ('owner/name') nor a local "
            "folder (a path must start with '/', './', '../' or '~')"
        )

    def _failed(self, name: str, exc: Exception) -> DownloadError:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # The cause is often a sentence of its own; one full stop ends it, not two.
        cause = cause.rstrip(".") or type(exc).__name__
        return DownloadError(
            f"downloading {name!r} from Hugging Face repo {self.repo_id!r} (revision "
            f"{self.revision!r}) via {self._where()} failed: {cause}. Retry when the network is "
            f"back, or {self._remedies()}"
        )

    def _where(self) -> str:
        from huggingface_hub import constants

        return self.endpoint or str(constants.ENDPOINT)

    def _remedies(self) -> str:
        command = download_command_hint(self.repo_id, self.requested_revision)
        return (
            f"pre-download it with `{command}` on a "
            f"connected machine and copy the cache ({self.cache_dir}), point the model at a local "
            "folder, or set HF_ENDPOINT to a reachable Hub mirror"
        )
