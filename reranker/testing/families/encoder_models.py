"""Deterministic tiny cross-encoder model folders, laid out like the Hub repositories.

A built folder holds what ``Xenova/ms-marco-MiniLM-L-6-v2`` or ``Xenova/bge-reranker-base``
hold: ``config.json``, the tokenizer files, ``model.safetensors`` (Hugging Face weight names, so
transformers can load the folder) and ``onnx/model.onnx`` (optionally with its weights in
``onnx/model.onnx_data``, like ``onnx-community/bge-reranker-v2-m3-ONNX``).

Example::

    folder = build_cross_encoder(tmp_path / "bert", arch="bert", num_labels=1)
    session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reranker.testing.onnx_graph import build_onnx_model
from reranker.testing.spec import CrossEncoderSpec, hf_config, make_weights
from reranker.testing.tokenizers import write_tokenizer

if TYPE_CHECKING:
    import onnx

__all__ = ["LAYOUTS", "build_broken_models", "build_cross_encoder", "onnx_model_path"]

LAYOUTS: dict[str, str] = {"xenova": "onnx", "flat": ""}
"""Where ``model.onnx`` goes: ``onnx/model.onnx`` (Xenova, onnx-community) or the folder root."""


def onnx_model_path(folder: str | Path, layout: str = "xenova", *, quantized: bool = False) -> Path:
    """The path of the ONNX file that :func:`build_cross_encoder` writes for ``layout``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    name = "model_quantized.onnx" if quantized else "model.onnx"
    return Path(folder) / LAYOUTS[layout] / name


def build_cross_encoder(
    folder: str | Path,
    *,
    arch: str = "bert",
    num_labels: int = 1,
    num_layers: int = 2,
    hidden_size: int = 32,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    vocab_size: int | None = None,
    seed: int = 0,
    external_data: bool = False,
    quantize: bool = False,
    layout: str = "xenova",
    embedded_tokenizer_settings: bool = False,
) -> Path:
    """Build a cross-encoder folder with deterministic weights; returns ``folder``.

    Args:
        arch: ``"bert"`` or ``"electra"`` (inputs ``input_ids``, ``attention_mask``,
            ``token_type_ids``) or ``"xlmr"`` (``input_ids``, ``attention_mask``).
        num_labels: width of ``logits``; rerankers have 1 (sigmoid) or 2 (softmax).
        max_position_embeddings: tokens the model reads, also the tokenizer's
            ``model_max_length``; XLM-R's ``config.json`` says two more, as on the Hub.
        vocab_size: pad the tokenizer vocabulary with synthetic tokens up to this size (e.g.
            30522 for a MiniLM-sized benchmark model); ``None`` keeps the built-in one.
        seed: the same seed gives byte-identical weights.
        external_data: keep the ONNX weights in ``model.onnx_data`` next to ``model.onnx``.
        quantize: also write ``model_quantized.onnx`` (dynamic int8, as the "fast" preset).
        layout: a key of :data:`LAYOUTS`.
        embedded_tokenizer_settings: write truncation/padding into ``tokenizer.json``.
    """
    model_path = onnx_model_path(folder, layout)
    folder = Path(folder)
    vocab = write_tokenizer(
        folder,
        "bert" if arch == "electra" else arch,  # ELECTRA checkpoints use BERT's WordPiece
        vocab_size=vocab_size,
        model_max_length=max_position_embeddings,
        embedded_settings=embedded_tokenizer_settings,
    )
    spec = CrossEncoderSpec(
        arch=arch,
        num_labels=num_labels,
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_length=max_position_embeddings,
        vocab_size=vocab,
    )
    weights = make_weights(spec, seed)
    (folder / "config.json").write_text(json.dumps(hf_config(spec), indent=2) + "\n")
    _save_safetensors(weights, folder / "model.safetensors")
    save_onnx(build_onnx_model(spec, weights), model_path, external_data=external_data)
    if quantize:
        _quantize(model_path, onnx_model_path(folder, layout, quantized=True))
    return folder


def build_broken_models(folder: str | Path, *, arch: str = "bert") -> dict[str, Path]:
    """Build model folders that a loader must reject, one sub-folder each.

    Each is a complete folder (config, tokenizer, safetensors, ``onnx/model.onnx``) except for:

    * ``"three_logits"``: ``logits`` is ``[batch, 3]``, neither a 1- nor a 2-logit head.
    * ``"no_head"``: an export without the classification head; its output is still named
      ``logits`` but is the last hidden state ``[batch, seq, hidden]``.
    * ``"not_onnx"``: ``onnx/model.onnx`` is plain text.
    """
    folder = Path(folder)
    built = {
        "three_logits": build_cross_encoder(folder / "three_logits", arch=arch, num_labels=3),
        "no_head": build_cross_encoder(folder / "no_head", arch=arch),
        "not_onnx": build_cross_encoder(folder / "not_onnx", arch=arch),
    }
    # The same sizes and seed as build_cross_encoder's defaults, so only the head is missing.
    spec = CrossEncoderSpec(
        arch=arch,
        num_labels=1,
        num_layers=2,
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        max_length=128,
        vocab_size=_vocab_size(built["no_head"]),
    )
    headless = build_onnx_model(spec, make_weights(spec, seed=0), head=False)
    save_onnx(headless, onnx_model_path(built["no_head"]), external_data=False)
    onnx_model_path(built["not_onnx"]).write_text("this is not an ONNX model\n")
    return built


def _vocab_size(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["vocab_size"])


def _save_safetensors(weights: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    # transformers only loads safetensors files that declare the "pt" format.
    save_file(weights, str(path), metadata={"format": "pt"})


def save_onnx(
    model: onnx.ModelProto, path: Path, *, external_data: bool, size_threshold: int = 0
) -> None:
    """Save ``model`` at ``path``; with ``external_data`` its tensors go to ``<name>_data``."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + "_data")
    if data.exists():
        data.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external_data,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=size_threshold,
    )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8)
