"""Shared by the BERT, ELECTRA and XLM-R kits: raw scores of the float64 reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families.encoder_models import build_cross_encoder
from reranker.testing.families.encoder_reference import reference_encode, reference_logits


def make(folder: Path, arch: str, shape: dict[str, Any]) -> Path:
    return build_cross_encoder(folder, arch=arch, **shape)


def scores(folder: Path, query: str, documents: list[str], max_length: int = 128) -> np.ndarray:
    enc = reference_encode(folder, query, list(documents), max_length=max_length)
    logits = reference_logits(folder, enc["input_ids"], enc["attention_mask"],
                              enc.get("token_type_ids"))
    return logits[:, 0] if logits.shape[1] == 1 else logits
