"""Classification heads: what turns hidden states into ``logits``.

Encoders pool the first token (or the masked mean) and apply their classifier; decoders read
the last position (rows are left-padded, so the last column is every row's last real token)
and multiply it by a score row (seq-cls conversions) or by chosen rows of the output matrix
(yes/no rerankers). The whole-vocabulary projection is never built.
"""

from __future__ import annotations

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.layers.activations import activation
from reranker.models.layers.linear import Bias, linear
from reranker.models.writer import DerivedTensor, GraphWriter, Tensor, i64

__all__ = [
    "classifier_head",
    "first_token",
    "last_position",
    "mean_pool",
    "output_table",
    "pooler_classifier",
    "score_row",
    "token_rows",
]


def first_token(g: GraphWriter, x: str) -> str:
    """``x[:, 0]`` (the CLS token)."""
    return g.op("Gather", x, g.constant("/first_token", np.array(0, np.int64)), axis=1)


def mean_pool(g: GraphWriter, x: str) -> str:
    """The mean of ``x`` over positions whose ``attention_mask`` is 1."""
    keep = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=1),
                g.constant("/last_axis", i64(-1)))
    total = g.op("ReduceSum", g.op("Mul", x, keep), g.constant("/seq_axis", i64(1)), keepdims=0)
    count = g.op("ReduceSum", keep, g.constant("/seq_axis2", i64(1)), keepdims=0)
    return g.op("Div", total, count)


def pooler_classifier(g: GraphWriter, ck: Checkpoint, first: str, pooler: str,
                      classifier: str = "classifier") -> str:
    """BERT's head: ``classifier(tanh(pooler(first)))``."""
    return linear(g, ck, g.op("Tanh", linear(g, ck, first, pooler)), classifier)


def classifier_head(g: GraphWriter, ck: Checkpoint, pooled: str, act: str, *,
                    dense: str = "classifier.dense", out: str = "classifier.out_proj",
                    bias: Bias = "required") -> str:
    """RoBERTa (``act="tanh"``) and ELECTRA (``"gelu"``) heads: ``out(act(dense(pooled)))``."""
    hidden = linear(g, ck, pooled, dense, bias)
    hidden = g.op("Tanh", hidden) if act == "tanh" else activation(g, hidden, act)
    return linear(g, ck, hidden, out, bias)


def last_position(g: GraphWriter, hidden: str) -> str:
    """``hidden[:, -1]``."""
    axis = g.constant("/head_seq_axis", i64(1))
    last = g.op("Slice", hidden, g.constant("/head_last", i64(-1)),
                g.constant("/head_end", i64(2**62)), axis)
    return g.op("Squeeze", last, axis)


def score_row(g: GraphWriter, ck: Checkpoint, last: str, name: str = "score.weight") -> str:
    """``last @ score.T`` for a seq-cls conversion's single score row ``[1, hidden]``."""
    if name not in ck or ck[name].shape[0] != 1:
        shape = ck[name].shape if name in ck else None
        raise ModelLoadError(
            f"a seq-cls reranker needs {name} of shape [1, hidden]; found {shape}"
        )
    rows = ck[name]
    return g.op("MatMul", last, g.weight("head.rows_t", DerivedTensor(
        rows, rows.shape[::-1], lambda a: a.T)))


def output_table(ck: Checkpoint, embeddings: str, tied: bool) -> Tensor:
    """The output matrix: ``lm_head.weight``, or the tied input embeddings."""
    if "lm_head.weight" in ck:
        return ck["lm_head.weight"]
    if not tied:
        raise ModelLoadError(f"{ck.source} has no lm_head.weight and ties no embeddings")
    return ck[embeddings]


def token_rows(g: GraphWriter, ck: Checkpoint, last: str, table: Tensor,
               token_ids: tuple[int, ...]) -> str:
    """``last @ table[token_ids].T``: the logits of a few tokens (``(no, yes)`` rerankers)."""
    ids = list(token_ids)
    if any(not 0 <= i < table.shape[0] for i in ids):
        raise ModelLoadError(
            f"{ck.source}: token ids {ids} are outside the output matrix of {table.shape[0]} rows"
        )
    rows = DerivedTensor(table, (table.shape[1], len(ids)),
                       lambda a: np.stack([a[i] for i in ids]).T)
    return g.op("MatMul", last, g.weight("head.rows_t", rows))
