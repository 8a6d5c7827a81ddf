"""ONNX inference: token ids in, one raw score per row out.

The session sees only token ids. Rows are grouped by length into batches bounded by a pair count
and a padded-token budget, so padding stays small; each batch is padded with the model's pad id,
on the right (encoders) or on the left (``padding_side="left"``: decoder graphs that read the
last column).
The graph's declared inputs decide what is fed (BERT graphs take ``token_type_ids``, XLM-R graphs
do not; a graph without ``attention_mask`` is only given rows of equal length), and the output is
checked at load time with a probe run: one logit per pair (sigmoid later) or two (softmax later,
reported as the log-odds ``logit[1] - logit[0]``), anything else is a
:class:`~reranker.errors.ModelLoadError`.

On CPU, small batches run side by side (why: ``benchmarks/results/measurements.md``).
``parallel_runs`` sets how many runs are in flight at once (each with
``threads // parallel_runs`` intra-op threads); all of them share one session, so the weights
are in memory once.

Memory: a run's transient memory grows with rows x heads x length^2 (attention). With a
``max_run_bytes`` budget and the model's :class:`EncoderShape`, batches are split to fit it, and
a row that alone exceeds it runs alone (every other run of the session waits), so the transient
memory of a model stays within ``parallel_runs x max_run_bytes`` or one full-window row.

Cancellation: :meth:`OnnxCrossEncoder.run` may be told which group (request) each row belongs to
and asked before each run which groups were cancelled; their rows are dropped from the runs
still to come (score NaN), the other groups' rows run on.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reranker.errors import ConfigError, ModelLoadError

__all__ = [
    "ACCELERATOR_TOKENS_PER_BATCH",
    "CPU_TOKENS_PER_BATCH",
    "BatchStats",
    "EncoderShape",
    "OnnxCrossEncoder",
    "execution_providers",
    "plan_batches",
]

_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
CPU_TOKENS_PER_BATCH = 512
"""Default token budget of one run on CPU: one 300-token pair, or a few short ones."""
ACCELERATOR_TOKENS_PER_BATCH = 16384
"""Default token budget of one run on a GPU, which needs large batches to be busy."""
# SkipLayerNormalization's CPU kernel measured slower than the Add and LayerNormalization it
# replaces (benchmarks/results/measurements.md).
_CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


@dataclass
class BatchStats:
    """Counters for the last :meth:`OnnxCrossEncoder.run` call (benchmarks read them)."""

    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0


@dataclass(frozen=True)
class EncoderShape:
    """The sizes of an encoder that decide the transient memory of a run (``config.json``)."""

    num_heads: int = 12
    hidden_size: int = 768
    intermediate_size: int = 3072

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EncoderShape:
        """Read from a ``config.json`` mapping; missing sizes take BERT-base's."""
        def size(key: str, default: int) -> int:
            value = config.get(key)
            return value if isinstance(value, int) and value > 0 else default

        return cls(size("num_attention_heads", cls.num_heads),
                   size("hidden_size", cls.hidden_size),
                   size("intermediate_size", cls.intermediate_size))

    def run_bytes(self, rows: int, length: int) -> int:
        """Peak transient memory of one float32 run of ``rows`` rows padded to ``length``: one
        layer's attention scores and probabilities plus its widest activations."""
        attention = 2 * self.num_heads * length * length
        activations = length * (self.intermediate_size + 4 * self.hidden_size)
        return 4 * rows * (attention + activations)


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens_per_batch: int,
    max_padding: float = 0.10,
    row_bytes: Callable[[int], int] | None = None,
    max_run_bytes: int | None = None,
) -> list[np.ndarray]:
    """Group row indices by length into batches.

    Rows are sorted by length; a batch grows while it holds fewer than ``batch_size`` rows, its
    padded size (rows x longest row) stays within ``max_tokens_per_batch``, its padded
    tokens stay within ``1 + max_padding`` times its real tokens, and (given ``row_bytes``, the
    memory of one row at a width) its memory stays within ``max_run_bytes``. A single row over
    a budget still forms a batch of its own.
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
            if row_bytes is not None and max_run_bytes is not None and (
                    (end - start + 1) * row_bytes(width) > max_run_bytes):
                break
            real += width
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def execution_providers(device: str) -> list[str]:
    """ONNX Runtime providers for ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"``.

    ``"auto"`` takes CUDA when the installed onnxruntime has it (the ``onnxruntime-gpu``
    package) and CPU otherwise; ``"cuda"`` without it is a :class:`ConfigError`.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            "device 'cuda' needs the onnxruntime-gpu package and a CUDA GPU; this onnxruntime "
            f"offers {', '.join(available)}"
        )
    return ["CPUExecutionProvider"]


