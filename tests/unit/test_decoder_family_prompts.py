"""The decoder families' prompt modules against the test kits' transformers-based prompts.

Each prompt module cuts token ids by hand (the authors' arithmetic on pre-tokenized pieces);
the kits build the same prompts with ``transformers`` tokenizers as the authors' code does.
They must agree id for id on short and long documents, small and default windows, with and
without instructions, and on non-ASCII text; the request's truncation fields act as documented.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reranker.errors import InputTooLongError
from reranker.models.prompts.flag_llm import FlagLLMPrompt
from reranker.models.prompts.mxbai_v2 import MxbaiV2Prompt
from reranker.models.prompts.nemotron import NemotronPrompt
from reranker.models.prompts.zerank import ZerankPrompt
from reranker.testing.families import bge_gemma, minicpm_layerwise, mxbai_v2, nemotron, zerank
from reranker.testing.wordlist import ENGLISH_WORDS
from reranker.types import Truncation

QUERY = "what is the capital of france?"
_rng = random.Random(0)
DOCS = ["", "short", " leading space", "Ünïcödé 東京 ça va? naïve café", "xxx",
        " ".join(_rng.choice(ENGLISH_WORDS) for _ in range(300)),
        "tab\there\nnewline  two  spaces", "!punct first"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prompts")
    return {mod.NAME: mod.make_checkpoint(root / mod.NAME)
            for mod in (mxbai_v2, bge_gemma, minicpm_layerwise, nemotron, zerank)}


@pytest.mark.parametrize("max_length", [8192, 100, 40])
@pytest.mark.parametrize("instruction", [None, "find the answer"])
def test_mxbai_v2_ids(folders: dict[str, Path], max_length: int, instruction: str | None) -> None:
    folder = folders["mxbai_v2"]
    got = MxbaiV2Prompt(folder, max_length).encode(instruction, QUERY, DOCS)
    assert got == mxbai_v2.encode(folder, QUERY, DOCS, max_length=max_length,
                                  instruction=instruction)


@pytest.mark.parametrize("name", ["bge_gemma", "minicpm_layerwise"])
@pytest.mark.parametrize("max_length", [512, 40, 20])
def test_flag_llm_ids(folders: dict[str, Path], name: str, max_length: int) -> None:
    always_bos = name == "minicpm_layerwise"
    got = FlagLLMPrompt(folders[name], max_length, always_bos=always_bos).encode(None, QUERY, DOCS)
    assert got == bge_gemma.flag_llm_encode(folders[name], QUERY, DOCS, max_length=max_length,
                                            always_bos=always_bos)


def test_gemma_puts_bos_first_and_layerwise_always(folders: dict[str, Path]) -> None:
    gemma = FlagLLMPrompt(folders["bge_gemma"])
    assert gemma.bos == [gemma.tokens.special_id("bos_token")]
    rows = gemma.encode(None, QUERY, ["x"])
    assert rows[0][0] == gemma.bos[0] and rows[0][-len(gemma.prompt):] == gemma.prompt


@pytest.mark.parametrize("max_length", [8192, 60, 30])
def test_nemotron_ids(folders: dict[str, Path], max_length: int) -> None:
    folder = folders["nemotron"]
    got = NemotronPrompt(folder, max_length).encode(None, QUERY, DOCS)
    assert got == nemotron.encode(folder, QUERY, DOCS, max_length=max_length)
    assert max(len(r) for r in got) <= max_length


@pytest.mark.parametrize("max_length", [40960, 60, 30, 12])
def test_zerank_ids(folders: dict[str, Path], max_length: int) -> None:
    folder = folders["zerank"]
    got = ZerankPrompt(folder, max_length).encode(None, QUERY, DOCS)
    assert got == zerank.encode(folder, QUERY, DOCS, max_length=max_length)
    if max_length >= 30:  # 12 holds less than the template: the query goes, nothing more
        assert max(len(r) for r in got) <= max_length


def test_truncation_fields(folders: dict[str, Path]) -> None:
    long_doc = DOCS[5]
    mx = MxbaiV2Prompt(folders["mxbai_v2"], 60)
    none = mx.encode(None, QUERY, [long_doc], Truncation(max_document_tokens=0))[0]
    capped = mx.encode(None, QUERY, [long_doc], Truncation(max_document_tokens=3))[0]
    assert len(capped) == len(none) + 3
    left = mx.encode(None, QUERY, [long_doc], Truncation(side="left"))[0]
    right = mx.encode(None, QUERY, [long_doc])[0]
    assert left != right and len(left) == len(right)
    with pytest.raises(InputTooLongError, match=r"documents\[1\]"):
        mx.encode(None, QUERY, ["fits", long_doc], Truncation(allow=False))
    zr = ZerankPrompt(folders["zerank"], 40)
    with pytest.raises(InputTooLongError):
        zr.encode(None, QUERY, [long_doc], Truncation(allow=False))
    for prompt in (FlagLLMPrompt(folders["bge_gemma"], 40),
                   NemotronPrompt(folders["nemotron"], 40)):
        short = prompt.encode(None, QUERY, [long_doc], Truncation(max_document_tokens=2))[0]
        assert len(short) < len(prompt.encode(None, QUERY, [long_doc])[0])
        with pytest.raises(InputTooLongError):
            prompt.encode(None, QUERY, [long_doc], Truncation(allow=False))
        assert prompt.encode(None, QUERY, ["fits"], Truncation(allow=False))
