"""Decoder graphs built at first use and cached by the checkpoint's content hash.

``<cache>/decoder-<sha256 of config.json and the safetensors>-g<graph version>-<yes>-<no>/``
holds ``model.onnx`` (float32, weights in ``model.onnx_data``) and, once asked for,
``int8/model.onnx``: dynamic int8 quantization of every weight matrix with per-channel scales
(the encoders' recipe, without the BERT attention fusion, which does not apply). Entries are
written to a temporary folder and renamed into place, so concurrent loaders (Ray replicas) never
read half a file.
"""

from __future__ import annotations

from pathlib import Path

from reranker.decoder.architecture import DecoderSpec
from reranker.decoder.graph import GRAPH_VERSION, build_decoder_onnx
from reranker.decoder.weights import Checkpoint
from reranker.optimize import _quiet_root_logger, build_cache_entry, content_digest

__all__ = ["decoder_model_file", "quantize_int8"]


def decoder_model_file(
    folder: Path, spec: DecoderSpec, cache_root: Path, yes_no: tuple[int, int]
) -> Path:
    """The float32 reranker graph of the checkpoint in ``folder``, built if not cached."""
    checkpoint = Checkpoint(folder)
    digest = content_digest([folder / "config.json", *checkpoint.content_files()], cache_root)
    yes, no = yes_no
    entry = cache_root / f"decoder-{digest[:32]}-g{GRAPH_VERSION}-{yes}-{no}"

    def make(work: Path) -> dict[str, object]:
        build_decoder_onnx(spec, checkpoint, work / "model.onnx", yes_no=yes_no)
        return {"source": str(folder), "sha256": digest, "graph": GRAPH_VERSION}

    return build_cache_entry(entry / "model.onnx", make, meta_file="build.json",
                             failure=f"cannot build the decoder graph of {folder}")


def quantize_int8(model_file: Path) -> Path:
    """The int8 variant of a built float32 graph, next to it (built if not there)."""

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
