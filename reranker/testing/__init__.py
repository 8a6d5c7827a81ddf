"""Test fixtures that need no network: tiny deterministic cross-encoders and a numpy reference.

``build_cross_encoder`` writes a model folder laid out like the Hub repositories the presets use;
``reference_logits`` recomputes its scores from ``model.safetensors`` in float64, independently
of the ONNX graph. Every supported family has its kit under :mod:`reranker.testing.families`
(a tiny checkpoint and a float64 reference of its authors' rule). Plugin authors can test
against these; production code never imports this
package. Full-size preset stand-ins for benchmarks live in ``benchmarks/standins.py``. Importing
this package needs neither Ray nor onnx: those are imported when a function runs.
"""

from __future__ import annotations

from reranker.testing.families.encoder_models import (
    LAYOUTS,
    build_broken_models,
    build_cross_encoder,
    onnx_model_path,
)
from reranker.testing.families.encoder_reference import reference_encode, reference_logits
from reranker.testing.tokenizers import (
    EMBEDDED_PADDING_LENGTH,
    EMBEDDED_TRUNCATION_MAX_LENGTH,
    write_bert_tokenizer,
    write_tokenizer,
    write_xlmr_tokenizer,
)

__all__ = [
    "EMBEDDED_PADDING_LENGTH",
    "EMBEDDED_TRUNCATION_MAX_LENGTH",
    "LAYOUTS",
    "build_broken_models",
    "build_cross_encoder",
    "onnx_model_path",
    "reference_encode",
    "reference_logits",
    "write_bert_tokenizer",
    "write_tokenizer",
    "write_xlmr_tokenizer",
]
