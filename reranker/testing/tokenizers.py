"""Realistic tokenizer files for test models, built offline from a fixed word list.

Two families, laid out like the Hub repositories the presets use:

* BERT (``Xenova/ms-marco-MiniLM-L-6-v2``): WordPiece, lower-cased, accents stripped, pairs as
  ``[CLS] A [SEP] B [SEP]`` with token type ids 0 then 1.
* XLM-R (``Xenova/bge-reranker-*``): a SentencePiece-style Unigram model, cased, pairs as
  ``<s> A </s></s> B </s>`` with every token type id 0.

Each writer puts ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` in
a folder. With ``embedded_settings=True`` the ``tokenizer.json`` also carries truncation and
padding settings, as some Hub repositories do, so that tests can prove they are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from reranker.testing.wordlist import (
    CHARACTERS,
    ENGLISH_WORDS,
    NON_ASCII_CHARACTERS,
    NON_ASCII_WORDS,
    SUFFIXES,
)

__all__ = [
    "EMBEDDED_PADDING_LENGTH",
    "EMBEDDED_TRUNCATION_MAX_LENGTH",
    "write_bert_tokenizer",
    "write_tokenizer",
    "write_xlmr_tokenizer",
]

EMBEDDED_TRUNCATION_MAX_LENGTH = 16
"""``max_length`` of the truncation written into ``tokenizer.json`` by ``embedded_settings``."""

EMBEDDED_PADDING_LENGTH = 24
"""Fixed padding length written into ``tokenizer.json`` by ``embedded_settings``."""

_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_XLMR_MASK = "<mask>"
_SPM_SPACE = "\u2581"


def _padded(tokens: list[str], vocab_size: int | None, pattern: str, reserve: int = 0) -> list[str]:
    """Append synthetic tokens until ``len(tokens) + reserve == vocab_size``."""
    if vocab_size is None:
        return tokens
    missing = vocab_size - len(tokens) - reserve
    if missing < 0:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the built-in vocabulary "
            f"({len(tokens) + reserve} tokens)"
        )
    return tokens + [pattern.format(i) for i in range(missing)]


def _bert_normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )


def bert_vocab(vocab_size: int | None = None) -> list[str]:
    """The WordPiece vocabulary in id order: specials, characters, ``##`` pieces, words."""
    normalizer = _bert_normalizer()
    chars = list(CHARACTERS) + list(NON_ASCII_CHARACTERS)
    words = list(ENGLISH_WORDS)
    # Chinese characters are split apart by the normaliser, so only the others become words.
    normalized = (normalizer.normalize_str(w) for w in NON_ASCII_WORDS)
    words += [w for w in normalized if " " not in w]
    tokens = list(_BERT_SPECIALS) + chars + [f"##{c}" for c in chars]
    tokens += [f"##{s}" for s in SUFFIXES] + words
    tokens = list(dict.fromkeys(tokens))
    return _padded(tokens, vocab_size, "[unused{}]")


def xlmr_pieces(vocab_size: int | None = None) -> list[tuple[str, float]]:
    """The Unigram pieces with log-probability scores, in id order (``<mask>`` last)."""
    pieces: dict[str, float] = {s: 0.0 for s in _XLMR_SPECIALS}

    def add(piece: str, score: float) -> None:
        pieces.setdefault(piece, score)

    add(_SPM_SPACE, -3.0)
    for rank, word in enumerate(ENGLISH_WORDS):
        # Frequent words first, as in a trained model; capitalised forms are rarer.
        add(_SPM_SPACE + word, -5.0 - rank * 0.005)
        add(_SPM_SPACE + word.capitalize(), -7.0 - rank * 0.005)
    for rank, word in enumerate(NON_ASCII_WORDS):
        add(_SPM_SPACE + word, -6.0 - rank * 0.01)
        add(word, -6.5 - rank * 0.01)
    for rank, suffix in enumerate(SUFFIXES):
        add(suffix, -7.5 - rank * 0.01)
    chars = list(CHARACTERS) + list(NON_ASCII_CHARACTERS)
    chars += [c.upper() for c in chars if c.upper() != c and len(c.upper()) == 1]
    for char in chars:
        add(char, -9.0)
        add(_SPM_SPACE + char, -9.5)
    names = list(pieces)
    names = _padded(names, vocab_size, "<extra_{}>", reserve=1)
    scored = [(name, pieces.get(name, -20.0)) for name in names]
    return scored + [(_XLMR_MASK, 0.0)]


