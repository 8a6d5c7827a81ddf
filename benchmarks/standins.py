"""Stand-ins for the presets: the exact architecture, deterministic weights, a counted vocabulary.

``build_preset_standin(folder, "fast")`` writes what ``Xenova/ms-marco-MiniLM-L-6-v2`` holds
(``config.json``, tokenizer files, ``model.safetensors``, ``onnx/model.onnx`` and, with
``quantize=True``, ``onnx/model_quantized.onnx``) at the preset's sizes, so speed and memory
measured on it are those of the real model. Only the weights differ: they are random, so scores
carry no meaning, but every FLOP is there.

The tokenizer's vocabulary (WordPiece for BERT, Unigram for XLM-R) is counted from English text
that ships with Python (:mod:`benchmarks.corpus`, :mod:`benchmarks.vocabulary`)
and padded with unused entries to the preset's size, so real text splits into a realistic
number of tokens.

The ONNX graph is exported with ``torch.onnx`` from the transformers model over the same
safetensors, as the Hub's ONNX files were (eager attention, TorchScript exporter), when torch is
installed; ONNX Runtime's transformer fusions recognise that graph. Without torch the
hand-written graph of :mod:`reranker.testing.onnx_graph` is written instead (same scores, but
only its layer norms fuse).
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.vocabulary import unigram_pieces, wordpiece_vocab
from reranker.testing.families.encoder_models import onnx_model_path, save_onnx
from reranker.testing.spec import CrossEncoderSpec, hf_config, make_weights
from reranker.testing.tokenizers import save_bert_tokenizer, save_xlmr_tokenizer

__all__ = [
    "PRESET_ARCHITECTURES",
    "StandinArchitecture",
    "build_preset_standin",
    "export_with_torch",
    "write_counted_bert_tokenizer",
    "write_counted_xlmr_tokenizer",
]

Exporter = Literal["auto", "torch", "graph"]
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_SPM_SPACE = "\u2581"
_WORD_OR_SYMBOL = re.compile("\u2581?[^\\W_]+|\u2581?[\\W_]")
# Protobuf cannot hold a model over 2 GiB; bigger graphs keep their weights beside them.
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class StandinArchitecture:
    """Sizes of a preset's model, as in its ``config.json`` on the Hub."""

    arch: str
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_length: int = 512

    @property
    def parameters(self) -> int:
        """Weights, embeddings included (the head's few are left out)."""
        h, i = self.hidden_size, self.intermediate_size
        per_layer = 4 * h * h + 2 * h * i + 9 * h + i
        return self.vocab_size * h + (self.max_length + 2) * h + self.num_layers * per_layer


PRESET_ARCHITECTURES: dict[str, StandinArchitecture] = {
    # cross-encoder/ms-marco-MiniLM-L-6-v2
    "fast": StandinArchitecture("bert", 6, 384, 12, 1536, 30522),
    # BAAI/bge-reranker-base (XLM-RoBERTa base)
    "balanced": StandinArchitecture("xlmr", 12, 768, 12, 3072, 250002),
    # BAAI/bge-reranker-large (XLM-RoBERTa large)
    "quality": StandinArchitecture("xlmr", 24, 1024, 16, 4096, 250002),
}


def build_preset_standin(
    folder: str | Path,
    name: str,
    *,
    quantize: bool = True,
    seed: int = 0,
    num_labels: int = 1,
    exporter: Exporter = "auto",
) -> Path:
    """Write a stand-in model folder for preset ``name``; returns ``folder``.

    Args:
        name: a key of :data:`PRESET_ARCHITECTURES` (``fast``, ``balanced``, ``quality``).
        quantize: also write ``onnx/model_quantized.onnx``, dynamic int8 of the unfused export
            like the Hub's quantized files.
        seed: the same seed gives the same weights.
        exporter: ``"torch"`` (torch.onnx, as the Hub files), ``"graph"`` (the hand-written
            graph, no torch needed) or ``"auto"`` (torch when installed).

    Example::

        folder = build_preset_standin(tmp_path / "fast", "fast")
        Reranker({"type": "custom", "model_id": str(folder)})
    """
    if name not in PRESET_ARCHITECTURES:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESET_ARCHITECTURES)}")
    arch = PRESET_ARCHITECTURES[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if arch.arch == "bert":
        write_counted_bert_tokenizer(folder, arch.vocab_size, arch.max_length)
    else:
        write_counted_xlmr_tokenizer(folder, arch.vocab_size, arch.max_length)
    spec = CrossEncoderSpec(
        arch=arch.arch,
        num_labels=num_labels,
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        num_heads=arch.num_heads,
        intermediate_size=arch.intermediate_size,
        max_length=arch.max_length,
        vocab_size=arch.vocab_size,
    )
    weights = make_weights(spec, seed)
    (folder / "config.json").write_text(json.dumps(hf_config(spec), indent=2) + "\n")
    from safetensors.numpy import save_file

    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model_path = onnx_model_path(folder)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    use_torch = exporter == "torch" or (
        exporter == "auto" and importlib.util.find_spec("torch") is not None
    )
    if use_torch:
        del weights  # torch reads them back from model.safetensors; keep one copy in memory
        export_with_torch(folder)
    else:
        from reranker.testing.onnx_graph import build_onnx_model

        _save(build_onnx_model(spec, weights), model_path)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            model_path,
            onnx_model_path(folder, quantized=True),
            weight_type=QuantType.QInt8,
            use_external_data_format=model_path.with_name(model_path.name + "_data").exists(),
        )
    return folder


