"""ONNX inference: token ids in, one raw score per row out.

The session sees only token ids. Rows are grouped by length into batches bounded by a pair count
and a padded-token budget, so padding stays small; each batch is padded with the model's pad id.
The graph's declared inputs decide what is fed (BERT graphs take ``token_type_ids``, XLM-R graphs
do not), and the output is checked at load time with a probe run: one logit per pair (sigmoid
later) or two (softmax later, reported as the log-odds ``logit[1] - logit[0]``), anything else
is a :class:`~reranker.errors.ModelLoadError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["OnnxCrossEncoder", "BatchStats", "plan_batches"]

_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


@dataclass
class BatchStats:
    """Counters for the last :meth:`OnnxCrossEncoder.run` call (benchmarks read them)."""

    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens_per_batch: int,
    max_padding: float = 0.10,
) -> list[np.ndarray]:
    """Group row indices by length into batches.

    Rows are sorted by length; a batch grows while it holds fewer than ``batch_size`` rows, its
    padded size (rows x longest row) stays within ``max_tokens_per_batch``, and its padded
    tokens stay within ``1 + max_padding`` times its real tokens. A single row longer than the
    budget still forms a batch of its own.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    sorted_lengths = np.asarray(lengths, dtype=np.int64)[order]
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        end = start + 1
        real = int(sorted_lengths[start])
        while end < n and end - start < batch_size:
            width = int(sorted_lengths[end])
            padded = (end - start + 1) * width
            if padded > max_tokens_per_batch or padded > (1 + max_padding) * (real + width):
                break
            real += width
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


class OnnxCrossEncoder:
    """An ONNX Runtime session for a cross-encoder graph.

    Args:
        model_file: path to the ``.onnx`` file (external data beside it).
        pad_id: the token id used to pad batches.
        threads: intra-op threads; ``None`` lets ONNX Runtime use every core.
        batch_size: most rows in one run.
        max_tokens_per_batch: most padded tokens in one run.
        providers: ONNX Runtime execution providers, best first.
    """

    def __init__(
        self,
        model_file: str | Path,
        *,
        pad_id: int = 0,
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens_per_batch: int = 8192,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        import onnxruntime as ort

        path = Path(model_file)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            # The working directory matters for graphs whose external data path is relative.
            self.session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own non-Exception-tree types
            raise ModelLoadError(f"cannot load ONNX model {path}: {exc}") from exc
        self.path = path
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.stats = BatchStats()
        declared = [i.name for i in self.session.get_inputs()]
        unknown = [name for name in declared if name not in _KNOWN_INPUTS]
        if "input_ids" not in declared or unknown:
            raise ModelLoadError(
                f"{path.name} declares inputs {declared}; a cross-encoder graph takes input_ids "
                "and optionally attention_mask and token_type_ids"
            )
        self.input_names = declared
        self.output_name = self.session.get_outputs()[0].name
        self.num_logits = self._probe()

    def _probe(self) -> int:
        ids = [[self.pad_id + 1] * 4]
        try:
            out = self._run_padded(ids, [[0] * 4])
        except Exception as exc:
            raise ModelLoadError(f"{self.path.name} failed a probe run: {exc}") from exc
        if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] not in (1, 2):
            raise ModelLoadError(
                f"{self.path.name} outputs shape {list(out.shape)} for one pair; a cross-encoder "
                "returns 1 logit (sigmoid) or 2 logits (softmax) per pair. Is the "
                "classification head missing from the export?"
            )
        return int(out.shape[1])

    def _run_padded(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]]
                    ) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        types = np.zeros((len(ids), width), dtype=np.int64)
        for r, (row, trow) in enumerate(zip(ids, type_ids, strict=True)):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
            types[r, : len(trow)] = trow
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        out = self.session.run([self.output_name], {k: feed[k] for k in self.input_names})[0]
        self.stats.batches += 1
        self.stats.padded_tokens += input_ids.size
        return np.asarray(out)

    def run(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Raw scores (float32) for each row, in row order."""
        self.stats = BatchStats(real_tokens=sum(len(r) for r in ids))
        scores = np.empty(len(ids), dtype=np.float32)
        lengths = [len(r) for r in ids]
        for batch in plan_batches(lengths, self.batch_size, self.max_tokens_per_batch):
            logits = self._run_padded([ids[i] for i in batch], [type_ids[i] for i in batch])
            logits = logits.astype(np.float64)
            raw = logits[:, 0] if self.num_logits == 1 else logits[:, 1] - logits[:, 0]
            scores[batch] = raw
        return scores


def default_threads() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
