"""Local ONNX cross-encoders (the ``preset`` and ``custom`` variants).

Three steps, each testable alone: tokenize (``reranker.tokenization``), run
(``reranker.onnx_model``), and fold windows back into one raw score per document (max over a
document's windows when chunking). Activation and ranking happen in ``reranker.scoring``.

With ``optimization`` set, the session runs a fused or int8 variant of the model built by
``reranker.optimize`` (cached); with ``score_cache_size`` set, scores of (query, document) pairs
seen before under the same truncation come from an LRU cache instead of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reranker.backends.base import (
    InProcessBackend,
    ItemScores,
    ScoredArray,
    ScoreItem,
    as_reranker_error,
    check_instruction,
    check_truncation,
    spans_of,
    tokens_of,
)
from reranker.config import CustomConfig, LocalModelConfig, PresetConfig
from reranker.errors import (
    BackendError,
    ConfigError,
    InvalidInputError,
    RequestTooLargeError,
    RerankerError,
)
from reranker.hub import fetch_model_files
from reranker.model_folder import read_json_object, read_model_config
from reranker.models.architectures import is_decoder_config, position_offset
from reranker.models.source import fetch_custom_model
from reranker.onnx_model import EncoderShape, OnnxCrossEncoder, execution_providers
from reranker.optimize import default_cache_root, optimized_model
from reranker.presets import get_preset
from reranker.score_cache import ScoreCache, ScoreCacheStats
from reranker.tokenization import EncodedPairs, PairTokenizer
from reranker.types import TRUNCATION_FIELDS, Truncation

if TYPE_CHECKING:
    from reranker.backends.decoder import DecoderRerankerBackend
    from reranker.backends.vision import VisionRerankerBackend

__all__ = [
    "LocalCrossEncoderBackend",
    "LocalModelFiles",
    "ScoreCache",
    "ScoreCacheStats",
    "fetch_local_model",
    "load_local_backend",
    "model_max_length",
]

_UNSET_MAX_LENGTH = 10**9


@dataclass
class _CachePlan:
    """One item's cache lookup: its keys, its scores so far, and what is left to score."""

    keys: list[bytes]
    scores: np.ndarray
    missing: list[int]
    todo: dict[bytes, int]  # unique missing keys -> first document with that key