def export_with_torch(folder: str | Path, target: str | Path | None = None) -> Path:
    """Export ``folder``'s safetensors model to ONNX the way the Hub's files were made.

    transformers' eager attention and torch's TorchScript exporter (opset 17) give the graph
    that ONNX Runtime's transformer fusions recognise. Writes ``onnx/model.onnx`` unless
    ``target`` says otherwise; returns the path. Needs torch and transformers.
    """
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    target = Path(target) if target is not None else onnx_model_path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    bert = json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), attn_implementation="eager"
    ).eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if bert else [])
    ids = torch.full((2, 16), 7, dtype=torch.long)
    args = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if bert else ())
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on Python-side shape checks do not apply to fixed-rank encoders.
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            args,
            str(raw),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch_size"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
        del model
        _save(onnx.load(str(raw)), target)
    return target


def _save(model: object, path: Path) -> None:
    import onnx

    assert isinstance(model, onnx.ModelProto)
    external = model.ByteSize() > _EXTERNAL_DATA_BYTES
    save_onnx(model, path, external_data=external, size_threshold=1024)


def _corpus_words(normalizer, pre_tokenizer) -> Counter[str]:  # type: ignore[no-untyped-def]
    from benchmarks.corpus import training_texts

    counts: Counter[str] = Counter()
    for text in training_texts():
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _bert_normalizer():  # type: ignore[no-untyped-def]
    from tokenizers import normalizers

    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )


def write_counted_bert_tokenizer(folder: Path, vocab_size: int, max_length: int) -> int:
    """A lower-casing WordPiece tokenizer counted from Python's English text; returns its size."""
    from tokenizers import pre_tokenizers

    words = _corpus_words(_bert_normalizer(), pre_tokenizers.BertPreTokenizer())
    tokens = wordpiece_vocab(words, _BERT_SPECIALS, size=vocab_size)
    return save_bert_tokenizer(folder, tokens, model_max_length=max_length)


def _xlmr_pre_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=_SPM_SPACE, prepend_scheme="always"),
        ]
    )


def _xlmr_normalizer():  # type: ignore[no-untyped-def]
    from tokenizers import Regex, normalizers

    return normalizers.Sequence([normalizers.Replace(Regex(" {2,}"), " ")])


def write_counted_xlmr_tokenizer(folder: Path, vocab_size: int, max_length: int) -> int:
    """A cased Unigram tokenizer counted from Python's English text, laid out like XLM-R's.

    The pipeline is the one :func:`reranker.testing.write_xlmr_tokenizer` documents (what
    transformers rebuilds for ``XLMRobertaTokenizer``), so transformers and ``tokenizers``
    produce the same ids.
    """
    # Punctuation is counted apart from the word it is attached to, as in a vocabulary trained
    # on a large corpus, where "word," is rarely a piece but "word" and "," are.
    words: Counter[str] = Counter()
    for word, count in _corpus_words(_xlmr_normalizer(), _xlmr_pre_tokenizer()).items():
        for part in _WORD_OR_SYMBOL.findall(word):
            words[part] += count
    pieces = unigram_pieces(words, _XLMR_SPECIALS, size=vocab_size, space=_SPM_SPACE)
    return save_xlmr_tokenizer(folder, pieces, model_max_length=max_length)


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
