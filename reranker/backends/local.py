"""Local ONNX cross-encoders (the ``preset`` and ``custom`` variants).

Three steps, each testable alone: tokenize (``reranker.tokenization``), run
(``reranker.onnx_model``), and fold windows back into one raw score per document (max over a
document's windows when chunking). Activation and ranking happen in ``reranker.scoring``.

With ``optimization`` set, the session runs a fused or int8 variant of the model built by
``reranker.optimize`` (cached); with ``score_cache_size`` set, scores of (query, document) pairs
seen before come from an LRU cache instead of the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reranker.config import CustomConfig, LocalModelConfig, PresetConfig
from reranker.errors import ConfigError
from reranker.hub import fetch_model_files
from reranker.onnx_model import OnnxCrossEncoder, execution_providers
from reranker.optimize import default_cache_root, optimized_model
from reranker.presets import get_preset
from reranker.tokenization import EncodedPairs, PairTokenizer
from reranker.types import Truncation

__all__ = [
    "LocalCrossEncoderBackend",
    "LocalModelFiles",
    "ScoreCache",
    "fetch_local_model",
    "load_local_backend",
    "model_max_length",
]

# Position ids of RoBERTa-family models start after the pad id, so two positions are not usable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}
_UNSET_MAX_LENGTH = 10**9


@dataclass
class ScoreCacheStats:
    """Counters of a :class:`ScoreCache` since it was made."""

    hits: int = 0
    misses: int = 0
    size: int = 0

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0


class ScoreCache:
    """An LRU map from a (query, document) pair to its raw score, safe across threads.

    Keys are 16-byte BLAKE2b digests of the pair, so a cache of a million scores stays under a
    hundred megabytes whatever the documents' size. One cache belongs to one backend, so the
    model and its settings are part of the key implicitly.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._scores: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = ScoreCacheStats()

    @staticmethod
    def key(query: str, document: str, variant: str = "") -> bytes:
        """The pair's key; ``variant`` tells apart scores of one pair cut in different ways."""
        h = hashlib.blake2b(digest_size=16)
        h.update(len(query).to_bytes(8, "little"))
        h.update(query.encode("utf-8", "surrogatepass"))
        h.update(len(variant).to_bytes(8, "little"))
        h.update(variant.encode("utf-8"))
        h.update(document.encode("utf-8", "surrogatepass"))
        return h.digest()

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        with self._lock:
            found: list[float | None] = []
            for k in keys:
                value = self._scores.get(k)
                if value is not None:
                    self._scores.move_to_end(k)
                found.append(value)
            hits = sum(v is not None for v in found)
            self.stats.hits += hits
            self.stats.misses += len(found) - hits
            return found

    def put_many(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        with self._lock:
            for k, v in zip(keys, scores, strict=True):
                self._scores[k] = float(v)
                self._scores.move_to_end(k)
            while len(self._scores) > self.capacity:
                self._scores.popitem(last=False)
            self.stats.size = len(self._scores)


class LocalCrossEncoderBackend:
    """A cross-encoder run with ONNX Runtime in this process.

    Args:
        name: display name (``preset:fast``, ``custom:owner/repo``).
        model_file: the ``.onnx`` file.
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per pair, special tokens included.
        options: batching, threading, optimization and long-document settings.
    """

    scores_are_probabilities = False
    #: ``score`` takes a per-request :class:`~reranker.types.Truncation`.
    supports_truncation = True

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
        self.source_model_file = model_file
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
        self.model = OnnxCrossEncoder(
            run_file,
            pad_id=self.tokenizer.pad_id,
            threads=options.threads,
            batch_size=options.batch_size,
            max_tokens_per_batch=options.max_tokens_per_batch,
            providers=providers,
            parallel_runs=options.parallel_runs,
        )
        size = options.score_cache_size
        self.score_cache = ScoreCache(size) if size else None

    @property
    def num_logits(self) -> int:
        return self.model.num_logits

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None
    ) -> np.ndarray:
        """Raw scores (logits, or log-odds for 2-logit heads), one per document.

        ``truncation`` tightens how this request's documents are cut (see
        :class:`~reranker.types.Truncation`); by default the model's settings apply.
        """
        if truncation is not None and truncation.is_default:
            truncation = None
        if self.score_cache is None:
            return self._score(query, documents, truncation)
        variant = "" if truncation is None else repr(
            (truncation.max_document_tokens, truncation.side, truncation.max_chunks))
        keys = [ScoreCache.key(query, doc, variant) for doc in documents]
        cached = self.score_cache.get_many(keys)
        missing = [i for i, value in enumerate(cached) if value is None]
        scores = np.array([np.nan if v is None else v for v in cached], dtype=np.float32)
        if missing:
            unique: dict[bytes, int] = {}  # duplicates within a request are scored once
            for i in missing:
                unique.setdefault(keys[i], i)
            fresh = self._score(query, [documents[i] for i in unique.values()], truncation)
            by_key = dict(zip(unique, fresh.tolist(), strict=True))
            self.score_cache.put_many(list(by_key), list(by_key.values()))
            for i in missing:
                scores[i] = by_key[keys[i]]
        return scores

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

    def _score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None
    ) -> np.ndarray:
        encoded = self.encode(query, documents, truncation)
        rows = self.model.run(encoded.ids, encoded.type_ids)
        return encoded.per_document(rows, len(documents))

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None
    ) -> np.ndarray:
        """:meth:`score` in a worker thread; ONNX Runtime releases the GIL while it runs."""
        return await asyncio.to_thread(self.score, query, documents, truncation)

    def close(self) -> None:
        """Stop the model's run threads; safe to call twice."""
        self.model.close()

    def __repr__(self) -> str:
        return f"LocalCrossEncoderBackend({self.name!r}, max_length={self.max_length})"


