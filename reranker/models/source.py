"""The one fetch path for models built from safetensors (encoders and decoders alike).

:func:`fetch_custom_model`: which file a ``custom`` encoder runs, its ONNX export or a graph
built from its safetensors. :func:`fetch_checkpoint_folder`: a decoder's config, tokenizer and
weights (shards followed).

``model_format="auto"`` runs ``model_file`` when the repo or folder has it and otherwise builds
the graph from ``config.json`` and the safetensors weights; ``"onnx"`` and ``"safetensors"``
pick one. A config that names ``model_file`` explicitly means that file (as ``"onnx"``).

From a Hub repo only what the chosen path needs is fetched, every file at the commit the first
one resolved (so a branch that moves mid-download cannot mix versions): the ONNX file and its
external data, or ``config.json``, the safetensors file(s) and the index of shards; the
tokenizer files in both cases. Offline, both paths read the Hugging Face cache only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from reranker.errors import ModelNotFoundError
from reranker.hub import DEFAULT_OPTIONAL_FILES, fetch_model_files, is_local_model_id
from reranker.models.architectures import resolve
from reranker.models.build import built_model
from reranker.models.checkpoint import INDEX_FILE, SINGLE_FILE, read_config, weight_files
from reranker.optimize import default_cache_root

__all__ = ["fetch_checkpoint_folder", "fetch_custom_model", "pinned_revision"]


class CustomSource(Protocol):
    """What a ``custom`` model's fetch reads (:class:`reranker.config.CustomConfig` has it)."""

    @property
    def model_id(self) -> str: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def model_file(self) -> str: ...
    @property
    def tokenizer_file(self) -> str: ...
    @property
    def additional_files(self) -> tuple[str, ...]: ...
    @property
    def model_format(self) -> str: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def cache_dir(self) -> str | None: ...
    @property
    def rule(self) -> str | None: ...


def pinned_revision(model_id: str, folder: Path) -> str | None:
    """The commit a Hub snapshot folder holds (its name), ``None`` for a local folder: every
    later fetch of one build passes it, so a branch that moves mid-download cannot mix files
    of two commits."""
    return None if is_local_model_id(model_id) else folder.name


def fetch_checkpoint_folder(
    model_id: str, revision: str | None, cache_dir: str | None, *,
    files: Sequence[str] = ("config.json", "tokenizer.json"),
    optional_files: Sequence[str] = ("tokenizer_config.json",),
) -> Path:
    """Fetch ``files``, the safetensors weights and the index's shards, all at one commit."""
    folder = fetch_model_files(
        model_id, files=list(files),
        optional_files=(*optional_files, SINGLE_FILE, INDEX_FILE),
        revision=revision, cache_dir=cache_dir,
    )
    shards = weight_files(folder)
    if (folder / INDEX_FILE).is_file() or not all((folder / n).is_file() for n in shards):
        folder = fetch_model_files(model_id, files=shards, optional_files=(),
                                   revision=pinned_revision(model_id, folder),
                                   cache_dir=cache_dir)
    return folder


def fetch_custom_model(config: CustomSource) -> tuple[Path, Path]:
    """Fetch (or find) a ``custom`` model; returns its folder and the ONNX file to run.

    The ONNX file is ``<folder>/<model_file>``, or a graph built from the weights and cached by
    their content hash beside the optimized models (``reranker.optimize.default_cache_root``).

    Raises:
        ModelNotFoundError, DownloadError: as :func:`reranker.hub.fetch_model_files`.
        ModelLoadError: the weights' architecture cannot be built (the message lists those
            that can).
    """
    model_id, revision = config.model_id, config.revision
    onnx_files = [config.model_file, config.tokenizer_file, *config.additional_files]
    model_format = config.model_format
    if model_format == "auto" and "model_file" in config.model_fields_set:
        # A named ONNX file is the one wanted: missing, it is an error, not a silent rebuild.
        model_format = "onnx"
    if model_format == "onnx":
        folder = fetch_model_files(
            model_id, files=onnx_files, revision=revision, cache_dir=config.cache_dir
        )
        return folder, folder / config.model_file
    # Also the probe of "auto": what both paths need, plus the ONNX file when the repo has it.
    probe_optional = [*DEFAULT_OPTIONAL_FILES, INDEX_FILE]
    if model_format == "auto":
        probe_optional.append(config.model_file)
    folder = fetch_model_files(
        model_id,
        files=[config.tokenizer_file, *config.additional_files],
        optional_files=probe_optional,
        revision=revision,
        cache_dir=config.cache_dir,
    )
    pinned = pinned_revision(model_id, folder)
    if model_format == "auto" and (folder / config.model_file).is_file():
        # Fetched again as a required file, so its external data files come along.
        folder = fetch_model_files(
            model_id, files=onnx_files, revision=pinned, cache_dir=config.cache_dir
        )
        return folder, folder / config.model_file
    try:
        folder = fetch_model_files(
            model_id,
            files=["config.json", *weight_files(folder)],
            optional_files=(),
            revision=pinned,
            cache_dir=config.cache_dir,
        )
    except ModelNotFoundError as exc:
        onnx = "" if model_format == "safetensors" else f"neither {config.model_file} nor "
        raise ModelNotFoundError(
            f"{model_id!r} has {onnx or 'no '}config.json with safetensors weights "
            f"({SINGLE_FILE} or {INDEX_FILE} and its shards); checkpoints in other formats "
            f"(pytorch_model.bin) are not supported: {exc}"
        ) from exc
    family = resolve(read_config(folder), repo_id=None if is_local_model_id(model_id) else model_id,
                     rule=config.rule, source=str(folder))
    return folder, built_model(folder, default_cache_root(config.cache_dir), family=family)
