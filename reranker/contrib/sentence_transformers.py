"""A plugin that scores with a ``sentence_transformers.CrossEncoder`` (PyTorch).

Use it where the ONNX backends do not fit (a model without an ONNX export, a GPU run)::

    {"type": "plugin",
     "name": "reranker.contrib.sentence_transformers:SentenceTransformersBackend",
     "options": {"model_name_or_path": "cross-encoder/ms-marco-MiniLM-L6-v2"}}

It returns raw logits, the library's scoring applies the sigmoid. For a model with two labels the
score is ``logit1 - logit0``, the log-odds of label 1, so the sigmoid of it equals
``softmax(logits)[1]``. sentence-transformers and torch are imported when the class is built, and
their absence is a :class:`~reranker.errors.ModelLoadError` naming the pip extra to install.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["SentenceTransformersBackend"]

_EXTRA_HINT = 'pip install "reranker[sentence-transformers]"'


def _import_cross_encoder() -> tuple[Any, Any]:
    try:
        import torch
        from sentence_transformers import CrossEncoder
    except ImportError as exc:
        raise ModelLoadError(
            "SentenceTransformersBackend needs sentence-transformers and torch, which are not "
            f"installed ({exc}); install them with: {_EXTRA_HINT}"
        ) from exc
    return CrossEncoder, torch


class SentenceTransformersBackend:
    """Score (query, document) pairs with a sentence-transformers cross-encoder.

    Args:
        model_name_or_path: a Hugging Face repo id or a local folder.
        max_length: tokens per pair; default the model's own limit.
        batch_size: pairs per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: what sentence-transformers picks.

    Raises:
        ModelLoadError: sentence-transformers or torch is missing, the model cannot be loaded,
            or it has more than two labels (not a relevance head).
    """

    scores_are_probabilities = False

    def __init__(
        self,
        model_name_or_path: str,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
    ) -> None:
        cross_encoder_cls, torch = _import_cross_encoder()
        if batch_size < 1:
            raise ModelLoadError(f"batch_size must be >= 1, got {batch_size}")
        try:
            model = cross_encoder_cls(model_name_or_path, max_length=max_length, device=device)
        except Exception as exc:
            raise ModelLoadError(
                f"sentence-transformers cannot load {model_name_or_path!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        num_labels = _num_labels(model)
        if num_labels not in (1, 2):
            raise ModelLoadError(
                f"{model_name_or_path!r} has {num_labels} labels; a reranker needs 1 (a relevance "
                "logit) or 2 (not relevant, relevant)"
            )
        self._model: Any = model
        self._num_labels = num_labels
        self._batch_size = batch_size
        # Raw logits: the keyword is activation_fn from v4 on, activation_fct in v3.
        params = inspect.signature(model.predict).parameters
        keyword = "activation_fn" if "activation_fn" in params else "activation_fct"
        self._predict_kwargs: dict[str, Any] = {keyword: torch.nn.Identity()}
        self.max_length: int | None = max_length or _model_max_length(model)
        self.model_name_or_path = model_name_or_path

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """One raw logit (or log-odds, for 2-label models) per document, as float32."""
        if self._model is None:
            raise ModelLoadError("SentenceTransformersBackend is closed")
        logits = self._model.predict(
            [(query, doc) for doc in documents],
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            **self._predict_kwargs,
        )
        arr = np.asarray(logits, dtype=np.float64)
        if self._num_labels == 2:
            arr = arr.reshape(len(documents), 2)
            arr = arr[:, 1] - arr[:, 0]
        return arr.reshape(-1).astype(np.float32)

    def close(self) -> None:
        """Drop the model so that its memory can be freed. Safe to call twice."""
        self._model = None


def _num_labels(model: Any) -> int:
    value = getattr(model, "num_labels", None)  # v5
    if value is None:
        value = model.config.num_labels  # v3, v4
    return int(value)


def _model_max_length(model: Any) -> int | None:
    # Tokenizers without a limit report a huge sentinel (int(1e30)): treat it as unknown.
    candidates = (
        getattr(model, "max_seq_length", None),
        getattr(getattr(model, "tokenizer", None), "model_max_length", None),
    )
    for value in candidates:
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    return None