class LocalCrossEncoderBackend(InProcessBackend):
    """A cross-encoder run with ONNX Runtime in this process.

    Every request truncation field applies (``truncation_fields``). The batch entry point
    encodes all items, runs their windows through one length-grouped ONNX pass, and folds the
    windows back to one score per document; with ``score_cache_size`` set, pairs scored before
    come from the cache on every path (single calls, Serve batches, batch jobs).

    Args:
        name: display name (``preset:fast``, ``custom:owner/repo``).
        model_file: the ``.onnx`` file.
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per pair, special tokens included.
        options: batching, threading, optimization and long-document settings.
    """

    scores_are_probabilities = False
    truncation_fields: frozenset[str] = frozenset(TRUNCATION_FIELDS)
    takes_instruction = False

    def __init__(
        self,
        name: str,
        model_file: Path,
        tokenizer_file: Path,
        max_length: int,
        options: LocalModelConfig,
    ) -> None:
        self.name = name
        self.max_length = max_length
        self.options = options
        self.tokenizer = PairTokenizer(tokenizer_file, max_length)
        #: The ONNX file the model comes from (a download, or a graph built from safetensors),
        #: before any ``optimization`` is applied: what ``reranker download`` reports.
        self.model_file = model_file
        providers = execution_providers(options.device)
        on_cpu = providers[0] == "CPUExecutionProvider"
        if options.optimization == "int8" and not on_cpu:
            raise ConfigError(
                "optimization 'int8' (dynamic quantization) runs on CPU only; use 'fused' "
                "or 'none' with device 'cuda'"
            )
        run_file = optimized_model(
            model_file,
            options.optimization,
            cache_root=default_cache_root(options.cache_dir),
            padding_free=on_cpu,
        )
        shape = EncoderShape.from_config(read_model_config(Path(tokenizer_file).parent))

        def load(parallel_runs: int | None, tokens: int | None) -> OnnxCrossEncoder:
            return OnnxCrossEncoder(
                run_file,
                pad_id=self.tokenizer.pad_id,
                threads=options.threads,
                batch_size=options.batch_size,
                max_tokens_per_batch=tokens,
                providers=providers,
                parallel_runs=parallel_runs,
                shape=shape,
                max_run_bytes=options.max_run_memory_mb * 2**20,
            )

        if (options.calibrate_cpu and on_cpu and options.parallel_runs is None
                and options.max_tokens_per_batch is None):
            self.model = self._calibrated(run_file, load)
        else:
            self.model = load(options.parallel_runs, options.max_tokens_per_batch)
        size = options.score_cache_size
        self.score_cache = ScoreCache(size) if size else None

    def _calibrated(self, run_file: Path, load: Any) -> OnnxCrossEncoder:
        from reranker.calibration import RunLayout, calibrated_layout
        from reranker.onnx_model import default_threads
        from reranker.sample_requests import benchmark_requests

        cores = self.options.threads or default_threads()
        request = benchmark_requests(1, documents_per_request=24, seed=7)[0]
        sample = self.tokenizer.encode(request.query, request.documents)

        def make(layout: RunLayout) -> OnnxCrossEncoder:
            return load(layout.parallel_runs, layout.max_tokens_per_batch)  # type: ignore[no-any-return]

        layout, model = calibrated_layout(run_file, default_cache_root(self.options.cache_dir),
                                          cores, make, sample.ids, sample.type_ids)
        return model or make(layout)

    @property
    def num_logits(self) -> int:
        return self.model.num_logits

    @property
    def threads(self) -> int:
        """Cores the model's runs use in all (``threads``, or its default)."""
        return self.model.threads

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """Raw scores (logits, or log-odds for 2-logit heads), one per document.

        ``truncation`` tightens how this request's documents are cut (see
        :class:`~reranker.types.Truncation`); by default the model's settings apply. A
        cross-encoder takes no ``instruction``.
        """
        item = self._checked(ScoreItem(query, documents, truncation, instruction))
        return self._score_one(item)

    def _score_one(self, item: ScoreItem) -> np.ndarray:
        try:
            return self._score_items([item])[0]
        except InvalidInputError:
            if self.score_cache is None:
                raise
            # Only the uncached documents were encoded: encode all, so the error names the
            # document by its position in the request.
            return self._merged_scores([item])[0]

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """One score array per item from one ONNX pass over every item's windows.

        A failed item gets its error instead: when one item's input is invalid (a pair that
        does not fit with truncation refused, a refused field) the items are scored alone so
        only that one fails; any other failure fails every item.
        """
        checked: list[ScoreItem | RerankerError] = []
        for item in items:
            try:
                checked.append(self._checked(item))
            except InvalidInputError as exc:
                checked.append(exc)
        valid = [c for c in checked if isinstance(c, ScoreItem)]
        try:
            scored = iter(self._score_items(valid))
            return [c if isinstance(c, RerankerError) else _unless_cancelled(c, next(scored))
                    for c in checked]
        except InvalidInputError:
            pass
        except Exception as exc:
            failed = as_reranker_error(self.name, exc)
            return [c if isinstance(c, RerankerError) else failed for c in checked]
        out: list[ItemScores] = []
        for c in checked:
            if isinstance(c, RerankerError):
                out.append(c)
                continue
            try:
                out.append(_unless_cancelled(c, self._score_one(c)))
            except Exception as exc:
                out.append(as_reranker_error(self.name, exc))
        return out

    def encode(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None
    ) -> EncodedPairs:
        """Token ids of every (query, document) pair as this model's settings cut them."""
        return self.tokenizer.encode(
            query,
            documents,
            chunk=self.options.long_documents == "chunk",
            overlap=self.options.chunk_overlap,
            max_chunks=self.options.max_chunks_per_doc,
            truncation=truncation,
        )

    def _checked(self, item: ScoreItem) -> ScoreItem:
        check_instruction(f"backend {self.name!r}", self.takes_instruction, item.instruction)
        cut = check_truncation(f"backend {self.name!r}", self.truncation_fields, item.truncation)
        return item if cut is item.truncation else replace(item, truncation=cut)

    def _score_items(self, items: Sequence[ScoreItem]) -> list[np.ndarray]:
        cache = self.score_cache
        if cache is None:
            return self._merged_scores(items)
        plans: list[_CachePlan] = []
        for item in items:
            variant = "" if item.truncation is None else item.truncation.cache_variant
            keys = [ScoreCache.key(item.query, doc, variant) for doc in item.documents]
            cached = cache.get_many(keys)
            missing = [i for i, value in enumerate(cached) if value is None]
            todo: dict[bytes, int] = {}  # duplicates within an item are scored once
            for i in missing:
                todo.setdefault(keys[i], i)
            scores = np.array([np.nan if v is None else v for v in cached], dtype=np.float32)
            plans.append(_CachePlan(keys, scores, missing, todo))
        pending = [(item, plan) for item, plan in zip(items, plans, strict=True) if plan.todo]
        fresh = self._merged_scores([
            replace(item, documents=[item.documents[i] for i in plan.todo.values()])
            for item, plan in pending
        ])
        extras: dict[int, tuple[int | None, dict[bytes, tuple[int, int] | None]]] = {}
        for (item, plan), new in zip(pending, fresh, strict=True):
            if _is_cancelled(item):
                continue  # its skipped runs left NaN scores: nothing to remember
            by_key = dict(zip(plan.todo, new.tolist(), strict=True))
            cache.put_many(list(by_key), list(by_key.values()))
            for i in plan.missing:
                plan.scores[i] = by_key[plan.keys[i]]
            new_spans = spans_of(new)
            extras[id(plan)] = (tokens_of(new), dict(zip(
                plan.todo, new_spans or [None] * len(plan.todo), strict=True)))
        out: list[np.ndarray] = []
        for plan in plans:
            # Cached pairs cost no tokens; their best window was not looked at again.
            tokens, span_by_key = extras.get(id(plan), (0, {}))
            spans = [span_by_key.get(key) for key in plan.keys] if span_by_key else None
            out.append(ScoredArray.of(plan.scores, tokens=tokens, spans=(
                spans if self.options.long_documents == "chunk" else None)))
        return out

    def _merged_scores(self, items: Sequence[ScoreItem]) -> list[np.ndarray]:
        """Encode every item, run all windows in one length-grouped pass, fold them back."""
        if not items:
            return []
        ids: list[list[int]] = []
        type_ids: list[list[int]] = []
        groups: list[int] = []
        encodings: list[EncodedPairs] = []
        for g, item in enumerate(items):
            encoded = self.encode(item.query, item.documents, item.truncation)
            self._check_tokens(encoded)
            ids.extend(encoded.ids)
            type_ids.extend(encoded.type_ids)
            groups.extend([g] * len(encoded.ids))
            encodings.append(encoded)

        def cancelled() -> set[int]:
            return {g for g, item in enumerate(items) if _is_cancelled(item)}

        if not ids:
            rows = np.empty(0, dtype=np.float32)
        elif any(item.cancel is not None for item in items):
            rows = self.model.run(ids, type_ids, groups=groups, cancelled=cancelled)
        else:
            rows = self.model.run(ids, type_ids)
        out: list[np.ndarray] = []
        start = 0
        for item, encoded in zip(items, encodings, strict=True):
            part = rows[start : start + len(encoded.owner)]
            start += len(encoded.owner)
            out.append(ScoredArray.of(
                encoded.per_document(part, len(item.documents)), tokens=encoded.tokens,
                spans=encoded.best_spans(part, len(item.documents))))
        return out

    def _check_tokens(self, encoded: EncodedPairs) -> None:
        limit = self.options.max_request_tokens
        if limit is None:
            return
        tokens = sum(len(row) for row in encoded.ids)
        if tokens > limit:
            raise RequestTooLargeError(
                f"the request needs {tokens} tokens after truncation (every window of every "
                f"document, query included); the limit is max_request_tokens={limit}",
                param="max_request_tokens",
            )

    def close(self) -> None:
        """Stop the model's run threads; safe to call twice."""
        self.model.close()

    def __repr__(self) -> str:
        return f"LocalCrossEncoderBackend({self.name!r}, max_length={self.max_length})"


