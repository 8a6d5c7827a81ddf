"""Which decoder checkpoints can be rerankers, read from ``config.json``.

An explicit registry maps ``architectures[0]`` to how its score is read: ``Qwen3ForCausalLM``
scores with two rows of the output matrix (the ``yes`` and ``no`` tokens), its ``*-seq-cls``
conversion ``Qwen3ForSequenceClassification`` with its single score row. Anything else is a
:class:`~reranker.errors.ModelLoadError` that lists what is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reranker.errors import ModelLoadError

__all__ = ["DECODER_ARCHITECTURES", "DecoderSpec", "decoder_spec", "is_decoder_config"]

HeadKind = Literal["yes_no", "score"]

DECODER_ARCHITECTURES: dict[str, HeadKind] = {
    "Qwen3ForCausalLM": "yes_no",
    "Qwen3ForSequenceClassification": "score",
}
"""Supported decoder architectures and how each one's score is read."""


@dataclass(frozen=True)
class DecoderSpec:
    """The shapes of a Qwen3-style decoder, as its ``config.json`` gives them."""

    architecture: str
    head: HeadKind
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool

    def run_memory_bytes(self, rows: int, length: int) -> int:
        """Peak transient memory of one run of ``rows`` pairs of ``length`` tokens (float32):
        one layer's attention scores and probabilities plus its widest activations."""
        attention = 2 * self.num_heads * length * length
        activations = length * (3 * self.intermediate_size + 4 * self.num_heads * self.head_dim
                                + 4 * self.hidden_size)
        return 4 * rows * (attention + activations)


# Model types that are decoder LLMs: a checkpoint of one of them goes to the decoder backend,
# which names what it supports, instead of failing later for want of an ONNX export.
_DECODER_MODEL_TYPES = frozenset({"qwen2", "qwen3", "qwen3_moe", "llama", "mistral", "gemma",
                                  "gemma2", "gemma3", "gemma3_text", "phi3", "olmo2"})


def is_decoder_config(config: Mapping[str, Any]) -> bool:
    """Whether a ``config.json`` is a decoder LLM's: a registered architecture, any
    ``*ForCausalLM`` class, or a decoder ``model_type`` (those not registered are refused by
    :func:`decoder_spec` with the supported list)."""
    archs = config.get("architectures") or []
    arch = archs[0] if archs and isinstance(archs[0], str) else ""
    return (arch in DECODER_ARCHITECTURES or arch.endswith("ForCausalLM")
            or config.get("model_type") in _DECODER_MODEL_TYPES)


def _rope_theta(config: Mapping[str, Any]) -> float:
    # transformers v5 writes rope settings under ``rope_parameters``; v4 at the top level.
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ModelLoadError(
            f"rope_type {kind!r} is not supported by the decoder builder; only 'default' RoPE"
        )
    return float(params.get("rope_theta", config.get("rope_theta", 10000.0)))


def decoder_spec(config: Mapping[str, Any]) -> DecoderSpec:
    """Read a decoder's shapes from its ``config.json``.

    Raises:
        ModelLoadError: the architecture is not registered (naming ``architectures`` and listing
            the supported ones) or a setting the graph cannot express is on.
    """
    archs = config.get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in DECODER_ARCHITECTURES:
        raise ModelLoadError(
            f"architectures {archs!r} (model_type {config.get('model_type')!r}) is not a "
            f"supported decoder reranker; supported: {', '.join(DECODER_ARCHITECTURES)}"
        )
    if config.get("use_sliding_window"):
        raise ModelLoadError("use_sliding_window is on; the decoder builder needs full attention")
    if config.get("attention_bias"):
        raise ModelLoadError("attention_bias is on; Qwen3 attention has no biases")
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return DecoderSpec(
            architecture=arch,
            head=DECODER_ARCHITECTURES[arch],
            hidden_size=hidden,
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=_rope_theta(config),
            max_position_embeddings=int(config.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"config.json of a {arch} lacks a usable {exc}") from exc
