"""A request's token budget, checked before any model runs (what the Serve ingress refuses).

A scorer replica sees one chunk of a request, so a budget checked there lets a request of many
chunks run ``chunks`` times the budget. :class:`RequestTokenCounter` counts a whole request the
way the local backends count what they run: every window of every document, the query (and a
decoder's prompt) included, after the request's truncation. It needs only the model's
tokenizer files, never its weights.

Counting costs a tokenizer pass, so it is skipped when it cannot matter: a request of ``n``
documents runs at most ``n x windows x max_length`` tokens (``windows``: 1, or the chunk limit
when the model chunks long documents), and under the budget that bound needs no tokenizer. Over
it, documents are counted in groups and counting stops as soon as the budget is passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from reranker.config import CustomConfig, PresetConfig
from reranker.errors import RequestTooLargeError
from reranker.types import Truncation

__all__ = ["RequestTokenCounter", "request_token_counter", "token_bound"]

# Documents tokenized at a time: counting stops within one group of passing the budget.
_COUNT_GROUP = 64

Encode = Callable[[str, Sequence[str], "Truncation | None", "str | None"], list[list[int]]]


class RequestTokenCounter:
    """Counts the tokens a request runs on one local model.

    Args:
        name: the model's display name (errors name it).
        encode: ``(query, documents, truncation, instruction) -> rows of ids``, the backend's
            own cut.
        max_length: tokens per window.
        max_windows: windows per document (1 unless the model chunks long documents).
    """

    def __init__(self, name: str, encode: Encode, max_length: int, max_windows: int) -> None:
        self.name = name
        self._encode = encode
        self.max_length = max_length
        self.max_windows = max_windows

    def upper_bound(self, documents: int, truncation: Truncation | None = None) -> int:
        """The most tokens ``documents`` documents can run, without tokenizing anything."""
        return documents * _windows(self.max_windows, truncation) * self.max_length

    def count(self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
              instruction: str | None = None, *, stop_above: int | None = None
              ) -> tuple[int, int]:
        """Tokens of the request and how many documents were counted (all of them, unless
        the count passed ``stop_above`` first)."""
        tokens = 0
        for first in range(0, len(documents), _COUNT_GROUP):
            group = documents[first : first + _COUNT_GROUP]
            tokens += sum(len(row) for row in self._encode(query, group, truncation,
                                                           instruction))
            if stop_above is not None and tokens > stop_above:
                return tokens, first + len(group)
        return tokens, len(documents)

    def check(self, query: str, documents: Sequence[str], truncation: Truncation | None,
              instruction: str | None, limit: int) -> int | None:
        """Raise :class:`RequestTooLargeError` (naming ``max_request_tokens``) when the request
        runs more than ``limit`` tokens; returns its tokens, or ``None`` when the bound alone
        showed it fits (nothing tokenized)."""
        if self.upper_bound(len(documents), truncation) <= limit:
            return None
        tokens, counted = self.count(query, documents, truncation, instruction,
                                     stop_above=limit)
        if tokens > limit:
            seen = "" if counted == len(documents) else (
                f" in its first {counted} of {len(documents)} documents")
            raise RequestTooLargeError(
                f"the request needs {tokens} tokens{seen} on model {self.name!r} after "
                "truncation (every window of every document, query included); the limit is "
                f"max_request_tokens={limit}",
                param="max_request_tokens",
            )
        return tokens


def token_bound(config: PresetConfig | CustomConfig, documents: int,
                truncation: Truncation | None = None) -> int | None:
    """:meth:`RequestTokenCounter.upper_bound` from the config alone, or ``None`` when its
    window is known only from the model's files (a ``custom`` model without ``max_length``)."""
    from reranker.presets import get_preset

    length = config.max_length
    if length is None and isinstance(config, PresetConfig):
        length = get_preset(config.name).max_length
    if length is None:
        return None
    chunks = config.max_chunks_per_doc if config.long_documents == "chunk" else 1
    return documents * _windows(chunks, truncation) * length


def _windows(most: int, truncation: Truncation | None) -> int:
    if truncation is not None and truncation.max_chunks is not None:
        return min(most, truncation.max_chunks)
    return most


def request_token_counter(config: PresetConfig | CustomConfig) -> RequestTokenCounter:
    """The counter of a local model config, from its tokenizer files alone (fetched, or found
    in the cache); cutting as the backend the config loads cuts.

    Raises:
        RerankerError: the files cannot be fetched or read (the subclass says why).
    """
    from reranker.hub import fetch_model_files
    from reranker.model_folder import read_model_config
    from reranker.models.architectures import is_decoder_config
    from reranker.presets import get_preset

    decoder_window: int | None = None
    revision: str | None
    if isinstance(config, PresetConfig):
        preset = get_preset(config.name)
        model_id, revision, tokenizer_file = preset.repo_id, preset.revision, (
            preset.tokenizer_file)
        declared: int | None = preset.max_length
        decoder = preset.is_decoder
        decoder_window = preset.max_length
    else:
        model_id, revision, tokenizer_file = config.model_id, config.revision, (
            config.tokenizer_file)
        declared = None
        decoder = False
    folder = fetch_model_files(
        model_id, files=[tokenizer_file],
        optional_files=("config.json", "tokenizer_config.json"),
        revision=revision, cache_dir=config.cache_dir)
    if isinstance(config, CustomConfig):
        decoder = is_decoder_config(read_model_config(folder), config.model_id)
    if decoder:
        return _decoder_counter(config, folder, decoder_window)
    return _encoder_counter(config, folder / tokenizer_file, declared)


def _encoder_counter(config: PresetConfig | CustomConfig, tokenizer_file: Path,
                     declared: int | None) -> RequestTokenCounter:
    from reranker.backends.local import model_max_length
    from reranker.tokenization import PairTokenizer

    max_length = config.max_length or declared or model_max_length(tokenizer_file.parent) or 512
    tokenizer = PairTokenizer(tokenizer_file, max_length)
    chunk = config.long_documents == "chunk"

    def encode(query: str, documents: Sequence[str], truncation: Truncation | None,
               instruction: str | None) -> list[list[int]]:
        return tokenizer.encode(query, documents, chunk=chunk, overlap=config.chunk_overlap,
                                max_chunks=config.max_chunks_per_doc, truncation=truncation).ids

    return RequestTokenCounter(config.display_name, encode, max_length,
                               config.max_chunks_per_doc if chunk else 1)


def _decoder_counter(config: PresetConfig | CustomConfig, folder: Path,
                     window: int | None) -> RequestTokenCounter:
    import importlib

    from reranker.backends.decoder import decoder_family, locate_decoder

    name, _, max_length = locate_decoder(config, folder, window=window)
    model_id = config.model_id if isinstance(config, CustomConfig) else None
    family, _ = decoder_family(folder, model_id, getattr(config, "rule", None))
    prompt = importlib.import_module(family.prompt or "")
    tokenizer = prompt.PromptTokenizer(folder / "tokenizer.json", max_length)
    default = config.instruction or prompt.DEFAULT_INSTRUCTION

    def encode(query: str, documents: Sequence[str], truncation: Truncation | None,
               instruction: str | None) -> list[list[int]]:
        return tokenizer.encode(instruction or default, query, documents, truncation)

    return RequestTokenCounter(name, encode, max_length, 1)
