"""jina-reranker-v2-base-multilingual (``XLMRobertaForSequenceClassification`` from
``jinaai/xlm-roberta-flash-implementation``): XLM-R under flash-attn's tensor names.

The math is XLM-R's (absolute positions from ``pad_token_id + 1``, one token type, post-norm,
GELU, RoBERTa classification head), so this family is XLM-R's graph over a renamed view of the
checkpoint: ``roberta.emb_ln`` is the embedding LayerNorm, ``roberta.encoder.layers.{i}``
holds a packed ``mixer.Wqkv`` ([q; k; v] rows, split here), ``mixer.out_proj``, ``norm1``,
``mlp.fc1``, ``mlp.fc2`` and ``norm2`` (flash-attn's ``remap_state_dict``, read backwards).
Rotary XLM-R flash checkpoints (jina-embeddings-v3) are not rerankers and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders import xlm_roberta
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.writer import DerivedTensor, Tensor

__all__ = ["graph", "stock_names"]

_RENAMES = (
    (re.compile(r"^roberta\.emb_ln\.(weight|bias)$"), r"roberta.embeddings.LayerNorm.\1"),
    (re.compile(r"^roberta\.encoder\.layers\.(\d+)\.mixer\.out_proj\.(weight|bias)$"),
     r"roberta.encoder.layer.\1.attention.output.dense.\2"),
    (re.compile(r"^roberta\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)$"),
     r"roberta.encoder.layer.\1.attention.output.LayerNorm.\2"),
    (re.compile(r"^roberta\.encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)$"),
     r"roberta.encoder.layer.\1.intermediate.dense.\2"),
    (re.compile(r"^roberta\.encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)$"),
     r"roberta.encoder.layer.\1.output.dense.\2"),
    (re.compile(r"^roberta\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)$"),
     r"roberta.encoder.layer.\1.output.LayerNorm.\2"),
)
_PACKED = re.compile(r"^roberta\.encoder\.layers\.(\d+)\.mixer\.Wqkv\.(weight|bias)$")


def _rows(start: int, stop: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: a[start:stop]


def stock_names(config: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The checkpoint's tensors under stock XLM-R names; the packed projection is split into
    ``query``/``key``/``value`` views (rows read when the graph is written)."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelLoadError("XLM-R flash with rotary positions (jina-embeddings-v3) is an "
                             "embedding model, not a reranker; only absolute positions load")
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        packed = _PACKED.match(name)
        if packed:
            layer, kind = packed.groups()
            rows = tensor.shape[0]
            if rows % 3:
                raise ModelLoadError(f"{name} has {rows} rows, not 3 x hidden_size")
            third = rows // 3
            for i, part in enumerate(("query", "key", "value")):
                out[f"roberta.encoder.layer.{layer}.attention.self.{part}.{kind}"] = DerivedTensor(
                    tensor, (third, *tensor.shape[1:]), _rows(i * third, (i + 1) * third))
            continue
        for pattern, replacement in _RENAMES:
            if pattern.match(name):
                name = pattern.sub(replacement, name)
                break
        out[name] = tensor
    return out


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """XLM-R's graph over the checkpoint's tensors under stock names."""
    view = Checkpoint(checkpoint.config, stock_names(checkpoint.config, checkpoint.tensors),
                      checkpoint.source, checkpoint.files)
    return xlm_roberta.graph(view, options)