def _is_cancelled(item: ScoreItem) -> bool:
    return item.cancel is not None and item.cancel.is_set()


def _unless_cancelled(item: ScoreItem, scores: np.ndarray) -> ItemScores:
    # A cancelled item's remaining runs were skipped: its scores are incomplete (NaN).
    if _is_cancelled(item):
        return BackendError("the request was cancelled before all its documents were scored")
    return scores


def model_max_length(folder: Path) -> int | None:
    """The window a model folder declares: tokenizer_config's ``model_max_length``, never more
    than config.json's ``max_position_embeddings`` (less the family's position offset, from the
    architecture table), which is the window when the tokenizer declares none.

    A tokenizer_config that claims more than the position table holds would otherwise make
    every long document a run-time error of the position lookup."""
    tok_cfg = read_json_object(folder / "tokenizer_config.json")
    declared = tok_cfg.get("model_max_length")
    cfg = read_model_config(folder)
    positions = cfg.get("max_position_embeddings")
    usable = None
    if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
        usable = positions - position_offset(cfg)
    if isinstance(declared, (int, float)) and 0 < declared < _UNSET_MAX_LENGTH:
        return int(declared) if usable is None or usable <= 0 else min(int(declared), usable)
    return usable if usable is not None and usable > 0 else None


@dataclass(frozen=True)
class LocalModelFiles:
    """Where a local model's files are and the window it will be run with."""

    name: str
    folder: Path
    model_file: Path
    tokenizer_file: Path
    max_length: int


