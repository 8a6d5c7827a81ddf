"""Build a checkpoint's ONNX graph once, and cache it by the weights' content hash.

One path for every family: :func:`build_graph` asks the table's family module for the graph,
:func:`build_onnx` writes it, :func:`built_model` caches it beside the optimized models
(:func:`reranker.optimize.default_cache_root`) as
``built-<sha256>-g<builder version>-<family>-<head>[-<token ids>]/model.onnx`` (with
``model.onnx_data`` above 64 MiB, always for decoders) and a copy of ``config.json`` (which the
optimizer reads for the attention sizes). An entry is written to a temporary folder and
renamed into place (:func:`reranker.optimize.build_cache_entry`), so concurrent loaders never
see half a model. :func:`quantize_int8` is the decoders' int8 variant of a built graph.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any, cast

from reranker.errors import ModelLoadError
from reranker.models.architectures import Family, resolve
from reranker.models.checkpoint import Checkpoint, open_checkpoint, weight_files
from reranker.models.decoders.stack import DecoderFamilyModule
from reranker.models.family import BuiltGraph, FamilyModule, GraphOptions
from reranker.models.writer import EXTERNAL_DATA_BYTES
from reranker.optimize import _quiet_root_logger, build_cache_entry, content_digest

__all__ = [
    "BUILDER_VERSION",
    "build_graph",
    "build_onnx",
    "built_model",
    "family_module",
    "quantize_int8",
]

# Bump when the graph written for the same weights changes, so cached entries are rebuilt.
BUILDER_VERSION = 3
_PRODUCER = "reranker.models"


def family_module(family: Family) -> Any:
    """The module the table names for ``family`` (imported on first use)."""
    return importlib.import_module(family.module)


def build_graph(checkpoint: Checkpoint, family: Family | None = None,
                options: GraphOptions | None = None, *, repo_id: str | None = None,
                rule: str | None = None) -> BuiltGraph:
    """The graph of ``checkpoint`` (its family resolved from the table unless given).

    Raises:
        ModelLoadError: an architecture, rule, setting or weight the builder does not support.
    """
    family = family or resolve(checkpoint.config, repo_id=repo_id, rule=rule,
                               source=checkpoint.source)
    if options is None:
        options = GraphOptions(head_kind=family.head_of(checkpoint.config))
    module = cast(FamilyModule, family_module(family))
    return module.graph(checkpoint, options)


def decoder_module(family: Family) -> DecoderFamilyModule:
    """A decoder family's module (``graph`` and ``shape``)."""
    return cast(DecoderFamilyModule, family_module(family))


def build_onnx(
    folder: str | Path,
    target: str | Path,
    *,
    head: bool = True,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    family: Family | None = None,
    options: GraphOptions | None = None,
) -> Path:
    """Write the float32 ONNX graph of the checkpoint in ``folder`` to ``target``.

    Example:
        >>> build_onnx("bge-reranker-base", "out/model.onnx")  # doctest: +SKIP

    Args:
        head: ``False`` writes the headless graph (tests of loaders that must reject it).
        external_data_bytes: weights above this size go to ``<target>_data``.
        family, options: the table's family and head (default: resolved from config.json).

    Raises:
        ModelLoadError: missing files, or an architecture the builder does not support.
    """
    checkpoint = open_checkpoint(folder)
    family = family or resolve(checkpoint.config, source=checkpoint.source)
    if options is None:
        options = GraphOptions(head_kind=family.head_of(checkpoint.config), head=head)
    g, inputs, outputs = build_graph(checkpoint, family, options)
    return g.save(
        target, inputs, outputs, producer=_PRODUCER, external_data_bytes=external_data_bytes
    )


def built_model(
    folder: str | Path,
    cache_root: str | Path,
    *,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    family: Family | None = None,
    options: GraphOptions | None = None,
) -> Path:
    """The cached ONNX graph of the checkpoint in ``folder``, built on first use.

    Raises:
        ModelLoadError: as :func:`build_onnx`; also when the build itself fails.
    """
    folder, root = Path(folder), Path(cache_root)
    if family is None or options is None:
        from reranker.models.checkpoint import read_config

        config = read_config(folder)
        family = family or resolve(config, source=str(folder))
        options = options or GraphOptions(head_kind=family.head_of(config))
    digest = _weights_hash(folder, root)
    ids = "".join(f"-{i}" for i in options.token_ids)
    if options.cutoff_layer is not None:
        ids += f"-layer{options.cutoff_layer}"
    kv = "-kv" if options.kv_cache else ""
    entry = root / (f"built-{digest[:32]}-g{BUILDER_VERSION}-{family.name}-{options.head_kind}"
                    f"{ids}{kv}")
    target = entry / "model.onnx"
    if target.is_file():
        return target
    chosen = family

    def make(work: Path) -> dict[str, object]:
        build_onnx(folder, work / "model.onnx", external_data_bytes=external_data_bytes,
                   family=chosen, options=options)
        shutil.copyfile(folder / "config.json", work / "config.json")
        return {"source": str(folder), "sha256": digest, "builder": BUILDER_VERSION,
                "family": chosen.name}

    return build_cache_entry(target, make, meta_file="build.json",
                             failure=f"cannot build the ONNX graph of {folder}")


def _weights_hash(folder: Path, root: Path) -> str:
    """sha256 of config.json and the weight files (their names too), memoized."""
    files = [folder / "config.json", *(folder / name for name in weight_files(folder))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(f"cannot build an ONNX graph: missing {', '.join(missing)}")
    return content_digest(files, root, with_names=True)


def quantize_int8(model_file: Path) -> Path:
    """The int8 variant of a built float32 decoder graph, next to it (built if not there)."""

    def make(work: Path) -> dict[str, object]:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_root_logger():
            quantize_dynamic(
                model_file,
                work / "model.onnx",
                weight_type=QuantType.QInt8,
                per_channel=True,
                use_external_data_format=True,
                # The embedding table stays float32: only matrix products are quantized.
                op_types_to_quantize=["MatMul"],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                               "MatMulConstBOnly": True},
            )
        return {"source": str(model_file), "optimization": "int8"}

    return build_cache_entry(model_file.parent / "int8" / "model.onnx", make,
                             meta_file="build.json",
                             failure=f"cannot quantize the decoder graph {model_file}")