class OnnxCrossEncoder:
    """An ONNX Runtime session for a cross-encoder graph.

    Args:
        model_file: path to the ``.onnx`` file (external data beside it).
        pad_id: the token id used to pad batches.
        threads: cores to use in all; ``None`` means every core this process may use.
        batch_size: most rows in one run.
        max_tokens_per_batch: most padded tokens in one run; ``None`` means
            :data:`CPU_TOKENS_PER_BATCH` on CPU and :data:`ACCELERATOR_TOKENS_PER_BATCH` else.
        providers: ONNX Runtime execution providers, best first.
        parallel_runs: runs in flight at once, sharing ``threads``; ``None`` means one
            single-threaded run per thread on CPU and one run on an accelerator.
        padding_side: where batches are padded; ``"left"`` ends every row in the last column,
            which decoder graphs that score the last position need.
        shape: the encoder's sizes, for the memory of a run; ``None``: BERT-base's.
        max_run_bytes: memory budget of one run; ``None``: no bound.
        cpu_arena: ONNX Runtime's CPU memory arena (on by default, as ONNX Runtime has it).
        extra_inputs: inputs a graph declares beyond the token ids, with the value fed when a
            run is given none (a decoder's empty key/value prefix); ``run(feeds=...)`` sets
            them per call.

    Attributes:
        on_run: called with ``(rows, width)`` before each run (benchmarks and tests count runs).
    """

    def __init__(
        self,
        model_file: str | Path,
        *,
        pad_id: int = 0,
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens_per_batch: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        parallel_runs: int | None = None,
        padding_side: Literal["right", "left"] = "right",
        shape: EncoderShape | None = None,
        max_run_bytes: int | None = None,
        cpu_arena: bool = True,
        extra_inputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        import onnxruntime as ort

        if padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side
        path = Path(model_file)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        on_cpu = list(providers)[:1] == ["CPUExecutionProvider"]
        cores = threads or default_threads()
        runs = parallel_runs or (cores if on_cpu else 1)
        self.threads = cores
        self.parallel_runs = max(1, min(runs, cores))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = max(1, cores // self.parallel_runs)
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = cpu_arena
        opts.log_severity_level = 3
        try:
            # The working directory matters for graphs whose external data path is relative.
            self.session = ort.InferenceSession(
                str(path),
                opts,
                providers=list(providers),
                disabled_optimizers=_CPU_DISABLED_OPTIMIZERS if on_cpu else None,
            )
        except Exception as exc:  # onnxruntime raises its own non-Exception-tree types
            raise ModelLoadError(f"cannot load ONNX model {path}: {exc}") from exc
        self.path = path
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch or (
            CPU_TOKENS_PER_BATCH if on_cpu else ACCELERATOR_TOKENS_PER_BATCH
        )
        self.stats = BatchStats()
        # Wraps each session run (the serve layer's tracing sets it); a no-op by default.
        self.observe_run: Callable[[int, int], AbstractContextManager[object]] = _unobserved
        self.shape = shape or EncoderShape()
        self.max_run_bytes = max_run_bytes
        self.on_run: Callable[[int, int], None] | None = None
        self._gate = _RunGate()
        declared = [i.name for i in self.session.get_inputs()]
        self.extra_inputs = dict(extra_inputs or {})
        unknown = [name for name in declared
                   if name not in _KNOWN_INPUTS and name not in self.extra_inputs]
        if "input_ids" not in declared or unknown:
            raise ModelLoadError(
                f"{path.name} declares inputs {declared}; a cross-encoder graph takes input_ids "
                "and optionally attention_mask and token_type_ids"
            )
        self.input_names = declared
        # Without a mask the graph cannot tell padding from text: batch equal lengths only.
        self.max_padding = 0.10 if "attention_mask" in declared else 0.0
        self.output_name = self.session.get_outputs()[0].name
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
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

    def _run_padded(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]],
                    feeds: Mapping[str, np.ndarray] | None = None,
                    ) -> np.ndarray:
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        width = int(lengths.max())
        if self.padding_side == "left":
            mask = np.arange(width)[None, :] >= (width - lengths)[:, None]
        else:
            mask = np.arange(width) < lengths[:, None]
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        input_ids[mask] = np.fromiter((t for row in ids for t in row), np.int64, mask.sum())
        feed = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
        if "token_type_ids" in self.input_names:
            types = np.zeros((len(ids), width), dtype=np.int64)
            types[mask] = np.fromiter((t for row in type_ids for t in row), np.int64, mask.sum())
            feed["token_type_ids"] = types
        if self.extra_inputs:
            feed.update(self.extra_inputs)
            feed.update(feeds or {})
        with self.observe_run(len(ids), width):
            out = self.session.run([self.output_name], {k: feed[k] for k in self.input_names})[0]
        return np.asarray(out)

    def run_bytes(self, rows: int, length: int) -> int:
        """Estimated transient memory of one run of ``rows`` rows padded to ``length``."""
        return self.shape.run_bytes(rows, length)

    def run(
        self,
        ids: Sequence[Sequence[int]],
        type_ids: Sequence[Sequence[int]],
        *,
        groups: Sequence[int] | None = None,
        cancelled: Callable[[], Collection[int]] | None = None,
        feeds: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Raw scores (float32) for each row, in row order.

        ``groups`` gives each row's group (a request); ``cancelled()``, asked before each run,
        the groups nobody waits for any more: their rows are left out (score NaN). ``feeds``
        sets ``extra_inputs`` for every run of this call.
        """
        lengths = [len(r) for r in ids]
        batches = plan_batches(
            lengths, self.batch_size, self.max_tokens_per_batch, max_padding=self.max_padding,
            row_bytes=lambda width: self.run_bytes(1, width), max_run_bytes=self.max_run_bytes,
        )
        scores = np.full(len(ids), np.nan, dtype=np.float32)

        def score_batch(batch: np.ndarray) -> None:
            if groups is not None and cancelled is not None:
                gone = cancelled()
                if gone:
                    batch = np.asarray([i for i in batch if groups[i] not in gone], np.int64)
                    if not len(batch):
                        return
            width = max(lengths[i] for i in batch)
            alone = self.max_run_bytes is not None and (
                self.run_bytes(len(batch), width) > self.max_run_bytes)
            with self._gate.enter(alone):
                if self.on_run is not None:
                    self.on_run(len(batch), width)
                rows, types = [ids[i] for i in batch], [type_ids[i] for i in batch]
                logits = (self._run_padded(rows, types) if feeds is None
                          else self._run_padded(rows, types, feeds))
            logits = logits.astype(np.float64)
            scores[batch] = logits[:, 0] if self.num_logits == 1 else logits[:, 1] - logits[:, 0]

        pool = self._executor() if len(batches) > 1 else None
        if pool is None:
            for batch in batches:
                score_batch(batch)
        else:
            # Longest batches first, so that no run is left alone at the end.
            batches.sort(key=lambda b: -len(b) * max(lengths[i] for i in b))
            # Each run gets a copy of the caller's context (a trace's current span, say).
            runs = [pool.submit(contextvars.copy_context().run, score_batch, b) for b in batches]
            for future in runs:
                future.result()
        self.stats = BatchStats(
            batches=len(batches),
            real_tokens=sum(lengths),
            padded_tokens=sum(len(b) * max(lengths[i] for i in b) for b in batches),
        )
        return scores

    def _executor(self) -> ThreadPoolExecutor | None:
        if self.parallel_runs == 1:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.parallel_runs, thread_name_prefix="onnx-run")
            return self._pool

    def close(self) -> None:
        """Stop the threads of parallel runs (a later :meth:`run` starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _unobserved(rows: int, width: int) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


class _RunGate:
    """Shared entry for runs within the memory budget, exclusive entry for a run over it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0  # exclusive runs waiting: new shared runs let them go first

    @contextmanager
    def enter(self, alone: bool) -> Any:
        with self._cond:
            if alone:
                self._waiting += 1
                self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
                self._waiting -= 1
                self._exclusive = True
            else:
                self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
                self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                if alone:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()


def default_threads() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
