"""Decoder LLM rerankers (Qwen3-Reranker): a yes/no prompt scored by an ONNX graph built from
safetensors at first use. See ``docs/llm-rerankers.md``.

Only the architecture registry is imported here; the backend (ONNX Runtime, tokenizers) loads
when :func:`load_decoder_backend` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reranker.decoder.architecture import DECODER_ARCHITECTURES, decoder_spec, is_decoder_config
from reranker.types import DECODER_TRUNCATION_FIELDS

if TYPE_CHECKING:
    from reranker.config import CustomConfig, PresetConfig
    from reranker.decoder.backend import DecoderRerankerBackend

__all__ = [
    "DECODER_ARCHITECTURES",
    "DECODER_TRUNCATION_FIELDS",
    "decoder_spec",
    "is_decoder_config",
    "load_decoder_backend",
]



def load_decoder_backend(
    config: PresetConfig | CustomConfig, **kwargs: Any
) -> DecoderRerankerBackend:
    """Build a decoder reranker backend (:func:`reranker.decoder.backend.load_decoder_backend`)."""
    from reranker.decoder.backend import load_decoder_backend as load

    return load(config, **kwargs)
