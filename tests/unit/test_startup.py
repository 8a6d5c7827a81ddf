"""What ``serve`` and ``batch`` check before Ray starts, and the one line a Ray failure becomes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deployments.startup import check_models, root_cause
from reranker.config import parse_backend_config
from reranker.errors import ConfigError, DownloadError, ModelLoadError, ModelNotFoundError

# What Ray Data raised when an actor's model failed to load (abridged from a real run).
ACTOR_DIED = """The actor died because of an error raised in its creation task, \
\x1b[36mray::MapWorker(MapBatches(RerankActor)).__init__()\x1b[39m (pid=5920, ip=192.0.2.2)
  File "/work/reranker/tokenization.py", line 88, in load_tokenizer
    tok = Tokenizer.from_file(str(tokenizer_file))
Exception: Model missing. at line 1 column 18

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/work/reranker/backends/local.py", line 131, in __init__
    raise ModelLoadError(f"cannot read tokenizer {tokenizer_file}: {exc}") from exc
reranker.errors.ModelLoadError: cannot read tokenizer /m/tok.json: Model missing. at line 1 column 1
"""


def test_root_cause_of_a_nested_ray_traceback_is_the_reranker_error() -> None:
    assert root_cause(ACTOR_DIED) == (
        "cannot read tokenizer /m/tok.json: Model missing. at line 1 column 1")


def test_root_cause_prefers_an_error_in_the_exception_chain() -> None:
    try:
        try:
            raise ModelLoadError("broken model")
        except ModelLoadError as inner:
            raise RuntimeError("Deploying application reranker failed") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == "broken model"


def test_root_cause_without_a_reranker_error_is_the_innermost_named_one() -> None:
    text = ("(ServeController pid=1) RuntimeError: Traceback (most recent call last):\n"
            "(ServeController pid=1)   File \"x.py\", line 1\n"
            "(ServeController pid=1) ImportError: No module named 'acme'\n")
    assert root_cause(text) == "ImportError: No module named 'acme'"
    assert root_cause("just one line\nand more") == "just one line"


def test_missing_local_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        check_models([parse_backend_config(str(tmp_path / "nowhere"))])


def test_folder_without_tokenizer(bert_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(bert_model, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match="is missing tokenizer.json"):
        check_models([parse_backend_config(str(folder))])
    check_models([parse_backend_config(str(bert_model))])  # a complete folder passes


def test_offline_preset_not_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        check_models([parse_backend_config("fast")])


def test_provider_without_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="COHERE_API_KEY"):
        check_models([parse_backend_config("cohere:rerank-v3.5")])
    monkeypatch.setenv("COHERE_API_KEY", "k")
    check_models([parse_backend_config("cohere:rerank-v3.5")])
