"""Local ONNX cross-encoders (the ``preset`` and ``custom`` variants).

Three steps, each testable alone: tokenize (``reranker.tokenization``), run
(``reranker.onnx_model``), and fold windows back into one raw score per document (max over a
document's windows when chunking). Activation and ranking happen in ``reranker.scoring``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reranker.config import CustomConfig, LocalModelConfig, PresetConfig
from reranker.errors import ConfigError
from reranker.hub import fetch_model_files
from reranker.onnx_model import OnnxCrossEncoder
from reranker.presets import get_preset
from reranker.tokenization import PairTokenizer

__all__ = [
    "LocalCrossEncoderBackend",
    "LocalModelFiles",
    "fetch_local_model",
    "load_local_backend",
    "model_max_length",
]

# Position ids of RoBERTa-family models start after the pad id, so two positions are not usable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}
_UNSET_MAX_LENGTH = 10**9


class LocalCrossEncoderBackend:
    """A cross-encoder run with ONNX Runtime in this process.

    Args:
        name: display name (``preset:fast``, ``custom:owner/repo``).
        model_file: the ``.onnx`` file.
        tokenizer_file: the model's ``tokenizer.json``.
        max_length: tokens per pair, special tokens included.
        options: batching, threading and long-document settings.
    """

    scores_are_probabilities = False

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
        self.model = OnnxCrossEncoder(
            model_file,
            pad_id=self.tokenizer.pad_id,
            threads=options.threads,
            batch_size=options.batch_size,
            max_tokens_per_batch=options.max_tokens_per_batch,
        )

    @property
    def num_logits(self) -> int:
        return self.model.num_logits

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Raw scores (logits, or log-odds for 2-logit heads), one per document."""
        chunk = self.options.long_documents == "chunk"
        encoded = self.tokenizer.encode(
            query,
            documents,
            chunk=chunk,
            overlap=self.options.chunk_overlap,
            max_chunks=self.options.max_chunks_per_doc,
        )
        rows = self.model.run(encoded.ids, encoded.type_ids)
        if len(rows) == len(documents):
            return rows
        per_doc = np.full(len(documents), -np.inf, dtype=np.float32)
        np.maximum.at(per_doc, np.asarray(encoded.owner), rows)
        return per_doc

    async def ascore(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """:meth:`score` in a worker thread; ONNX Runtime releases the GIL while it runs."""
        return await asyncio.to_thread(self.score, query, documents)

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees."""

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
        model_file, extra = preset.model_file, preset.additional_files
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
