"""Vision-language rerankers (Qwen3-VL-Reranker) run with ONNX Runtime in this process.

The decoder runner's three steps, with the images in front:

1. **Preprocess** (off the hot path): each distinct image of a request is decoded with a bounded
   pixel count (:mod:`reranker.models.vision.images`), resized and cut into patches as the
   authors do (:mod:`reranker.models.vision.qwen_vl`); prompts are tokenized with each image
   expanded to its merged-token count and given their 3-D positions
   (:mod:`reranker.models.prompts.qwen3_vl`).
2. **Run**: the vision graph once per distinct image (images of one grid in one run, as many as
   the run memory budget allows), then the text decoder over length-grouped, left-padded rows
   with the image features scattered in.
3. **Post-process**: the graph's one column is ``logit_yes - logit_no`` (raw); the library's
   sigmoid is the authors' score.

Image tokens are tokens: they count against ``max_length``, ``max_tokens_per_batch``,
``max_request_tokens`` and the run memory budget like text tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

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
from reranker.config import LocalModelConfig
from reranker.errors import (
    ConfigError,
    InvalidInputError,
    ModelLoadError,
    RequestTooLargeError,
    RerankerError,
)
from reranker.models.build import built_model, quantize_int8
from reranker.models.checkpoint import read_config
from reranker.models.family import GraphOptions
from reranker.models.prompts.qwen3_vl import DEFAULT_INSTRUCTION, Part, PromptTokenizer, Row
from reranker.models.vision.images import ImageLimits, decode_image
from reranker.models.vision.inputs import VisualPart, visual_part
from reranker.models.vision.qwen3_vl_tower import VisionShape, read_vision_shape
from reranker.models.vision.qwen_vl import (
    ImagePatches,
    VisionPreprocess,
    grid_inputs,
    patchify,
)
from reranker.optimize import default_cache_root
from reranker.types import DECODER_TRUNCATION_FIELDS, Truncation

__all__ = ["VisionRerankerBackend"]

DEFAULT_VISION_TOKENS_PER_BATCH = 8192


@dataclass(frozen=True)
class _Encoded:
    embeds: np.ndarray  # [tokens, hidden]
    deep: np.ndarray  # [levels, tokens, hidden]


class VisionRerankerBackend(InProcessBackend):
    """A Qwen3-VL reranker from a safetensors checkpoint folder; queries and documents are
    text or ``{"text": ..., "image": ...}`` (:func:`~reranker.models.vision.inputs.visual_part`).

    Args:
        name: display name.
        folder: ``config.json``, ``preprocessor_config.json``, safetensors, ``tokenizer.json``.
        max_length: tokens per prompt, image tokens and template included.
        options: batching, threading, optimization and memory settings.
        model_id: the Hub repo id (picks the family where the table lists it).
        image_limits: bytes and decoded pixels one image may have.
        min_pixels, max_pixels: the resize bounds (default the authors' 4 and 1800 tokens).
    """

    scores_are_probabilities = False
    truncation_fields: frozenset[str] = DECODER_TRUNCATION_FIELDS
    takes_instruction = True
    takes_images = True

    def __init__(self, name: str, folder: Path, max_length: int, options: LocalModelConfig,
                 model_id: str | None = None, *, image_limits: ImageLimits | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        from reranker.backends.decoder import decoder_family

        if options.long_documents != "truncate":
            raise ConfigError("long_documents 'chunk' is not implemented for vision rerankers")
        if options.score_cache_size:
            raise ConfigError("score_cache_size is not implemented for vision rerankers; use 0")
        if options.device != "cpu":
            raise ConfigError("vision rerankers run on CPU ('device': 'cpu')")
        self.name, self.max_length, self.options = name, max_length, options
        self.family, self.spec = decoder_family(folder, model_id, getattr(options, "rule", None))
        self.vision: VisionShape = read_vision_shape(read_config(folder), str(folder))
        self.preprocess = VisionPreprocess.from_folder(folder, min_pixels=min_pixels,
                                                       max_pixels=max_pixels)
        p, v = self.preprocess, self.vision
        if (p.patch_size, p.temporal_patch_size, p.merge_size) != (
                v.patch_size, v.temporal_patch_size, v.spatial_merge_size):
            raise ModelLoadError(f"{folder}: preprocessor_config.json and vision_config disagree "
                                 "on patch, temporal patch or merge size")
        self.image_limits = image_limits or ImageLimits()
        self.tokenizer = PromptTokenizer(folder / "tokenizer.json", max_length)
        self.instruction = options.instruction or DEFAULT_INSTRUCTION
        self.budget = options.max_run_memory_mb * 2**20
        one_row = self.spec.run_memory_bytes(1, max_length)
        largest = self.preprocess.max_pixels // self.preprocess.patch_size**2
        one_image = self.vision.run_memory_bytes(1, largest)
        for need, what in ((one_row, f"max_length {max_length}"),
                           (one_image, f"max_pixels {self.preprocess.max_pixels}")):
            if need > self.budget:
                raise ConfigError(
                    f"{what} needs about {need / 2**20:.0f} MB per ONNX run of {name}, over "
                    f"max_run_memory_mb={options.max_run_memory_mb}; lower it or raise "
                    "max_run_memory_mb")
        self.tokens_per_batch = options.max_tokens_per_batch or DEFAULT_VISION_TOKENS_PER_BATCH
        cache_root = default_cache_root(options.cache_dir)
        text = built_model(folder, cache_root, external_data_bytes=0, family=self.family,
                           options=GraphOptions(head_kind="score_row",
                                                token_ids=self.tokenizer.head_token_ids))
        tower = built_model(folder, cache_root, external_data_bytes=0, family=self.family,
                            options=GraphOptions(head_kind="vision"))
        if options.optimization == "int8":
            text, tower = quantize_int8(text), quantize_int8(tower)
        self.model_files = (tower, text)
        self._tower, self._text = self._session(tower), self._session(text)

    def _session(self, path: Path) -> Any:
        import onnxruntime as ort

        from reranker.onnx_model import default_threads

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types
            raise ModelLoadError(f"cannot load ONNX model {path}: {exc}") from exc

    # -- preprocessing -------------------------------------------------------------------

    def _part(self, value: object, field: str) -> VisualPart:
        return visual_part(value, field, self.image_limits)

    def _patches(self, data: bytes, field: str) -> ImagePatches:
        return patchify(decode_image(data, field=field, limits=self.image_limits),
                        self.preprocess)

    def encode(self, item: ScoreItem) -> tuple[list[Row], dict[str, ImagePatches],
                                                list[list[str]]]:
        """Rows, the distinct images by content hash, and each row's image hashes in order."""
        where = item.truncation.field if item.truncation else "documents"
        query = self._part(item.query, "query")
        docs = [self._part(d, f"{where}[{i}]") for i, d in enumerate(item.documents)]
        images: dict[str, ImagePatches] = {}
        m = self.preprocess.merge_size

        def grids(part: VisualPart, field: str) -> tuple[list[str], list[tuple[int, int, int]]]:
            keys, out = [], []
            for j, data in enumerate(part.images):
                key = hashlib.sha256(data).hexdigest()
                if key not in images:
                    name = f"{field}.image" if len(part.images) == 1 else f"{field}.image[{j}]"
                    images[key] = self._patches(data, name)
                t, h, w = images[key].grid
                keys.append(key)
                out.append((t, h // m, w // m))
            return keys, out

        q_keys, q_grids = grids(query, "query")
        rows: list[Row] = []
        order: list[list[str]] = []
        q_part = Part(query.text, tuple(q_grids))
        for i, doc in enumerate(docs):
            d_keys, d_grids = grids(doc, f"{where}[{i}]")
            cut = replace(item.truncation, index_offset=(item.truncation.index_offset + i)
                          ) if item.truncation else Truncation(index_offset=i)
            rows += self.tokenizer.encode(self.instruction if item.instruction is None
                                          else item.instruction, q_part,
                                          [Part(doc.text, tuple(d_grids))], cut)
            order.append(q_keys + d_keys)
        limit = self.options.max_request_tokens
        total = sum(len(r.ids) for r in rows)
        if limit is not None and total > limit:
            raise RequestTooLargeError(
                f"the request takes {total} tokens (image tokens included); the limit is "
                f"{limit} (max_request_tokens)", param="max_request_tokens")
        return rows, images, order

    # -- runs ----------------------------------------------------------------------------

    def _encode_images(self, images: Mapping[str, ImagePatches]) -> dict[str, _Encoded]:
        by_grid: dict[tuple[int, int, int], list[str]] = {}
        for key, patches in images.items():
            by_grid.setdefault(patches.grid, []).append(key)
        out: dict[str, _Encoded] = {}
        for grid, keys in by_grid.items():
            n = grid[0] * grid[1] * grid[2]
            per_run = max(1, self.budget // self.vision.run_memory_bytes(1, n))
            pos = grid_inputs(grid, self.preprocess.merge_size,
                              self.vision.num_position_embeddings)
            for start in range(0, len(keys), per_run):
                chunk = keys[start:start + per_run]
                embeds, deep = self._tower.run(None, {
                    "pixel_values": np.stack([images[k].pixel_values for k in chunk]),
                    "pos_index": pos.pos_index, "pos_weight": pos.pos_weight,
                    "rope_positions": pos.rope_positions})
                for j, key in enumerate(chunk):
                    out[key] = _Encoded(embeds[j], deep[:, j])
        return out

    def _batches(self, rows: Sequence[Row]) -> list[list[int]]:
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        batches: list[list[int]] = []
        for i in order:
            if batches:
                last = batches[-1]
                longest = len(rows[last[0]].ids)
                n = len(last) + 1
                if (n <= self.options.batch_size and n * longest <= self.tokens_per_batch
                        and self.spec.run_memory_bytes(n, longest) <= self.budget):
                    last.append(i)
                    continue
            batches.append([i])
        return batches

    def _run_rows(self, rows: Sequence[Row], order: Sequence[Sequence[str]],
                  encoded: Mapping[str, _Encoded]) -> np.ndarray:
        scores = np.empty(len(rows), np.float32)
        hidden = self.spec.hidden_size
        for batch in self._batches(rows):
            width = len(rows[batch[0]].ids)
            ids = np.full((len(batch), width), self.tokenizer.pad_id, np.int64)
            mask = np.zeros_like(ids)
            positions = np.ones((3, len(batch), width), np.int64)
            index: list[np.ndarray] = []
            embeds: list[np.ndarray] = []
            deep: list[np.ndarray] = []
            for b, r in enumerate(batch):
                row, offset = rows[r], width - len(rows[r].ids)
                ids[b, offset:] = row.ids
                mask[b, offset:] = 1
                positions[:, b, offset:] = row.positions
                at = np.flatnonzero(np.asarray(row.ids) == self.tokenizer.image_pad)
                index.append(b * width + offset + at)
                features = [encoded[k] for k in order[r]]
                embeds += [f.embeds for f in features]
                deep += [f.deep for f in features]
            levels = len(self.vision.deepstack_visual_indexes)
            (logits,) = self._text.run(None, {
                "input_ids": ids, "attention_mask": mask, "position_ids": positions,
                "image_index": np.concatenate(index).astype(np.int64),
                "image_embeds": (np.concatenate(embeds) if embeds
                                 else np.zeros((0, hidden), np.float32)),
                "deepstack_embeds": (np.concatenate(deep, axis=1) if deep
                                     else np.zeros((levels, 0, hidden), np.float32)),
            })
            scores[batch] = logits[:, 0]
        return scores

    # -- the backend contract --------------------------------------------------------------

    def _checked(self, item: ScoreItem) -> ScoreItem:
        where = f"backend {self.name!r}"
        instruction = check_instruction(where, self.takes_instruction, item.instruction)
        cut = check_truncation(where, self.truncation_fields, item.truncation)
        return replace(item, truncation=cut, instruction=instruction)

    def score(self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
              instruction: str | None = None) -> np.ndarray:
        """``logit_yes - logit_no`` per document, in input order (float32); ``query`` and
        each document are text or ``{"text": ..., "image": ...}``.

        Raises:
            InvalidInputError: a malformed document or image, an undecodable image, a prompt
                that does not fit; ``ImageTooLargeError`` (413) for an image over the limits.
        """
        result = self.score_batch([ScoreItem(query, documents, truncation, instruction)])[0]
        if isinstance(result, RerankerError):
            raise result
        return result

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """One score array per item; an item with bad input gets its error, the others run."""
        prepared: list[tuple[list[Row], list[list[str]]] | RerankerError] = []
        images: dict[str, ImagePatches] = {}
        for item in items:
            try:
                rows, found, order = self.encode(self._checked(item))
            except InvalidInputError as exc:
                prepared.append(exc)
                continue
            images.update(found)
            prepared.append((rows, order))
        all_rows = [r for p in prepared if not isinstance(p, RerankerError) for r in p[0]]
        all_order = [o for p in prepared if not isinstance(p, RerankerError) for o in p[1]]
        try:
            scores = self._run_rows(all_rows, all_order, self._encode_images(images)) if (
                all_rows) else np.empty(0, np.float32)
        except Exception as exc:
            failed = as_reranker_error(self.name, exc)
            return [p if isinstance(p, RerankerError) else failed for p in prepared]
        out: list[ItemScores] = []
        start = 0
        for p in prepared:
            if isinstance(p, RerankerError):
                out.append(p)
                continue
            rows = p[0]
            out.append(ScoredArray.of(scores[start:start + len(rows)],
                                      tokens=sum(len(r.ids) for r in rows)))
            start += len(rows)
        return cast(list[ItemScores], out)

    def close(self) -> None:
        """Nothing to stop: the sessions run in the caller's thread."""

    def __repr__(self) -> str:
        return f"VisionRerankerBackend({self.name!r}, max_length={self.max_length})"
