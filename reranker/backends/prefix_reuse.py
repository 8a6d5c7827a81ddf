"""A request's shared prompt prefix run once, its keys and values reused for every document.

A decoder reranker's prompts for one request start with the same tokens (system prompt,
instruction, query); only the document and the closing template differ. The model is causal, so
those first tokens' keys and values do not depend on what follows: a graph built with
``GraphOptions.kv_cache`` (:func:`reranker.models.decoders.stack.decoder_graph`) runs the
shared prefix once (one row, empty past) and then every document's rest with the prefix's
keys and values as its past. Scores equal a run over whole prompts (to float32 rounding).

The prefix is found on the token ids themselves (the longest run all rows of a request begin
with), so the runner needs nothing from the family's prompt module; every row keeps at least
its last token, whose position the head reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reranker.onnx_model import OnnxCrossEncoder

__all__ = ["MIN_SHARED_TOKENS", "empty_past", "run_with_shared_prefix", "shared_prefix_length"]

MIN_SHARED_TOKENS = 16
"""Shorter shared prefixes are not worth a run of their own."""


def empty_past(num_layers: int, num_kv_heads: int, head_dim: int) -> dict[str, np.ndarray]:
    """The ``past_key.<i>``/``past_value.<i>`` feeds of a run with no prefix."""
    empty = np.zeros((1, num_kv_heads, 1, 0, head_dim), dtype=np.float32)
    return {f"past_{part}.{i}": empty for i in range(num_layers) for part in ("key", "value")}


def takes_past(model: OnnxCrossEncoder) -> bool:
    """Whether ``model``'s graph takes a key/value prefix."""
    return "past_key.0" in model.input_names


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    length = 0
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length


def prefix_past(model: OnnxCrossEncoder, prefix: Sequence[int]) -> dict[str, np.ndarray]:
    """Keys and values of ``prefix`` (one run), as the ``past_*`` feeds of later runs."""
    ids = np.asarray([prefix], dtype=np.int64)
    names = [o.name for o in model.session.get_outputs() if o.name.startswith("present_")]
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), **model.extra_inputs}
    with model.observe_run(1, ids.shape[1]):
        values = model.session.run(names, {k: feed[k] for k in model.input_names})
    return {name.replace("present_", "past_", 1): np.asarray(v)
            for name, v in zip(names, values, strict=True)}


def run_with_shared_prefix(model: OnnxCrossEncoder, rows: Sequence[Sequence[int]],
                           min_shared: int = MIN_SHARED_TOKENS) -> np.ndarray:
    """Raw scores of one request's prompt ``rows``, its shared prefix run once when it has
    ``min_shared`` tokens or more (else every row whole)."""
    shared = shared_prefix_length(rows) if takes_past(model) else 0
    if shared < min_shared:
        return model.run(rows, rows)
    past = prefix_past(model, rows[0][:shared])
    rest = [row[shared:] for row in rows]
    return model.run(rest, rest, feeds=past)
