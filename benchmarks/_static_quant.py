"""Static (calibrated) int8 variants of the stand-in, for ``levers.py`` to set against the
dynamic per-channel recipe of ``reranker.optimize``.

``QDQ`` starts where that recipe does (the attention-fused float32 graph without a mask);
``QOperator`` starts from the plain float32 export, because onnxruntime 1.32's QOperator
quantizer fails on a MatMul of the fused graph. Then
``onnxruntime.quantization.quantize_static``: int8 weights of every MatMul with a constant
weight (per channel in QDQ; per tensor in QOperator, whose quantizer fails on per-channel
QLinearMatMul weights), and activation ranges fixed ahead of time from MinMax calibration on
pairs of the benchmark's own text (a different seed from the measured requests). ``QDQ`` leaves
QuantizeLinear/DequantizeLinear pairs for ONNX Runtime to fold into int8 kernels; ``QOperator``
writes the int8 operators (QLinearMatMul) itself. Built once into the stand-in's folder.

Not part of the library: kept only if it beats dynamic quantization (it does not; see README).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("QDQ", "QOperator")


class _PairReader:
    """Feeds one (query, document) pair per run, as the padding-free graph expects."""

    def __init__(self, tokenizer_file: Path, input_names: list[str], pairs: int) -> None:
        from reranker.sample_requests import benchmark_requests
        from reranker.tokenization import PairTokenizer

        tok = PairTokenizer(tokenizer_file, 512)
        feeds: list[dict[str, np.ndarray]] = []
        for req in benchmark_requests(max(1, pairs // 50), documents_per_request=50, seed=7):
            encoded = tok.encode(req.query, req.documents)
            for ids, types in zip(encoded.ids, encoded.type_ids, strict=True):
                feed = {"input_ids": np.asarray([ids], dtype=np.int64),
                        "token_type_ids": np.asarray([types], dtype=np.int64),
                        "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
                feeds.append({k: v for k, v in feed.items() if k in input_names})
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds[:pairs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def static_int8(folder: Path, cache: Path, fmt: str, pairs: int = 100) -> str:
    """Build (once) the static int8 variant in ``fmt``; its path relative to ``folder``."""
    relative = f"onnx/model_static_{fmt.lower()}.onnx"
    target = folder / relative
    if target.is_file():
        return relative
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from reranker.optimize import default_cache_root, optimized_model

    source = folder / "onnx" / "model.onnx"
    if fmt == "QDQ":
        source = optimized_model(source, "fused", cache_root=default_cache_root(cache),
                                 padding_free=True)
    names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]
    reader: Any = _PairReader(folder / "tokenizer.json", names, pairs)
    CalibrationDataReader.register(type(reader))
    tmp = target.with_suffix(".tmp.onnx")
    quantize_static(
        str(source), str(tmp), reader,
        quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
        op_types_to_quantize=["MatMul"],
        per_channel=fmt == "QDQ",
        activation_type=QuantType.QUInt8 if fmt == "QOperator" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"MatMulConstBOnly": True},
    )
    tmp.rename(target)
    return relative
