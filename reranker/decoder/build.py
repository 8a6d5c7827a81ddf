"""Decoder graphs built at first use and cached by the checkpoint's content hash.

``<cache>/decoder-<sha256 of config.json and the safetensors>-g<graph version>-<yes>-<no>/``
holds ``model.onnx`` (float32, weights in ``model.onnx_data``) and, once asked for,
``int8/model.onnx``: dynamic int8 quantization of every weight matrix with per-channel scales
(the encoders' recipe, without the BERT attention fusion, which does not apply). Entries are
written to a temporary folder and renamed into place, so concurrent loaders (Ray replicas) never
read half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reranker.decoder.architecture import DecoderSpec
from reranker.decoder.graph import GRAPH_VERSION, build_decoder_onnx
from reranker.decoder.weights import Checkpoint
from reranker.errors import ConfigError, ModelLoadError
from reranker.optimize import _quiet_root_logger, content_digest

__all__ = ["decoder_model_file", "quantize_int8"]

_CHUNK = 1 << 22


def _build_once(target: Path, make: Callable[[Path], object]) -> Path:
    """Run ``make(folder)`` into a temporary folder renamed to ``target.parent``."""
    entry = target.parent
    if target.is_file():
        return target
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=entry.parent))
    work.chmod(0o755)
    try:
        started = time.perf_counter()
        make(work)
        for made in work.rglob("*"):
            made.chmod(0o755 if made.is_dir() else 0o644)  # other users of the cache read it
        (work / "build.json").write_text(
            json.dumps({"seconds": round(time.perf_counter() - started, 2)}) + "\n")
        try:
            os.rename(work, entry)
        except OSError:
            if not target.is_file():
                raise
    except (ModelLoadError, ConfigError):
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot build {target}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def decoder_model_file(
    folder: Path, spec: DecoderSpec, cache_root: Path, yes_no: tuple[int, int]
) -> Path:
    """The float32 reranker graph of the checkpoint in ``folder``, built if not cached."""
    checkpoint = Checkpoint(folder)
    digest = content_digest([folder / "config.json", *checkpoint.content_files()], cache_root)
    yes, no = yes_no
    entry = cache_root / f"decoder-{digest[:32]}-g{GRAPH_VERSION}-{yes}-{no}"
    return _build_once(
        entry / "model.onnx",
        lambda work: build_decoder_onnx(spec, checkpoint, work / "model.onnx", yes_no=yes_no),
    )


def quantize_int8(model_file: Path) -> Path:
    """The int8 variant of a built float32 graph, next to it (built if not there)."""

    def make(work: Path) -> None:
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

    return _build_once(model_file.parent / "int8" / "model.onnx", make)
