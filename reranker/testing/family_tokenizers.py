"""Tokenizers for the decoder-family stand-ins, written offline from the fixed word list.

Three pipelines, each the one ``transformers`` builds for the real repository's tokenizer class,
so that ``AutoTokenizer`` (the references' tokenizer) and ``tokenizers`` (the runtime's) agree:

* byte-level BPE with the Qwen2 pre-tokenizer (``Qwen2Tokenizer``: mxbai-rerank v2, zerank) or
  the Llama 3 one (``PreTrainedTokenizerFast`` with a ``<|begin_of_text|>`` template: Nemotron);
* SentencePiece-style BPE with byte fallback, spaces as ``▁`` (``GemmaTokenizer``: no prefix
  space, ``<bos>`` first) or Metaspace with a prefix space (``LlamaTokenizer``: MiniCPM, ``<s>``
  first).

Every word of the list becomes one token (with and without its leading space), so prompts take
few tokens; other text falls back to bytes, as real tokenizers do for rare characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reranker.testing.wordlist import ENGLISH_WORDS, NON_ASCII_WORDS, SUFFIXES

__all__ = [
    "LLAMA3_PRETOKENIZE_REGEX",
    "QWEN2_PRETOKENIZE_REGEX",
    "write_bytelevel_tokenizer",
    "write_sentencepiece_tokenizer",
]

QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPM_SPACE = "\u2581"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (the byte-level alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _words(extra: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for word in [*extra, *ENGLISH_WORDS, *NON_ASCII_WORDS]:
        for form in (word, word.capitalize()):
            out.setdefault(form, None)
    return list(out)


class _Merges:
    """A BPE vocabulary grown one left-to-right merge at a time."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.merges: list[tuple[str, str]] = []

    def add(self, left: str, right: str) -> str:
        merged = left + right
        if merged not in self.vocab:
            self.vocab[merged] = len(self.vocab)
            self.merges.append((left, right))
        return merged

    def chain(self, pieces: Sequence[str]) -> str:
        current = pieces[0]
        for piece in pieces[1:]:
            current = self.add(current, piece)
        return current


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _added(tok: Any, specials: Sequence[str], plain: Sequence[str]) -> dict[str, Any]:
    return {
        str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "special": t in specials}
        for t in (*specials, *plain)
    }


def write_bytelevel_tokenizer(
    folder: str | Path,
    *,
    specials: Sequence[str],
    plain_added: Sequence[str] = (),
    extra_words: Sequence[str] = (),
    regex: str = QWEN2_PRETOKENIZE_REGEX,
    bos: str | None = None,
    tokenizer_config: dict[str, Any],
) -> int:
    """A byte-level BPE ``tokenizer.json`` (+ config files); returns the tokenizer's size.

    Args:
        specials: special added tokens, in id order after the BPE vocabulary.
        plain_added: non-special added tokens (Qwen3's ``<think>``).
        extra_words: template words merged first (the prompt's words, ``Yes``...).
        regex: the pre-tokenizer's split pattern.
        bos: a token the post-processor puts first (Llama 3's ``<|begin_of_text|>``).
        tokenizer_config: ``tokenizer_config.json`` fields (``added_tokens_decoder`` is added).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    byte_map = _bytes_to_unicode()
    grow = _Merges({byte_map[b]: i for i, b in enumerate(sorted(byte_map))})
    space = byte_map[ord(" ")]
    for word in _words(extra_words):
        grow.add(space, grow.chain([byte_map[b] for b in word.encode("utf-8")]))
    for suffix in SUFFIXES:
        grow.chain([byte_map[b] for b in suffix.encode("utf-8")])
    tok = Tokenizer(models.BPE(grow.vocab, grow.merges, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain_added])
    byte_level = processors.ByteLevel(trim_offsets=False)
    if bos is None:
        tok.post_processor = byte_level
    else:
        template = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
            special_tokens=[(bos, tok.token_to_id(bos))])
        tok.post_processor = processors.Sequence([byte_level, template])
    tok.save(str(folder / "tokenizer.json"))
    config = dict(tokenizer_config)
    config["added_tokens_decoder"] = _added(tok, specials, plain_added)
    _write_json(folder / "tokenizer_config.json", config)
    named = {k: v for k, v in config.items()
             if k in ("bos_token", "eos_token", "pad_token", "unk_token") and v is not None}
    _write_json(folder / "special_tokens_map.json", named)
    return int(tok.get_vocab_size(with_added_tokens=True))


def write_sentencepiece_tokenizer(
    folder: str | Path,
    *,
    style: str,
    specials: Sequence[str],
    bos: str,
    extra_words: Sequence[str] = (),
    tokenizer_config: dict[str, Any],
) -> int:
    """A SentencePiece-style BPE ``tokenizer.json`` with byte fallback; returns its size.

    Args:
        style: ``"gemma"`` (spaces replaced by ``▁``, no prefix space) or ``"llama"``
            (Metaspace, a ``▁`` before the first word).
        specials: special tokens with ids 0.. in order (Gemma: pad, eos, bos, unk).
        bos: the token the post-processor puts first.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    grow = _Merges(vocab)
    letters = sorted({c for w in _words(extra_words) for c in w} | set("".join(SUFFIXES))
                     | set("0123456789.,:;!?'\"()-_/+=*%&#@$[]{}<>|~^`\\\n\t") | {_SPM_SPACE})
    for c in letters:
        vocab.setdefault(c, len(vocab))
    for word in _words(extra_words):
        chars = list(word)
        grow.add(_SPM_SPACE, grow.chain(chars) if len(chars) > 1 else chars[0])
    for suffix in SUFFIXES:
        if len(suffix) > 1:
            grow.chain(list(suffix))
    unk = "<unk>" if "<unk>" in vocab else None
    tok = Tokenizer(models.BPE(vocab, grow.merges, byte_fallback=True, fuse_unk=True,
                               unk_token=unk))
    if style == "gemma":
        tok.normalizer = normalizers.Replace(" ", _SPM_SPACE)
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous",
                                                 invert=False)
        tok.decoder = decoders.Sequence([decoders.Replace(_SPM_SPACE, " "),
                                         decoders.ByteFallback(), decoders.Fuse()])
    elif style == "llama":
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPM_SPACE,
                                                     prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace(_SPM_SPACE, " "),
                                         decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        raise ValueError(f"unknown style {style!r}; valid: gemma, llama")
    tok.add_special_tokens(list(specials))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, vocab[bos])])
    tok.save(str(folder / "tokenizer.json"))
    config = dict(tokenizer_config)
    config["added_tokens_decoder"] = _added(tok, specials, ())
    _write_json(folder / "tokenizer_config.json", config)
    named = {k: v for k, v in config.items()
             if k in ("bos_token", "eos_token", "pad_token", "unk_token") and v is not None}
    _write_json(folder / "special_tokens_map.json", named)
    return int(tok.get_vocab_size(with_added_tokens=True))