def fetch_local_model(config: PresetConfig | CustomConfig) -> LocalModelFiles:
    """Fetch (or find) the files a config names; checks ``max_length`` against the model.

    A decoder reranker's files are its safetensors weights (``model_file``: the weights file
    or the shard index) and tokenizer; its ONNX graph is built when it is loaded.
    """
    decoder = _decoder_source(config)
    if decoder is not None:
        from reranker.backends.decoder import locate_decoder

        name, folder, max_length = locate_decoder(config, **decoder)
        index = folder / "model.safetensors.index.json"
        weights = index if index.is_file() else folder / "model.safetensors"
        return LocalModelFiles(name, folder, weights, folder / "tokenizer.json", max_length)
    revision: str | None
    declared: int | None
    if isinstance(config, PresetConfig):
        preset = get_preset(config.name)
        model_id, revision = preset.repo_id, preset.revision
        model_file, extra = preset.source_file(config.optimization), preset.additional_files
        tokenizer_file, declared = preset.tokenizer_file, preset.max_length
    else:
        model_id, revision = config.model_id, config.revision
        model_file, extra = config.model_file, config.additional_files
        tokenizer_file, declared = config.tokenizer_file, None
    if isinstance(config, CustomConfig):
        folder, model_path = fetch_custom_model(config)
    else:
        folder = fetch_model_files(
            model_id,
            files=[model_file, tokenizer_file, *extra],
            revision=revision,
            cache_dir=config.cache_dir,
        )
        model_path = folder / model_file
    limit = declared or model_max_length(folder) or 512
    if config.max_length is not None and config.max_length > limit:
        raise ConfigError(
            f"max_length {config.max_length} exceeds the model's window of {limit} tokens"
        )
    return LocalModelFiles(
        config.display_name, folder, model_path, folder / tokenizer_file,
        config.max_length or limit,
    )


def _decoder_source(config: PresetConfig | CustomConfig) -> dict[str, Any] | None:
    """Where a decoder reranker's files come from (``locate_decoder``'s keywords), or ``None``
    for a cross-encoder. A ``custom`` repo's ``config.json`` decides: the registry is keyed
    by architecture (and exact repo id)."""
    if isinstance(config, PresetConfig):
        preset = get_preset(config.name)
        if not preset.is_decoder:
            return None
        return {"model_id": preset.repo_id, "revision": preset.revision,
                "window": preset.max_length}
    probe = fetch_model_files(config.model_id, files=[config.tokenizer_file],
                              optional_files=("config.json",), revision=config.revision,
                              cache_dir=config.cache_dir)
    if not is_decoder_config(read_model_config(probe), config.model_id):
        return None
    return {"model_id": config.model_id}


def load_local_backend(
    config: PresetConfig | CustomConfig,
) -> LocalCrossEncoderBackend | DecoderRerankerBackend | VisionRerankerBackend:
    """Fetch (or find) the model files a config names and build the backend.

    A preset or repo whose ``config.json`` names a decoder architecture (Qwen3-Reranker) gets
    the decoder backend (:mod:`reranker.backends.decoder`).
    """
    decoder = _decoder_source(config)
    if decoder is not None:
        from reranker.backends.decoder import load_decoder_backend

        return load_decoder_backend(config, **decoder)
    if config.instruction is not None:
        raise ConfigError(
            f"instruction is for decoder rerankers (Qwen3-Reranker); {config.type} model "
            "takes none"
        )
    files = fetch_local_model(config)
    return LocalCrossEncoderBackend(
        files.name, files.model_file, files.tokenizer_file, files.max_length, config
    )