def _enable_embedded_settings(tok: Tokenizer, pad_id: int, pad_token: str) -> None:
    tok.enable_truncation(EMBEDDED_TRUNCATION_MAX_LENGTH, strategy="longest_first")
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, length=EMBEDDED_PADDING_LENGTH)


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_bert_tokenizer(
    folder: str | Path,
    *,
    vocab_size: int | None = None,
    model_max_length: int = 512,
    embedded_settings: bool = False,
) -> int:
    """Write a BERT WordPiece tokenizer into ``folder``; returns its vocabulary size.

    Args:
        vocab_size: pad the vocabulary with ``[unusedN]`` tokens up to this size (for models of a
            real size); ``None`` keeps the built-in vocabulary.
        model_max_length: written to ``tokenizer_config.json``.
        embedded_settings: also write truncation and padding into ``tokenizer.json``.
    """
    return save_bert_tokenizer(
        folder, bert_vocab(vocab_size), model_max_length=model_max_length,
        embedded_settings=embedded_settings,
    )


def save_bert_tokenizer(
    folder: str | Path,
    tokens: list[str],
    *,
    model_max_length: int = 512,
    embedded_settings: bool = False,
) -> int:
    """Write a lower-casing BERT WordPiece tokenizer over ``tokens`` (ids in list order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = _bert_normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(_BERT_SPECIALS))
    if embedded_settings:
        _enable_embedded_settings(tok, vocab["[PAD]"], "[PAD]")
    tok.save(str(folder / "tokenizer.json"))
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    _write_json(folder / "special_tokens_map.json", specials)
    config = {
        "tokenizer_class": "BertTokenizer",
        "model_max_length": model_max_length,
        "do_lower_case": True,
        "do_basic_tokenize": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "clean_up_tokenization_spaces": True,
        **specials,
    }
    _write_json(folder / "tokenizer_config.json", config)
    return len(vocab)


def write_xlmr_tokenizer(
    folder: str | Path,
    *,
    vocab_size: int | None = None,
    model_max_length: int = 512,
    embedded_settings: bool = False,
) -> int:
    """Write an XLM-R style Unigram tokenizer into ``folder``; returns its vocabulary size.

    A real XLM-R ``tokenizer.json`` normalises with a ``Precompiled`` (nmt_nfkc) charsmap, which
    cannot be built without sentencepiece. transformers v5 rebuilds ``XLMRobertaTokenizer`` from
    the vocabulary and keeps only such a charsmap, so any other normaliser here (NFKC) would make
    the reference tokenizer disagree with ``tokenizer.json`` on inputs such as full-width
    punctuation. The file therefore holds the pipeline transformers builds: whitespace split,
    then ``Metaspace``; only runs of spaces are collapsed by the normaliser.

    Args:
        vocab_size: pad with ``<extra_N>`` pieces up to this size (``<mask>`` stays last).
        model_max_length: written to ``tokenizer_config.json``.
        embedded_settings: also write truncation and padding into ``tokenizer.json``.
    """
    return save_xlmr_tokenizer(
        folder, xlmr_pieces(vocab_size), model_max_length=model_max_length,
        embedded_settings=embedded_settings,
    )


def save_xlmr_tokenizer(
    folder: str | Path,
    pieces: list[tuple[str, float]],
    *,
    model_max_length: int = 512,
    embedded_settings: bool = False,
) -> int:
    """Write an XLM-R style Unigram tokenizer over ``pieces`` (see :func:`write_xlmr_tokenizer`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=_SPM_SPACE, prepend_scheme="always"),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.decoder = decoders.Metaspace(replacement=_SPM_SPACE, prepend_scheme="always")
    tok.add_special_tokens([*_XLMR_SPECIALS, _XLMR_MASK])
    if embedded_settings:
        _enable_embedded_settings(tok, 1, "<pad>")
    tok.save(str(folder / "tokenizer.json"))
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": _XLMR_MASK,
    }
    _write_json(folder / "special_tokens_map.json", specials)
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": True,
        **specials,
    }
    _write_json(folder / "tokenizer_config.json", config)
    return len(pieces)


def write_tokenizer(
    folder: str | Path,
    arch: str,
    *,
    vocab_size: int | None = None,
    model_max_length: int = 512,
    embedded_settings: bool = False,
) -> int:
    """Write the tokenizer of ``arch`` (``"bert"`` or ``"xlmr"``); returns its vocabulary size."""
    writers = {"bert": write_bert_tokenizer, "xlmr": write_xlmr_tokenizer}
    if arch not in writers:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(writers)}")
    return writers[arch](
        folder,
        vocab_size=vocab_size,
        model_max_length=model_max_length,
        embedded_settings=embedded_settings,
    )