def model_max_length(folder: Path) -> int | None:
    """The window a model folder declares: tokenizer_config's ``model_max_length``, else
    config.json's ``max_position_embeddings`` (less the RoBERTa position offset)."""
    tok_cfg = _read_json(folder / "tokenizer_config.json")
    declared = tok_cfg.get("model_max_length")
    if isinstance(declared, (int, float)) and 0 < declared < _UNSET_MAX_LENGTH:
        return int(declared)
    cfg = _read_json(folder / "config.json")
    positions = cfg.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        if cfg.get("model_type") in _OFFSET_POSITIONS:
            pad = cfg.get("pad_token_id", 1)
            positions -= (pad if isinstance(pad, int) else 1) + 1
        return positions
    return None


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class LocalModelFiles:
    """Where a local model's files are and the window it will be run with."""

    name: str
    folder: Path
    model_file: Path
    tokenizer_file: Path
    max_length: int


def fetch_local_model(config: PresetConfig | CustomConfig) -> LocalModelFiles:
    """Fetch (or find) the files a config names; checks ``max_length`` against the model."""
    revision: str | None
    declared: int | None
    if isinstance(config, PresetConfig):
        preset = get_preset(config.name)
        model_id, revision = preset.repo_id, preset.revision
        model_file, extra = preset.source_file(config.optimization), preset.additional_files
        tokenizer_file, declared = preset.tokenizer_file, preset.max_length
        name = f"preset:{config.name}"
    else:
        model_id, revision = config.model_id, config.revision
        model_file, extra = config.model_file, config.additional_files
        tokenizer_file, declared = config.tokenizer_file, None
        name = f"custom:{config.model_id}"
    folder = fetch_model_files(
        model_id,
        files=[model_file, tokenizer_file, *extra],
        revision=revision,
        cache_dir=config.cache_dir,
    )
    limit = declared or model_max_length(folder) or 512
    if config.max_length is not None and config.max_length > limit:
        raise ConfigError(
            f"max_length {config.max_length} exceeds the model's window of {limit} tokens"
        )
    return LocalModelFiles(
        name, folder, folder / model_file, folder / tokenizer_file, config.max_length or limit
    )


def load_local_backend(config: PresetConfig | CustomConfig) -> LocalCrossEncoderBackend:
    """Fetch (or find) the model files a config names and build the backend."""
    files = fetch_local_model(config)
    return LocalCrossEncoderBackend(
        files.name, files.model_file, files.tokenizer_file, files.max_length, config
    )
