"""Build a checkpoint folder's ONNX graph once and cache it by the weights' content hash.

Entries live beside the optimized models (:func:`reranker.optimize.default_cache_root`), as
``built-<sha256>-g<builder version>/model.onnx`` (with ``model.onnx_data`` above 64 MiB) and a
copy of ``config.json`` (which the optimizer reads for the attention sizes). An entry is written
to a temporary folder and renamed into place, so concurrent loaders never see half a model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reranker.errors import ModelLoadError
from reranker.graph.checkpoint import open_checkpoint, weight_files
from reranker.graph.encoder import encoder_graph
from reranker.graph.writer import EXTERNAL_DATA_BYTES
from reranker.optimize import build_cache_entry, content_digest

__all__ = ["BUILDER_VERSION", "build_onnx", "built_model"]

# Bump when the graph written for the same weights changes, so cached entries are rebuilt.
BUILDER_VERSION = 2
_PRODUCER = "reranker.graph"


def build_onnx(
    folder: str | Path,
    target: str | Path,
    *,
    head: bool = True,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> Path:
    """Write the float32 ONNX graph of the checkpoint in ``folder`` to ``target``.

    Example:
        >>> build_onnx("bge-reranker-base", "out/model.onnx")  # doctest: +SKIP

    Args:
        head: ``False`` writes the headless graph (tests of loaders that must reject it).
        external_data_bytes: weights above this size go to ``<target>_data``.

    Raises:
        ModelLoadError: missing files, or an architecture the builder does not support.
    """
    checkpoint = open_checkpoint(folder)
    g, inputs, outputs = encoder_graph(checkpoint, head=head)
    return g.save(
        target, inputs, outputs, producer=_PRODUCER, external_data_bytes=external_data_bytes
    )


def built_model(
    folder: str | Path,
    cache_root: str | Path,
    *,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> Path:
    """The cached ONNX graph of the checkpoint in ``folder``, built on first use.

    Raises:
        ModelLoadError: as :func:`build_onnx`; also when the build itself fails.
    """
    folder, root = Path(folder), Path(cache_root)
    digest = _weights_hash(folder, root)
    entry = root / f"built-{digest[:32]}-g{BUILDER_VERSION}"
    target = entry / "model.onnx"
    if target.is_file():
        return target

    def make(work: Path) -> dict[str, object]:
        build_onnx(folder, work / "model.onnx", external_data_bytes=external_data_bytes)
        shutil.copyfile(folder / "config.json", work / "config.json")
        return {"source": str(folder), "sha256": digest, "builder": BUILDER_VERSION}

    return build_cache_entry(target, make, meta_file="build.json",
                             failure=f"cannot build the ONNX graph of {folder}")


def _weights_hash(folder: Path, root: Path) -> str:
    """sha256 of config.json and the weight files (their names too), memoized."""
    files = [folder / "config.json", *(folder / name for name in weight_files(folder))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(f"cannot build an ONNX graph: missing {', '.join(missing)}")
    return content_digest(files, root, with_names=True)
