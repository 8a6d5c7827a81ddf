"""Pair tokenization cuts before pairing: the ids are those ``tokenizers``' own truncation keeps,
the work is bounded by what is kept, and every window carries the template's type ids.

The reference here is ``tokenizers`` itself with truncation switched on (what ``transformers``
calls underneath), run on inputs small enough for its overflow windows to be cheap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY
from reranker.testing.tokenizers import write_tokenizer
from reranker.tokenization import PairTokenizer
from reranker.types import Truncation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for arch in ("bert", "xlmr"):
        write_tokenizer(root / arch, arch)
        out[arch] = root / arch / "tokenizer.json"
    return out


def _reference(file: Path, window: int, strategy: str, side: str, stride: int = 0) -> Tokenizer:
    tok = Tokenizer.from_file(str(file))
    tok.no_padding()
    tok.enable_truncation(window, stride=stride, strategy=strategy, direction=side)
    return tok


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("window", [24, 48, 65])
def test_ids_equal_tokenizers_truncation(
    tokenizer_files: dict[str, Path], arch: str, side: str, window: int
) -> None:
    file = tokenizer_files[arch]
    pt = PairTokenizer(file, window)
    words = LONG_DOCUMENT.split()
    docs = ["", "x", *DOCUMENTS[:3], LONG_DOCUMENT, " ".join(words[:40]), "Ünïcödé 中文 текст"]
    for n_query in (1, 4, 9, 15, 30, 80):
        query = " ".join(words[-n_query:])
        room = window - pt.specials - pt.query_length(query)
        strategy = "longest_first" if room < window // 2 else "only_second"
        expected = _reference(file, window, strategy, side).encode_batch(
            [(query, d) for d in docs])
        got = pt.encode(query, docs, truncation=Truncation(side=side))
        assert got.ids == [e.ids for e in expected], (n_query, strategy)
        assert got.type_ids == [e.type_ids for e in expected], (n_query, strategy)


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
@pytest.mark.parametrize("overlap", [0, 3, 8, 40])
def test_chunk_windows_equal_tokenizers_overflow(
    tokenizer_files: dict[str, Path], arch: str, overlap: int
) -> None:
    file = tokenizer_files[arch]
    window = 48
    pt = PairTokenizer(file, window)
    docs = [LONG_DOCUMENT, DOCUMENTS[0], "", LONG_DOCUMENT[::-1]]
    room = window - pt.specials - pt.query_length(QUERY)
    assert room >= window // 2  # not the long-query case, which never chunks
    stride = min(overlap, room // 2)
    expected = _reference(file, window, "only_second", "right", stride).encode_batch(
        [(QUERY, d) for d in docs])
    every = [[enc, *enc.overflowing] for enc in expected]
    got = pt.encode(QUERY, docs, chunk=True, overlap=overlap, max_chunks=1000)
    assert got.ids == [w.ids for windows in every for w in windows]
    assert got.owner == [i for i, windows in enumerate(every) for _ in windows]
    assert len(every[0]) > 3
    for keep in (1, 2, 3):
        for side in ("right", "left"):
            few = pt.encode(QUERY, docs, chunk=True, overlap=overlap, max_chunks=keep,
                            truncation=Truncation(side=side))
            picked = [ws[:keep] if side == "right" else ws[-keep:] for ws in every]
            assert few.ids == [w.ids for ws in picked for w in ws]


def test_xlmr_chunk_windows_carry_the_template_type_ids(
    tokenizer_files: dict[str, Path],
) -> None:
    """XLM-R's template gives every token type 0 and its type table may have one row; a later
    window with document tokens of type 1 would index out of it."""
    xlmr = PairTokenizer(tokenizer_files["xlmr"], 48)
    enc = xlmr.encode(QUERY, [LONG_DOCUMENT, DOCUMENTS[0]], chunk=True, overlap=8,
                      max_chunks=100)
    assert len(enc.ids) > 3
    assert all(types == [0] * len(ids) for ids, types in zip(enc.ids, enc.type_ids, strict=True))
    # BERT's template: query part 0, document part 1, in every window.
    bert = PairTokenizer(tokenizer_files["bert"], 48)
    q_len = bert.query_length(QUERY)
    enc = bert.encode(QUERY, [LONG_DOCUMENT], chunk=True, overlap=8, max_chunks=100)
    assert len(enc.ids) > 3
    for ids, types in zip(enc.ids, enc.type_ids, strict=True):
        assert types == [0] * (q_len + 2) + [1] * (len(ids) - q_len - 2)


def _hostile(n_chars: int) -> str:
    return (LONG_DOCUMENT + " ") * (n_chars // (len(LONG_DOCUMENT) + 1)) + "x" * (
        n_chars % (len(LONG_DOCUMENT) + 1))


def test_long_query_with_long_documents_builds_only_kept_windows(
    tokenizer_files: dict[str, Path],
) -> None:
    """The default limits' worst case: a 10,000-character query, 100,000-character documents.
    ``tokenizers``' longest_first built about 770 windows per pair here before keeping one."""
    query, docs = _hostile(10_000), [_hostile(100_000)[i:] for i in range(4)]
    pt = PairTokenizer(tokenizer_files["bert"], 512)
    enc = pt.encode(query, docs)
    assert len(enc.ids) == 4 and all(len(row) == 512 for row in enc.ids)
    assert pt.work.windows == 4 and pt.work.tokens == 4 * 512
    chunked = PairTokenizer(tokenizer_files["bert"], 512)
    enc = chunked.encode(QUERY, docs, chunk=True, overlap=64, max_chunks=3)
    assert enc.owner == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert chunked.work.windows == 12 and chunked.work.tokens <= 12 * 512


