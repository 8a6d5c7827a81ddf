"""The architecture of a synthetic cross-encoder, its Hugging Face config and its weights.

Weights use the Hugging Face state-dict names (``bert.encoder.layer.0.attention.self.query.weight``,
``classifier.out_proj.weight``...) and torch's ``Linear`` layout ``[out_features, in_features]``,
so that ``model.safetensors`` loads into transformers' ``*ForSequenceClassification`` and the
numpy reference can read it without knowing about ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ARCHS", "CrossEncoderSpec", "hf_config", "make_weights"]

ARCHS = ("bert", "xlmr", "electra")
"""``electra`` is ``ElectraForSequenceClassification``: BERT's encoder and tokenizer, a smaller
embedding projected to the hidden size, and a dense-GELU-out_proj head without a pooler."""


@dataclass(frozen=True)
class CrossEncoderSpec:
    """Sizes of a BERT, XLM-R or ELECTRA sequence classifier.

    ``max_length`` is the number of tokens the model reads; XLM-R's position table has two more
    rows because its position ids start after ``pad_token_id``.
    """

    arch: str
    num_labels: int
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    max_length: int
    vocab_size: int

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_labels < 1 or self.num_layers < 1:
            raise ValueError("num_labels and num_layers must be at least 1")

    @property
    def prefix(self) -> str:
        """The state-dict prefix of the encoder."""
        return "roberta" if self.arch == "xlmr" else self.arch

    @property
    def pad_token_id(self) -> int:
        return 1 if self.arch == "xlmr" else 0

    @property
    def layer_norm_eps(self) -> float:
        return 1e-5 if self.arch == "xlmr" else 1e-12

    @property
    def type_vocab_size(self) -> int:
        return 1 if self.arch == "xlmr" else 2

    @property
    def max_position_embeddings(self) -> int:
        return self.max_length + 2 if self.arch == "xlmr" else self.max_length

    @property
    def embedding_size(self) -> int:
        """ELECTRA's embedding width (half the hidden size here, so the projection runs)."""
        return self.hidden_size // 2 if self.arch == "electra" else self.hidden_size


_HF_NAMES = {
    "bert": ("BertForSequenceClassification", "bert"),
    "xlmr": ("XLMRobertaForSequenceClassification", "xlm-roberta"),
    "electra": ("ElectraForSequenceClassification", "electra"),
}


def hf_config(spec: CrossEncoderSpec) -> dict[str, object]:
    """The ``config.json`` transformers expects for this architecture."""
    labels = {str(i): f"LABEL_{i}" for i in range(spec.num_labels)}
    architecture, model_type = _HF_NAMES[spec.arch]
    config: dict[str, object] = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "max_position_embeddings": spec.max_position_embeddings,
        "type_vocab_size": spec.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": spec.layer_norm_eps,
        "pad_token_id": spec.pad_token_id,
        "position_embedding_type": "absolute",
        "id2label": labels,
        "label2id": {name: int(i) for i, name in labels.items()},
        "torch_dtype": "float32",
    }
    if spec.arch == "xlmr":
        config.update(bos_token_id=0, eos_token_id=2)
    if spec.arch == "electra":
        config.update(embedding_size=spec.embedding_size, summary_type="first")
    return config


def _linear(
    rng: np.random.RandomState, name: str, out_dim: int, in_dim: int, gain: float = 1.0
) -> dict[str, np.ndarray]:
    # std = gain / sqrt(fan_in) keeps activations near unit scale at any width, so logits of
    # preset-sized models are spread out and not saturated either.
    return {
        f"{name}.weight": rng.normal(0.0, gain / np.sqrt(in_dim), (out_dim, in_dim)),
        f"{name}.bias": rng.normal(0.0, 0.05, (out_dim,)),
    }


def _layer_norm(rng: np.random.RandomState, name: str, dim: int) -> dict[str, np.ndarray]:
    return {
        f"{name}.weight": 1.0 + rng.normal(0.0, 0.1, (dim,)),
        f"{name}.bias": rng.normal(0.0, 0.05, (dim,)),
    }


def make_weights(spec: CrossEncoderSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float32 weights under their Hugging Face names."""
    rng = np.random.RandomState(seed)
    h, p, e = spec.hidden_size, spec.prefix, spec.embedding_size
    w: dict[str, np.ndarray] = {
        f"{p}.embeddings.word_embeddings.weight": rng.normal(0.0, 0.2, (spec.vocab_size, e)),
        f"{p}.embeddings.position_embeddings.weight": rng.normal(
            0.0, 0.2, (spec.max_position_embeddings, e)
        ),
        f"{p}.embeddings.token_type_embeddings.weight": rng.normal(
            0.0, 0.2, (spec.type_vocab_size, e)
        ),
    }
    w.update(_layer_norm(rng, f"{p}.embeddings.LayerNorm", e))
    if e != h:
        w.update(_linear(rng, f"{p}.embeddings_project", h, e))
    for i in range(spec.num_layers):
        layer = f"{p}.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            # Larger query/key weights give peaked (non-uniform) attention.
            gain = 2.0 if part != "value" else 1.0
            w.update(_linear(rng, f"{layer}.attention.self.{part}", h, h, gain))
        w.update(_linear(rng, f"{layer}.attention.output.dense", h, h))
        w.update(_layer_norm(rng, f"{layer}.attention.output.LayerNorm", h))
        w.update(_linear(rng, f"{layer}.intermediate.dense", spec.intermediate_size, h))
        w.update(_linear(rng, f"{layer}.output.dense", h, spec.intermediate_size))
        w.update(_layer_norm(rng, f"{layer}.output.LayerNorm", h))
    if spec.arch == "bert":
        w.update(_linear(rng, f"{p}.pooler.dense", h, h, gain=2.0))
        w.update(_linear(rng, "classifier", spec.num_labels, h, gain=2.0))
        bias_name = "classifier.bias"
    else:
        w.update(_linear(rng, "classifier.dense", h, h, gain=2.0))
        w.update(_linear(rng, "classifier.out_proj", spec.num_labels, h, gain=2.0))
        bias_name = "classifier.out_proj.bias"
    # A clearly non-zero bias: a runtime that drops it shifts every score.
    w[bias_name] = 0.5 - 0.4 * np.arange(spec.num_labels) + rng.normal(0.0, 0.1, (spec.num_labels,))
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in w.items()}
