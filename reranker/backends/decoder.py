"""Decoder LLM rerankers run with ONNX Runtime in this process, blind to the family.

The same three steps as the encoders: tokenize (the family's prompt module from the
architecture table, e.g. :mod:`reranker.models.prompts.qwen3`), run (length-grouped,
token-budget batches padded on the left, the graph built from safetensors by
:mod:`reranker.models.build`), and report the head's raw score (Qwen3: the log-odds
``logit_yes - logit_no``, so the library's sigmoid is the model card's probability of
``yes``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import replace
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
)
from reranker.backends.prefix_reuse import (
    MIN_SHARED_TOKENS,
    empty_past,
    run_with_shared_prefix,
    shared_prefix_length,
    takes_past,
)
from reranker.config import CustomConfig, LocalModelConfig, PresetConfig
from reranker.errors import ConfigError, InvalidInputError, ModelLoadError, RerankerError
from reranker.hub import is_local_model_id
from reranker.model_folder import read_json_object
from reranker.models.architectures import Family, resolve
from reranker.models.build import built_model, decoder_module, quantize_int8
from reranker.models.checkpoint import read_config
from reranker.models.decoders.stack import DecoderShape
from reranker.models.family import GraphOptions
from reranker.models.source import fetch_checkpoint_folder
from reranker.onnx_model import OnnxCrossEncoder, execution_providers
from reranker.optimize import default_cache_root
from reranker.tokenization import EncodedPairs
from reranker.types import DECODER_TRUNCATION_FIELDS, Truncation

if TYPE_CHECKING:
    from reranker.backends.vision import VisionRerankerBackend

__all__ = [
    "DEFAULT_DECODER_MAX_LENGTH",
    "DecoderRerankerBackend",
    "decoder_family",
    "load_decoder_backend",
    "locate_decoder",
]

DEFAULT_DECODER_MAX_LENGTH = 2048
"""Tokens per prompt unless configured: Qwen3's window is 32k+, whose attention no CPU run fits."""


def decoder_family(folder: Path, model_id: str | None = None, rule: str | None = None
                   ) -> tuple[Family, DecoderShape]:
    """The table's family of a decoder checkpoint folder and its checked sizes.

    Raises:
        ModelLoadError: not a decoder family of the table (listing the supported ones), or
            sizes the graph cannot express.
    """
    config = read_config(folder)
    repo = None if model_id is None or is_local_model_id(model_id) else model_id
    family = resolve(config, repo_id=repo, rule=rule, source=str(folder))
    if family.kind != "decoder":
        raise ModelLoadError(f"{folder} is a {family.name} encoder, not a decoder reranker")
    return family, decoder_module(family).shape(config)


