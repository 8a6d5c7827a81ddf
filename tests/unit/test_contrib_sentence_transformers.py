"""The sentence-transformers example plugin: lazy import, raw logits, 2-label log-odds."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reranker import ModelLoadError, Reranker
from reranker.contrib.sentence_transformers import SentenceTransformersBackend

PLUGIN = "reranker.contrib.sentence_transformers:SentenceTransformersBackend"
EXTRA = 'pip install "reranker[sentence-transformers]"'
QUERY = "what is the capital of France?"
DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "Paris", "", "Ünïcödé 東京"]


@pytest.mark.parametrize("missing", ["sentence_transformers", "torch"])
def test_missing_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    with pytest.raises(ModelLoadError, match="reranker\\[sentence-transformers\\]") as info:
        SentenceTransformersBackend("cross-encoder/any")
    assert EXTRA in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_dependency_through_plugin_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ModelLoadError, match="sentence-transformers"):
        Reranker({"type": "plugin", "name": PLUGIN, "options": {"model_name_or_path": "x"}})


def test_module_import_is_light() -> None:
    code = (
        "import sys, reranker.contrib.sentence_transformers; "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.split() == ["False", "False"]


# -- with a stand-in CrossEncoder: the adapter's own logic, no torch needed ---------------------


class _Identity:
    pass


class _FakeCrossEncoder:
    """Records calls; returns fixed logits per document, shaped like the real predict."""

    num_labels = 1
    keyword = "activation_fn"

    def __init__(self, model_name_or_path: str, *, max_length: Any = None, device: Any = None):
        self.args = (model_name_or_path, max_length, device)
        self.max_seq_length = 77
        self.calls: list[dict[str, Any]] = []

    def predict(self, pairs: Any, batch_size: int = 32, show_progress_bar: Any = None,
                activation_fn: Any = None, apply_softmax: bool = False,
                convert_to_numpy: bool = True) -> np.ndarray:
        self.calls.append({"pairs": list(pairs), "batch_size": batch_size,
                           "activation_fn": activation_fn})
        n = len(self.calls[-1]["pairs"])
        if self.num_labels == 1:
            return np.arange(n, dtype=np.float32) - 1.5
        return np.stack([np.zeros(n), np.arange(n) * 2.0 - 1.0], axis=1).astype(np.float32)


def _install_fakes(monkeypatch: pytest.MonkeyPatch, cross_encoder: type) -> None:
    st = types.ModuleType("sentence_transformers")
    st.CrossEncoder = cross_encoder  # type: ignore[attr-defined]
    torch = types.ModuleType("torch")
    torch.nn = types.SimpleNamespace(Identity=_Identity)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", st)
    monkeypatch.setitem(sys.modules, "torch", torch)


def test_one_label_returns_raw_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fakes(monkeypatch, _FakeCrossEncoder)
    backend = SentenceTransformersBackend("m", batch_size=4, device="cpu")
    model = backend._model
    assert model.args == ("m", None, "cpu")
    assert backend.max_length == 77 and backend.scores_are_probabilities is False
    out = backend.score("q", ["a", "b", "c"])
    assert out.dtype == np.float32 and out.tolist() == [-1.5, -0.5, 0.5]
    call = model.calls[-1]
    assert call["pairs"] == [("q", "a"), ("q", "b"), ("q", "c")]
    assert call["batch_size"] == 4 and isinstance(call["activation_fn"], _Identity)


def test_two_labels_return_log_odds(monkeypatch: pytest.MonkeyPatch) -> None:
    two = type("TwoLabels", (_FakeCrossEncoder,), {"num_labels": 2})
    _install_fakes(monkeypatch, two)
    out = SentenceTransformersBackend("m", max_length=64).score("q", ["a", "b"])
    assert out.tolist() == [-1.0, 1.0]  # logit1 - logit0


def test_v3_activation_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    class V3(_FakeCrossEncoder):
        def predict(self, pairs: Any, batch_size: int = 32, show_progress_bar: Any = None,
                    activation_fct: Any = None, convert_to_numpy: bool = True) -> np.ndarray:
            assert isinstance(activation_fct, _Identity)
            return np.zeros(len(list(pairs)), dtype=np.float32)

    _install_fakes(monkeypatch, V3)
    assert SentenceTransformersBackend("m").score("q", ["a"]).tolist() == [0.0]


def test_more_than_two_labels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fakes(monkeypatch, type("Three", (_FakeCrossEncoder,), {"num_labels": 3}))
    with pytest.raises(ModelLoadError, match="3 labels"):
        SentenceTransformersBackend("m")


def test_load_failure_is_chained(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing(_FakeCrossEncoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("no such repo")

    _install_fakes(monkeypatch, Failing)
    with pytest.raises(ModelLoadError, match="no such repo") as info:
        SentenceTransformersBackend("nope/nope")
    assert isinstance(info.value.__cause__, OSError)


def test_usable_through_plugin_config_and_closed_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _install_fakes(monkeypatch, _FakeCrossEncoder)
    rr = Reranker({"type": "plugin", "name": PLUGIN, "options": {"model_name_or_path": "m"}})
    assert [r.index for r in rr.rerank("q", ["a", "b", "c"])] == [2, 1, 0]
    rr.close()
    with pytest.raises(ModelLoadError, match="closed"):
        rr.backend.plugin.score("q", ["a"])  # type: ignore[attr-defined]


# -- the real library on a tiny model ----------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("num_labels", [1, 2])
def test_real_cross_encoder_matches_transformers(tmp_path: Path, num_labels: int) -> None:
    pytest.importorskip("sentence_transformers")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from reranker.testing import build_cross_encoder

    folder = tmp_path / f"tiny-{num_labels}"
    build_cross_encoder(folder, arch="bert", num_labels=num_labels)

    # Independent reference: transformers directly, logits in float32.
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits.double().numpy()
    expected = logits[:, 0] if num_labels == 1 else logits[:, 1] - logits[:, 0]

    backend = SentenceTransformersBackend(str(folder), device="cpu", batch_size=2)
    assert backend.max_length == 128  # the tiny model's window
    got = backend.score(QUERY, DOCS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)

    rr = Reranker({
        "type": "plugin", "name": PLUGIN,
        "options": {"model_name_or_path": str(folder), "device": "cpu"},
    })
    results = rr.rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(np.argsort(-expected, kind="stable"))
    for r in results:
        if num_labels == 2:  # sigmoid of the log-odds is softmax[1]
            e = np.exp(logits[r.index] - logits[r.index].max())
            reference = float(e[1] / e.sum())
        else:
            reference = 1.0 / (1.0 + math.exp(-expected[r.index]))
        assert r.score == pytest.approx(reference, abs=1e-5)
    rr.close()


@pytest.mark.torch
def test_real_three_label_model_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from reranker.testing import build_cross_encoder

    folder = build_cross_encoder(tmp_path / "three", arch="bert", num_labels=3)
    with pytest.raises(ModelLoadError, match="3 labels"):
        SentenceTransformersBackend(str(folder), device="cpu")
