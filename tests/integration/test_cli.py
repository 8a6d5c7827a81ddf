"""The real ``reranker`` console script, run as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reranker.testing.textsamples import DOCUMENTS, QUERY


def _script() -> str:
    found = shutil.which("reranker", path=str(Path(sys.executable).parent)) or shutil.which(
        "reranker"
    )
    if found is None:
        pytest.fail("the reranker console script is not installed (pip install -e .)")
    return found


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [_script(), *args], input=stdin, capture_output=True, text=True, timeout=120, env=env
    )


def test_rerank_documents_as_arguments_json(bert_model: Path) -> None:
    from reranker import Reranker

    proc = run_cli(
        "rerank", "-m", str(bert_model), "-q", QUERY, "--format", "json", "-k", "3", *DOCUMENTS
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == f"custom:{bert_model}"
    expected = Reranker(str(bert_model)).rerank(QUERY, DOCUMENTS, top_k=3)
    assert [r["index"] for r in out["results"]] == [r.index for r in expected]
    for got, exp in zip(out["results"], expected, strict=True):
        assert got["score"] == pytest.approx(exp.score, abs=1e-6)
        assert got["document"] == DOCUMENTS[got["index"]]


def test_rerank_from_file_and_stdin(bert_model: Path, tmp_path: Path) -> None:
    lines = [d for d in DOCUMENTS if d]
    doc_file = tmp_path / "docs.txt"
    doc_file.write_text("\n".join(lines), encoding="utf-8")
    from_file = run_cli(
        "rerank", "-m", str(bert_model), "-q", QUERY, "-f", str(doc_file), "--format", "json"
    )
    from_stdin = run_cli(
        "rerank", "-m", str(bert_model), "-q", QUERY, "--format", "json", stdin="\n".join(lines)
    )
    jsonl = "\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(lines))
    from_jsonl = run_cli(
        "rerank", "-m", str(bert_model), "-q", QUERY, "--format", "json", stdin=jsonl
    )
    for proc in (from_file, from_stdin, from_jsonl):
        assert proc.returncode == 0, proc.stderr
    a, b, c = (json.loads(p.stdout)["results"] for p in (from_file, from_stdin, from_jsonl))
    assert [r["index"] for r in a] == [r["index"] for r in b] == [r["index"] for r in c]
    assert c[0]["document"] == {"text": lines[c[0]["index"]], "id": c[0]["index"]}
    assert len(a) == len(lines)


def test_rerank_table_and_raw_scores(bert_model: Path) -> None:
    proc = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "--raw-scores", *DOCUMENTS[:3])
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert rows[0].split()[:3] == ["rank", "index", "score"]
    assert len(rows) == 4
    assert [int(r.split()[0]) for r in rows[1:]] == [1, 2, 3]


def test_rerank_max_tokens_per_doc(bert_model: Path) -> None:
    from reranker import Reranker
    from reranker.testing.textsamples import LONG_DOCUMENT

    docs = [LONG_DOCUMENT, *DOCUMENTS[:3]]
    proc = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "--format", "json",
                   "--raw-scores", "--max-tokens-per-doc", "6", *docs)
    assert proc.returncode == 0, proc.stderr
    got = {r["index"]: r["score"] for r in json.loads(proc.stdout)["results"]}
    expected = Reranker(str(bert_model)).rerank(QUERY, docs, raw_scores=True,
                                                max_tokens_per_doc=6)
    assert got == pytest.approx({r.index: r.score for r in expected}, abs=1e-6)
    bad = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "--max-tokens-per-doc", "0", "a")
    assert bad.returncode == 2 and "max_tokens_per_doc" in bad.stderr


def test_missing_documents_file_is_one_clear_line(bert_model: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    proc = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "-f", str(missing))
    assert proc.returncode == 2
    assert proc.stderr == f"error: --documents-file {str(missing)!r}: no such file\n"
    folder = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "-f", str(tmp_path))
    assert folder.returncode == 2 and "Errno" not in folder.stderr
    assert folder.stderr.strip().endswith("is a folder, not a file")


def test_no_documents_table_has_no_document_column(bert_model: Path) -> None:
    proc = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, "--no-documents",
                   *DOCUMENTS[:3])
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["rank", "index", "score"]
    assert len(rows) == 4 and all(len(r.split()) == 3 and r == r.rstrip() for r in rows)
    with_docs = run_cli("rerank", "-m", str(bert_model), "-q", QUERY, *DOCUMENTS[:3])
    assert with_docs.stdout.splitlines()[0].split() == ["rank", "index", "score", "document"]


def test_presets_lists_them_all(tmp_path: Path) -> None:
    proc = run_cli("presets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == [
        "fast", "balanced", "quality", "multilingual", "instruct"]
    table = run_cli("presets")
    assert "Xenova/ms-marco-MiniLM-L-6-v2" in table.stdout


def test_download_local_folder_reports_files(bert_model: Path) -> None:
    proc = run_cli("download", str(bert_model))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["model_file"]) == bert_model / "onnx" / "model.onnx"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rerank", "-q", "", "doc"), "query must not be empty"),
        (("rerank", "-q", "x", "-k", "0", "doc"), "top_k must be >= 1"),
        (("rerank", "-m", "no-such-preset", "-q", "x", "doc"), "cannot read model"),
        (("rerank", "-m", "./definitely/missing", "-q", "x", "doc"), "missing"),
        (("download", "cohere:rerank-v3.5"), "only local models"),
        # Refused before the preset is fetched (this run is offline with an empty cache).
        (("rerank", "-m", "fast", "-q", "x", "--instruction", "rank", "doc"),
         "instruction does not apply to backend 'preset:fast'"),
        (("rerank", "-m", "MODEL", "-q", "x", "--instruction", "rank", "doc"),
         "instruction does not apply to backend 'custom:"),
        (("rerank", "-m", "instruct", "-q", "x", "--instruction", " ", "doc"),
         "instruction must be a non-empty string"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(
    args: tuple[str, ...], message: str, bert_model: Path
) -> None:
    proc = run_cli(*[str(bert_model) if a == "MODEL" else a for a in args])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def qwen3_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reranker.testing.families.qwen3_models import build_qwen3_reranker

    return build_qwen3_reranker(tmp_path_factory.mktemp("cli") / "qwen3", seed=5)


def test_rerank_instruction_with_a_decoder(qwen3_model: Path, tmp_path: Path) -> None:
    from reranker import Reranker

    docs = ["Paris is the capital of France", "a fish", "the capital city"]
    instruction = "Given a question about cities, retrieve passages that answer it"
    cache = str(tmp_path / "cache")
    proc = run_cli("rerank", "-m", str(qwen3_model), "-q", QUERY, "--format", "json",
                   "--raw-scores", "--max-length", "160", "--cache-dir", cache,
                   "--instruction", instruction, *docs)
    assert proc.returncode == 0, proc.stderr
    got = {r["index"]: r["score"] for r in json.loads(proc.stdout)["results"]}
    config = {"type": "custom", "model_id": str(qwen3_model), "max_length": 160,
              "cache_dir": cache}
    with Reranker(config) as rr:
        want = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True,
                                                     instruction=instruction)}
        default = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}
    assert got == pytest.approx(want, abs=1e-5)
    assert got != pytest.approx(default, abs=1e-5)  # the instruction changed the prompt