class DecoderRerankerBackend(InProcessBackend):
    """A yes/no decoder reranker from a safetensors checkpoint folder.

    It takes a request's ``instruction`` (``takes_instruction``; the configured one, else the
    model card's, when a request gives none) and applies the truncation fields of
    :data:`~reranker.types.DECODER_TRUNCATION_FIELDS`.

    Args:
        name: display name (``preset:instruct``, ``custom:Qwen/Qwen3-Reranker-4B``).
        folder: ``config.json``, safetensors weights and ``tokenizer.json``.
        max_length: tokens per prompt, template included.
        options: batching, threading, optimization and memory settings.
        model_id: the Hub repo id (its exact id picks the family where the table lists it).
    """

    scores_are_probabilities = False
    truncation_fields: frozenset[str] = DECODER_TRUNCATION_FIELDS
    takes_instruction = True

    def __init__(
        self, name: str, folder: Path, max_length: int, options: LocalModelConfig,
        model_id: str | None = None,
    ) -> None:
        # Settings the decoder path does not implement are refused rather than ignored.
        if options.long_documents != "truncate":
            raise ConfigError(
                f"long_documents {options.long_documents!r}: decoder rerankers cut documents "
                "at the window ('truncate'); chunking is not implemented for them")
        if options.score_cache_size:
            raise ConfigError("score_cache_size is not implemented for decoder rerankers; use 0")
        self.name = name
        self.max_length = max_length
        self.options = options
        rule = getattr(options, "rule", None)
        self.family, self.spec = decoder_family(folder, model_id, rule)
        self.takes_instruction = self.family.takes_instruction
        if options.instruction is not None and not self.takes_instruction:
            raise ConfigError(f"instruction: {self.family.name} rerankers take none")
        prompt: Any = importlib.import_module(self.family.prompt or "")
        # A prompt module may apply fewer truncation fields (the others are refused).
        self.truncation_fields = getattr(prompt, "TRUNCATION_FIELDS", DECODER_TRUNCATION_FIELDS)
        self.tokenizer = prompt.PromptTokenizer(folder / "tokenizer.json", max_length)
        self.instruction = options.instruction or prompt.DEFAULT_INSTRUCTION
        budget = options.max_run_memory_mb * 2**20
        one_row = self.spec.run_memory_bytes(1, max_length)
        if one_row > budget:
            raise ConfigError(
                f"max_length {max_length} needs about {one_row / 2**20:.0f} MB per ONNX run of "
                f"{name}, over max_run_memory_mb={options.max_run_memory_mb}; lower max_length "
                "or raise max_run_memory_mb"
            )
        providers = execution_providers(options.device)
        on_cpu = providers[0] == "CPUExecutionProvider"
        if options.optimization == "int8" and not on_cpu:
            raise ConfigError("optimization 'int8' runs on CPU only; use 'none' with 'cuda'")
        cache_root = default_cache_root(options.cache_dir)
        head = self.family.head_for(self.spec.architecture)
        cutoff = getattr(options, "cutoff_layer", None)
        if cutoff is not None and head != "layerwise":
            raise ConfigError(f"cutoff_layer applies to layerwise rerankers; {name} is a "
                              f"{self.family.name} reranker")
        # A causal family's graph also takes a prompt prefix's keys and values, so a request's
        # shared prefix runs once (reranker.backends.prefix_reuse); a layerwise head runs only
        # the layers up to its cutoff, so it keeps whole-prompt runs.
        variant = getattr(decoder_module(self.family), "VARIANT", None)
        graph_options = GraphOptions(head_kind=head, token_ids=(
            tuple(self.tokenizer.head_token_ids) if head != "score" else ()),
            cutoff_layer=cutoff,
            # int8 quantizes each run's activations on their own range, so a prefix run apart
            # moves int8 scores (8 of 10 top documents kept on the mxbai v2 stand-in against 9
            # without): int8 keeps whole-prompt runs.
            kv_cache=(bool(getattr(variant, "causal", False)) and head != "layerwise"
                      and options.optimization != "int8"))
        # Decoder weights always go to model.onnx_data: the int8 recipe reads them from there.
        model_file = built_model(folder, cache_root, external_data_bytes=0, family=self.family,
                                 options=graph_options)
        # 'fused' is the float32 graph: ONNX Runtime fuses its RMSNorms when it loads it.
        self.model_file = quantize_int8(model_file) if options.optimization == "int8" else (
            model_file)
        self.model = OnnxCrossEncoder(
            self.model_file,
            pad_id=self.tokenizer.pad_id,
            threads=options.threads,
            # Rows per run are capped so a batch of full windows stays within the budget.
            batch_size=max(1, min(options.batch_size, budget // one_row)),
            max_tokens_per_batch=options.max_tokens_per_batch,
            providers=providers,
            parallel_runs=options.parallel_runs,
            # The table's padding side; decoder graphs score the last column, so left.
            padding_side=self.family.padding_side,
            extra_inputs=(empty_past(self.spec.num_layers, self.spec.num_kv_heads,
                                     self.spec.head_dim) if graph_options.kv_cache else None),
        )
        #: Run each request's shared prompt prefix once (when its graph takes a prefix).
        self.prefix_reuse = takes_past(self.model)

    def encode(self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
               instruction: str | None = None) -> EncodedPairs:
        """Prompt ids, one row per document (see :class:`PromptTokenizer`), in the encoders'
        form. ``instruction`` and ``truncation`` are taken as given (checked by callers)."""
        rows = self.tokenizer.encode(
            self.instruction if instruction is None else instruction, query, documents,
            truncation)
        # Decoder graphs take no token types: the runner feeds only the graph's inputs.
        return EncodedPairs(ids=rows, type_ids=rows, owner=list(range(len(rows))))

    def _checked(self, item: ScoreItem) -> ScoreItem:
        where = f"backend {self.name!r}"
        instruction = check_instruction(where, self.takes_instruction, item.instruction)
        cut = check_truncation(where, self.truncation_fields, item.truncation)
        return replace(item, truncation=cut, instruction=instruction)

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """``logit_yes - logit_no`` for each document, in input order, as float32.

        Raises:
            InvalidInputError: a blank ``instruction``, a refused truncation field, or (with
                ``truncation.allow`` off) a prompt that does not fit the window.
        """
        item = self._checked(ScoreItem(query, documents, truncation, instruction))
        encoded = self.encode(item.query, item.documents, item.truncation, item.instruction)
        return ScoredArray.of(self._run(encoded.ids), tokens=encoded.tokens)

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        if self.prefix_reuse:
            return run_with_shared_prefix(self.model, rows)
        return self.model.run(rows, rows)

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """One score array per item from one length-grouped, left-padded pass over every
        item's prompts.

        An item whose input is invalid (a refused field, a blank instruction, a prompt that
        does not fit with truncation refused) gets its error and the others are scored; a
        failure of the run itself fails every item.
        """
        rows: list[list[int]] = []
        spans: list[tuple[int, int] | RerankerError] = []
        for item in items:
            try:
                checked = self._checked(item)
                encoded = self.encode(checked.query, checked.documents, checked.truncation,
                                      checked.instruction)
            except InvalidInputError as exc:
                spans.append(exc)
                continue
            spans.append((len(rows), len(rows) + len(encoded.ids)))
            rows += encoded.ids
        try:
            scores = self._run_items(rows, [s for s in spans if not isinstance(s, RerankerError)])
        except Exception as exc:
            failed = as_reranker_error(self.name, exc)
            return [s if isinstance(s, RerankerError) else failed for s in spans]
        return [s if isinstance(s, RerankerError) else
                ScoredArray.of(scores[s[0]:s[1]], tokens=sum(len(r) for r in rows[s[0]:s[1]]))
                for s in spans]

    def _run_items(self, rows: list[list[int]], spans: list[tuple[int, int]]) -> np.ndarray:
        # Items with a shared prompt prefix run alone (their prefix once); the others together.
        scores = np.empty(len(rows), np.float32)
        together: list[int] = []
        for start, stop in spans:
            part = rows[start:stop]
            if self.prefix_reuse and shared_prefix_length(part) >= MIN_SHARED_TOKENS:
                scores[start:stop] = run_with_shared_prefix(self.model, part)
            else:
                together.extend(range(start, stop))
        if together:
            scores[together] = self.model.run([rows[i] for i in together],
                                              [rows[i] for i in together])
        return scores

    def close(self) -> None:
        """Stop the model's run threads; safe to call twice."""
        self.model.close()

    def __repr__(self) -> str:
        return f"DecoderRerankerBackend({self.name!r}, max_length={self.max_length})"


def _window(folder: Path, spec: DecoderShape) -> int:
    declared = read_json_object(folder / "tokenizer_config.json").get("model_max_length")
    window = spec.max_position_embeddings
    if isinstance(declared, int) and 0 < declared < window:
        window = declared
    return window


def locate_decoder(
    config: PresetConfig | CustomConfig, folder: Path | None = None, *,
    model_id: str | None = None, revision: str | None = None, window: int | None = None,
) -> tuple[str, Path, int]:
    """Fetch (or find) a decoder reranker's files: its display name, folder and the
    ``max_length`` it runs with (``reranker download`` stops here).

    Args:
        folder: the model folder when already fetched; else fetched from ``model_id``.
        window: the largest ``max_length`` allowed; default the model's own.

    Raises:
        ConfigError: ``max_length`` above the window, or nothing to fetch from.
        ModelLoadError: an architecture that is not a supported decoder reranker.
    """
    if isinstance(config, CustomConfig):
        model_id = model_id or config.model_id
        revision = revision or config.revision
    if folder is None:
        if model_id is None:
            raise ConfigError("no model id to fetch the decoder reranker from")
        folder = fetch_checkpoint_folder(model_id, revision, config.cache_dir)
    family, spec = decoder_family(folder, model_id, getattr(config, "rule", None))
    limit = window or _window(folder, spec)
    if config.max_length is not None and config.max_length > limit:
        raise ConfigError(
            f"max_length {config.max_length} exceeds the model's window of {limit} tokens")
    # A family whose authors default to a shorter prompt (FlagEmbedding's 512) says so.
    default_window = getattr(importlib.import_module(family.prompt or ""), "default_window", None)
    default = default_window(folder) if default_window else DEFAULT_DECODER_MAX_LENGTH
    return config.display_name, folder, config.max_length or min(limit, default)


def load_decoder_backend(
    config: PresetConfig | CustomConfig, folder: Path | None = None, *,
    model_id: str | None = None, revision: str | None = None, window: int | None = None,
) -> DecoderRerankerBackend | VisionRerankerBackend:
    """Build the decoder backend a config names (files as :func:`locate_decoder` finds them);
    a vision-language family (``pixel_values`` among its inputs) gets
    :class:`~reranker.backends.vision.VisionRerankerBackend`."""
    name, folder, max_length = locate_decoder(
        config, folder, model_id=model_id, revision=revision, window=window)
    source = model_id or (config.model_id if isinstance(config, CustomConfig) else None)
    family, _ = decoder_family(folder, source, getattr(config, "rule", None))
    if "pixel_values" in family.inputs:  # a vision-language reranker: images and text
        from reranker.backends.vision import VisionRerankerBackend

        return VisionRerankerBackend(name, folder, max_length, config, model_id=source)
    return DecoderRerankerBackend(name, folder, max_length, config, model_id=source)