def test_long_query_with_long_documents_peak_memory_is_small(
    tokenizer_files: dict[str, Path],
) -> None:
    """The same input in a fresh process: peak RSS grows by tens of MiB, not the 4.5 GB that
    building every overflow window took."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would start at
    # pytest's own peak.
    script = f"""
import json, resource, sys
from pathlib import Path
from reranker.tokenization import PairTokenizer
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_tokenization_cost import _hostile

def peak_kib():
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # macOS: bytes

pt = PairTokenizer({str(tokenizer_files["bert"])!r}, 512)
query, docs = _hostile(10_000), [_hostile(100_000)[i:] for i in range(4)]
before = peak_kib()
enc = pt.encode(query, docs)
enc = pt.encode(query[:100], docs, chunk=True, overlap=64, max_chunks=16)
print(json.dumps({{"grew_kib": peak_kib() - before, "windows": len(enc.ids)}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                         timeout=120)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["windows"] == 4 * 16
    assert facts["grew_kib"] < 256 * 1024, facts


def _with_single_row_type_input(source: Path, target: Path) -> Path:
    """The XLM-R model, exported declaring ``token_type_ids`` over its one-row type table (as
    some custom exports do): same scores for type 0, out of range for type 1."""
    import shutil

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shutil.copytree(source, target)
    path = target / "onnx" / "model.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    (row0,) = [t for t in graph.initializer if t.name.endswith("token_type_embeddings.row0")]
    table = numpy_helper.to_array(row0)[np.newaxis, :]
    graph.initializer.append(numpy_helper.from_array(table, "type_table_one_row"))
    graph.input.append(helper.make_tensor_value_info(
        "token_type_ids", TensorProto.INT64, ["batch_size", "sequence_length"]))
    graph.node.insert(0, helper.make_node("Gather", ["type_table_one_row", "token_type_ids"],
                                          ["type_embeddings"]))
    users = [n for n in graph.node if row0.name in n.input]
    assert len(users) == 1
    users[0].input[list(users[0].input).index(row0.name)] = "type_embeddings"
    onnx.save(model, str(path))
    return target


def test_xlmr_export_with_a_type_input_scores_chunked_documents(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    from reranker import Reranker

    plain = model_dirs["xlmr1"]
    typed = _with_single_row_type_input(plain, tmp_path / "typed")
    docs = [LONG_DOCUMENT, DOCUMENTS[0], LONG_DOCUMENT[::-1]]
    scores = []
    for folder in (plain, typed):
        config = {"type": "custom", "model_id": str(folder), "max_length": 48,
                  "long_documents": "chunk", "chunk_overlap": 8, "max_chunks_per_doc": 50}
        with Reranker(config) as rr:
            assert ("token_type_ids" in rr.backend.model.input_names) == (folder == typed)  # type: ignore[attr-defined]
            assert len(rr.backend.encode(QUERY, docs).ids) > 6  # type: ignore[attr-defined]
            res = rr.rerank(QUERY, docs, raw_scores=True)
            scores.append([r.score for r in sorted(res, key=lambda r: r.index)])
    assert scores[1] == pytest.approx(scores[0], abs=1e-5)
