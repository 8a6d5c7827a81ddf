"""One test-kit module per supported family: a tiny checkpoint and a float64 reference.

Each module (named like its family in :mod:`reranker.models.architectures`) exposes ``NAME``
(the table's family name), ``make_checkpoint(folder, **shape) -> Path`` (config.json as the
real repo has it, tokenizer files, safetensors with the real tensor names) and
``reference_scores(folder, query, documents, **options) -> np.ndarray`` (the authors' scoring
rule in float64 numpy, raw scores). :func:`all_families` lists them, so fidelity and
hostile-checkpoint tests parametrize over every family without naming them. A new family adds
its module to ``_MODULES``.

``encoder_models`` / ``encoder_reference`` (BERT, ELECTRA, XLM-R) and ``qwen3_models`` /
``qwen3_reference`` are the builders and references those kits share with older tests.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["all_families"]

_MODULES = ("bert", "electra", "xlm_roberta", "modernbert", "qwen3")


def all_families() -> tuple[ModuleType, ...]:
    """Every family's kit module, in the architecture table's order."""
    return tuple(importlib.import_module(f"{__name__}.{name}") for name in _MODULES)
