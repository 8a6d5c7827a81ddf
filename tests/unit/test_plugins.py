"""The plugin backend: registry, import-path loading, sync/async adapter, validation, timeouts."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reranker import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    Reranker,
)
from reranker.config import PluginConfig
from reranker.plugins import (
    PluginBackend,
    clear_reranker_backends,
    list_reranker_backends,
    register_reranker_backend,
    unregister_reranker_backend,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
QUERY = "red fox jumps"
DOCS = ["a lazy dog", "the red fox jumps high", "red paint", "fox"]
# Query words shared with each document: the scorers below return exactly these.
OVERLAP = [0.0, 3.0, 1.0, 1.0]


def overlap(query: str, documents: list[str]) -> list[float]:
    words = set(query.split())
    return [float(len(words & set(doc.split()))) for doc in documents]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class SyncScorer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.closed = 0

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        self.calls.append((query, documents))
        return np.asarray(overlap(query, documents), dtype=np.float64)

    def close(self) -> None:
        self.closed += 1


class AsyncScorer:
    max_length = 128

    async def score(self, query: str, documents: list[str]) -> list[float]:
        await asyncio.sleep(0)
        return overlap(query, documents)


class AsyncCallable:
    async def __call__(self, query: str, documents: list[str]) -> list[float]:
        return overlap(query, documents)


class AwaitableReturning:
    """A sync ``score`` that hands back a coroutine (as some client libraries do)."""

    def score(self, query: str, documents: list[str]) -> Any:
        async def later() -> list[float]:
            return overlap(query, documents)

        return later()


class ProbabilityScorer:
    scores_are_probabilities = True

    def score(self, query: str, documents: list[str]) -> list[float]:
        return [s / 4.0 for s in overlap(query, documents)]


class Returning:
    def __init__(self, value: Any) -> None:
        self.value = value

    def score(self, query: str, documents: list[str]) -> Any:
        return self.value


class AsyncReturning:
    def __init__(self, value: Any) -> None:
        self.value = value

    async def score(self, query: str, documents: list[str]) -> Any:
        return self.value


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    clear_reranker_backends()
    yield
    clear_reranker_backends()


def ranked(rr: Reranker, **kwargs: Any) -> list[int]:
    return [r.index for r in rr.rerank(QUERY, DOCS, **kwargs)]


# -- registry -----------------------------------------------------------------------------------


def test_register_list_unregister_clear() -> None:
    assert list_reranker_backends() == []
    register_reranker_backend("beta", overlap)
    register_reranker_backend("alpha", SyncScorer())
    assert list_reranker_backends() == ["alpha", "beta"]
    unregister_reranker_backend("beta")
    assert list_reranker_backends() == ["alpha"]
    clear_reranker_backends()
    assert list_reranker_backends() == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("my scorer", "whitespace"),
        ("tab\tname", "whitespace"),
        (" lead", "whitespace"),
        ("pkg.mod:attr", "':'"),
        (3, "string"),
        (None, "string"),
    ],
)
def test_register_rejects_bad_names(name: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        register_reranker_backend(name, overlap)
    assert list_reranker_backends() == []


@pytest.mark.parametrize(
    ("backend", "fragment"),
    [
        (SyncScorer, "register an instance"),
        (42, "score\\(query, documents\\)"),
        (type("BadScore", (), {"score": 1})(), "not callable"),
    ],
)
def test_register_rejects_unusable_backends(backend: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        register_reranker_backend("x", backend)


def test_taken_name_needs_replace() -> None:
    register_reranker_backend("mine", overlap)
    with pytest.raises(ConfigError, match="already registered.*replace=True"):
        register_reranker_backend("mine", ProbabilityScorer())
    assert Reranker("plugin:mine").backend.scores_are_probabilities is False

    register_reranker_backend("mine", ProbabilityScorer(), replace=True)
    assert Reranker("plugin:mine").backend.scores_are_probabilities is True


def test_unregister_unknown_lists_registered() -> None:
    register_reranker_backend("alpha", overlap)
    register_reranker_backend("beta", overlap)
    with pytest.raises(ModelNotFoundError, match="'nope'.*'alpha', 'beta'"):
        unregister_reranker_backend("nope")


def test_unknown_name_lists_registered_and_import_path_form() -> None:
    register_reranker_backend("alpha", overlap)
    with pytest.raises(ModelNotFoundError) as info:
        Reranker({"type": "plugin", "name": "missing"})
    message = str(info.value)
    assert "'missing'" in message and "'alpha'" in message
    assert "package.module:attr" in message and "Ray" in message


def test_unknown_name_with_empty_registry_says_none() -> None:
    with pytest.raises(ModelNotFoundError, match="registered: none"):
        Reranker("plugin:missing")


def test_registry_is_thread_safe() -> None:
    def register_many(worker: int) -> None:
        for i in range(50):
            register_reranker_backend(f"w{worker}-{i}", overlap)

    threads = [threading.Thread(target=register_many, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list_reranker_backends()) == 400


def test_registered_name_takes_no_options() -> None:
    register_reranker_backend("mine", overlap)
    with pytest.raises(ConfigError, match="takes no options"):
        Reranker({"type": "plugin", "name": "mine", "options": {"boost": 2}})


# -- end to end through Reranker ----------------------------------------------------------------


@pytest.mark.parametrize(
    "plugin",
    [SyncScorer(), AsyncScorer(), overlap, AsyncCallable(), AwaitableReturning()],
    ids=["sync-object", "async-object", "function", "async-callable", "returns-awaitable"],
)
def test_sync_rerank_ranks_and_applies_sigmoid(plugin: Any) -> None:
    register_reranker_backend("p", plugin)
    rr = Reranker({"type": "plugin", "name": "p"})
    assert rr.name == "plugin:p"
    results = rr.rerank(QUERY, DOCS)
    # Ties (documents 2 and 3) keep input order.
    assert [r.index for r in results] == [1, 2, 3, 0]
    for r in results:
        assert r.score == pytest.approx(sigmoid(OVERLAP[r.index]), abs=1e-6)
        assert r.document == DOCS[r.index]
    assert ranked(rr, top_k=2) == [1, 2]
    assert ranked(rr, top_k=10) == [1, 2, 3, 0]
    raw = rr.rerank(QUERY, DOCS, raw_scores=True)
    assert [r.score for r in raw] == [3.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "plugin",
    [SyncScorer(), AsyncScorer(), overlap, AsyncCallable(), AwaitableReturning()],
    ids=["sync-object", "async-object", "function", "async-callable", "returns-awaitable"],
)
async def test_async_rerank_ranks(plugin: Any) -> None:
    register_reranker_backend("p", plugin)
    rr = Reranker("plugin:p")
    results = await rr.arerank(QUERY, DOCS, top_k=3)
    assert [r.index for r in results] == [1, 2, 3]
    assert results[0].score == pytest.approx(sigmoid(3.0), abs=1e-6)


def test_probabilities_are_not_activated() -> None:
    register_reranker_backend("probs", ProbabilityScorer())
    results = Reranker("plugin:probs").rerank(QUERY, DOCS)
    assert [r.index for r in results] == [1, 2, 3, 0]
    assert [r.score for r in results] == pytest.approx([0.75, 0.25, 0.25, 0.0], abs=1e-7)


def test_function_attributes_declare_probabilities() -> None:
    def probs(query: str, documents: list[str]) -> list[float]:
        return [0.5] * len(documents)

    probs.scores_are_probabilities = True  # type: ignore[attr-defined]
    register_reranker_backend("probs", probs)
    assert Reranker("plugin:probs").rerank("q", ["a"])[0].score == 0.5


def test_plugin_sees_texts_of_mapping_documents_and_one_document() -> None:
    scorer = SyncScorer()
    register_reranker_backend("p", scorer)
    rr = Reranker("plugin:p")
    docs = [{"text": "red", "id": 1}, {"text": "blue", "id": 2}]
    results = rr.rerank("red", docs)
    assert scorer.calls[-1] == ("red", ["red", "blue"])
    assert results[0].document == {"text": "red", "id": 1}
    assert [r.index for r in rr.rerank("q", ["only"])] == [0]


def test_declared_attributes_are_read() -> None:
    register_reranker_backend("a", AsyncScorer())
    backend = Reranker("plugin:a").backend
    assert backend.max_length == 128
    assert backend.scores_are_probabilities is False


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        ({"scores_are_probabilities": "yes"}, "scores_are_probabilities must be a bool"),
        ({"max_length": 0}, "max_length must be a positive int"),
        ({"max_length": "512"}, "max_length must be a positive int"),
    ],
)
def test_bad_declared_attributes(attrs: dict[str, Any], fragment: str) -> None:
    plugin = type("Declared", (SyncScorer,), attrs)()
    register_reranker_backend("bad", plugin)
    with pytest.raises(ConfigError, match=fragment):
        Reranker("plugin:bad")


def test_score_returns_float32_in_input_order() -> None:
    backend = PluginBackend(overlap, name="f")
    out = backend.score(QUERY, DOCS)
    assert out.dtype == np.float32
    assert out.tolist() == OVERLAP


async def test_sync_plugin_runs_off_the_event_loop_thread() -> None:
    seen: list[int] = []

    def scorer(query: str, documents: list[str]) -> list[float]:
        seen.append(threading.get_ident())
        return [1.0] * len(documents)

    await PluginBackend(scorer, name="t").ascore("q", ["a"])
    assert seen and seen[0] != threading.get_ident()


async def test_async_plugin_through_sync_api_inside_a_running_loop() -> None:
    register_reranker_backend("a", AsyncScorer())
    assert ranked(Reranker("plugin:a"), top_k=1) == [1]


# -- output validation --------------------------------------------------------------------------

BAD_OUTPUTS = [
    pytest.param([1.0], "1 scores for 4 documents", id="too-few"),
    pytest.param([1.0] * 5, "5 scores for 4 documents", id="too-many"),
    pytest.param([float("nan"), 1.0, 1.0, 1.0], "non-finite", id="nan"),
    pytest.param([1.0, float("inf"), 1.0, 1.0], "non-finite", id="inf"),
    pytest.param([1.0, 1.0, -float("inf"), 1.0], "non-finite", id="minus-inf"),
    pytest.param(["a", "b", "c", "d"], "non-numeric", id="strings"),
    pytest.param(["1.0", "2", "3", "4"], "non-numeric", id="numeric-strings"),
    pytest.param(np.array(["1", "2", "3", "4"]), "non-numeric", id="string-array"),
    pytest.param("1234", "non-numeric", id="one-string"),
    pytest.param(None, "non-numeric|scores for 4", id="none"),
    pytest.param([{"score": 1}] * 4, "non-numeric", id="dicts"),
    pytest.param([1e39, 1.0, 1.0, 1.0], "float32 range", id="float32-overflow"),
    pytest.param(np.ones((2, 3)), "6 scores for 4 documents", id="wrong-shape"),
]


@pytest.mark.parametrize(("value", "fragment"), BAD_OUTPUTS)
def test_bad_output_sync(value: Any, fragment: str) -> None:
    register_reranker_backend("bad", Returning(value))
    with pytest.raises(BackendError, match=fragment) as info:
        Reranker("plugin:bad").rerank(QUERY, DOCS)
    assert "plugin:bad" in str(info.value)


@pytest.mark.parametrize(("value", "fragment"), BAD_OUTPUTS)
async def test_bad_output_async(value: Any, fragment: str) -> None:
    register_reranker_backend("bad", AsyncReturning(value))
    with pytest.raises(BackendError, match=fragment):
        await Reranker("plugin:bad").arerank(QUERY, DOCS)


@pytest.mark.parametrize(
    "value",
    [(1, 2, 3, 4), np.array([[1.0], [2.0], [3.0], [4.0]]), np.arange(4, dtype=np.int64)],
    ids=["tuple-of-ints", "column", "int-array"],
)
def test_accepted_output_forms(value: Any) -> None:
    out = PluginBackend(Returning(value), name="ok").score(QUERY, DOCS)
    assert out.dtype == np.float32 and out.shape == (4,)


def test_probabilities_outside_unit_interval_are_rejected() -> None:
    plugin = Returning([0.5, 1.5, 0.1, 0.2])
    plugin.scores_are_probabilities = True  # type: ignore[attr-defined]
    register_reranker_backend("p", plugin)
    with pytest.raises(BackendError, match=r"outside \[0, 1\]"):
        Reranker("plugin:p").rerank(QUERY, DOCS)


# -- plugin exceptions --------------------------------------------------------------------------


def raising(query: str, documents: list[str]) -> list[float]:
    raise ValueError("model exploded")


async def araising(query: str, documents: list[str]) -> list[float]:
    raise ValueError("model exploded")


@pytest.mark.parametrize("plugin", [raising, araising], ids=["sync", "async"])
async def test_plugin_exception_is_wrapped_with_cause(plugin: Any) -> None:
    register_reranker_backend("boom", plugin)
    rr = Reranker("plugin:boom")
    with pytest.raises(BackendError, match="plugin:boom.*ValueError: model exploded") as sync_info:
        rr.rerank(QUERY, DOCS)
    assert isinstance(sync_info.value.__cause__, ValueError)
    with pytest.raises(BackendError, match="model exploded") as async_info:
        await rr.arerank(QUERY, DOCS)
    assert isinstance(async_info.value.__cause__, ValueError)
    assert not isinstance(async_info.value, BackendTimeoutError)


def test_reranker_errors_from_plugins_pass_through() -> None:
    def picky(query: str, documents: list[str]) -> list[float]:
        raise InvalidInputError("query too long", param="query")

    register_reranker_backend("picky", picky)
    with pytest.raises(InvalidInputError, match="query too long"):
        Reranker("plugin:picky").rerank(QUERY, DOCS)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_plugin_own_timeout_error_is_not_our_timeout(is_async: bool) -> None:
    def sync_fail(query: str, documents: list[str]) -> list[float]:
        raise TimeoutError("upstream HTTP timed out")

    async def async_fail(query: str, documents: list[str]) -> list[float]:
        raise TimeoutError("upstream HTTP timed out")

    register_reranker_backend("t", async_fail if is_async else sync_fail)
    rr = Reranker({"type": "plugin", "name": "t", "timeout_s": 5})
    with pytest.raises(BackendError, match="upstream") as info:
        rr.rerank(QUERY, DOCS)
    assert not isinstance(info.value, BackendTimeoutError)
    with pytest.raises(BackendError, match="upstream") as ainfo:
        await rr.arerank(QUERY, DOCS)
    assert not isinstance(ainfo.value, BackendTimeoutError)


# -- timeouts -----------------------------------------------------------------------------------

TIMEOUT_S = 0.3
# Generous: thread start and CI jitter, yet far below the plugin's 10 s stall.
DEADLINE_S = TIMEOUT_S + 1.5


@pytest.fixture
def stall() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()  # let stalled plugin threads finish


def test_sync_plugin_timeout(stall: threading.Event) -> None:
    def slow(query: str, documents: list[str]) -> list[float]:
        stall.wait(10)
        return [1.0] * len(documents)

    register_reranker_backend("slow", slow)
    rr = Reranker({"type": "plugin", "name": "slow", "timeout_s": TIMEOUT_S})
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="plugin:slow.*0.3 s"):
        rr.rerank(QUERY, DOCS)
    assert time.monotonic() - start < DEADLINE_S


async def test_sync_plugin_timeout_async_api(stall: threading.Event) -> None:
    def slow(query: str, documents: list[str]) -> list[float]:
        stall.wait(10)
        return [1.0] * len(documents)

    register_reranker_backend("slow", slow)
    rr = Reranker({"type": "plugin", "name": "slow", "timeout_s": TIMEOUT_S})
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        await rr.arerank(QUERY, DOCS)
    assert time.monotonic() - start < DEADLINE_S


async def test_async_plugin_timeout_both_apis() -> None:
    async def slow(query: str, documents: list[str]) -> list[float]:
        await asyncio.sleep(10)
        return [1.0] * len(documents)

    register_reranker_backend("slow", slow)
    rr = Reranker({"type": "plugin", "name": "slow", "timeout_s": TIMEOUT_S})
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        await rr.arerank(QUERY, DOCS)
    assert time.monotonic() - start < DEADLINE_S
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        rr.rerank(QUERY, DOCS)  # inside a running loop: runs on a worker thread
    assert time.monotonic() - start < DEADLINE_S


def test_async_plugin_timeout_without_running_loop() -> None:
    async def slow(query: str, documents: list[str]) -> list[float]:
        await asyncio.sleep(10)
        return [1.0] * len(documents)

    register_reranker_backend("slow", slow)
    rr = Reranker({"type": "plugin", "name": "slow", "timeout_s": TIMEOUT_S})
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        rr.rerank(QUERY, DOCS)
    assert time.monotonic() - start < DEADLINE_S


@pytest.mark.parametrize("plugin", [overlap, AsyncScorer()], ids=["sync", "async"])
async def test_fast_plugin_within_timeout(plugin: Any) -> None:
    register_reranker_backend("fast", plugin)
    rr = Reranker({"type": "plugin", "name": "fast", "timeout_s": 5})
    assert ranked(rr, top_k=1) == [1]
    assert [r.index for r in await rr.arerank(QUERY, DOCS, top_k=1)] == [1]


# -- import paths -------------------------------------------------------------------------------

PLUGIN_MODULE = '''
import asyncio

CLOSED = []


def _overlap(query, documents):
    words = set(query.split())
    return [float(len(words & set(d.split()))) for d in documents]


class Scorer:
    def __init__(self, boost=1.0):
        self.boost = boost

    def score(self, query, documents):
        return [self.boost * s for s in _overlap(query, documents)]

    def close(self):
        CLOSED.append(self)


class AsyncScorer:
    def __init__(self, boost=1.0):
        self.boost = boost

    async def score(self, query, documents):
        await asyncio.sleep(0)
        return [self.boost * s for s in _overlap(query, documents)]


instance = Scorer(boost=3.0)


def scorer_fn(query, documents):
    return _overlap(query, documents)


def make_scorer(boost):
    return Scorer(boost=boost)


def broken_factory(boost):
    raise RuntimeError("no GPU here")


def makes_nothing(boost):
    return 42


class Outer:
    class Inner(Scorer):
        pass


not_a_plugin = 42
'''


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"reranker_test_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def plugin(name: str, **extra: Any) -> Reranker:
    return Reranker({"type": "plugin", "name": name, **extra})


def raw(rr: Reranker) -> list[float]:
    return rr.backend.score(QUERY, DOCS).tolist()


def test_import_path_class_with_options(plugin_module: str) -> None:
    rr = plugin(f"{plugin_module}:Scorer", options={"boost": 2.0})
    assert rr.name == f"plugin:{plugin_module}:Scorer"
    assert raw(rr) == [2 * s for s in OVERLAP]
    assert ranked(rr, top_k=2) == [1, 2]
    assert list_reranker_backends() == []  # import paths never touch the registry


def test_import_path_class_without_options(plugin_module: str) -> None:
    assert raw(plugin(f"{plugin_module}:Scorer")) == OVERLAP


async def test_import_path_async_class(plugin_module: str) -> None:
    rr = plugin(f"{plugin_module}:AsyncScorer", options={"boost": 0.5})
    results = await rr.arerank(QUERY, DOCS)
    assert results[0].index == 1
    assert results[0].score == pytest.approx(sigmoid(1.5), abs=1e-6)


def test_import_path_object(plugin_module: str) -> None:
    assert raw(plugin(f"{plugin_module}:instance")) == [3 * s for s in OVERLAP]


def test_import_path_object_takes_no_options(plugin_module: str) -> None:
    with pytest.raises(ConfigError, match="already built"):
        plugin(f"{plugin_module}:instance", options={"boost": 1})


def test_import_path_function_is_the_scorer(plugin_module: str) -> None:
    assert raw(plugin(f"{plugin_module}:scorer_fn")) == OVERLAP


def test_import_path_function_with_options_is_a_factory(plugin_module: str) -> None:
    rr = plugin(f"{plugin_module}:make_scorer", options={"boost": 5})
    assert raw(rr) == [5 * s for s in OVERLAP]


def test_import_path_dotted_attribute(plugin_module: str) -> None:
    assert raw(plugin(f"{plugin_module}:Outer.Inner", options={"boost": 4})) == [
        4 * s for s in OVERLAP
    ]


def test_close_only_closes_what_the_backend_built(plugin_module: str) -> None:
    built = plugin(f"{plugin_module}:Scorer")
    shared = plugin(f"{plugin_module}:instance")
    built.close()
    built.close()
    shared.close()
    closed = sys.modules[plugin_module].CLOSED
    assert closed == [built.backend.plugin]  # type: ignore[attr-defined]

    registered = SyncScorer()
    register_reranker_backend("mine", registered)
    Reranker("plugin:mine").close()
    assert registered.closed == 0


def test_import_path_factory_failure_is_chained(plugin_module: str) -> None:
    with pytest.raises(ModelLoadError, match="no GPU here") as info:
        plugin(f"{plugin_module}:broken_factory", options={"boost": 1})
    assert isinstance(info.value.__cause__, RuntimeError)


def test_import_path_bad_constructor_options(plugin_module: str) -> None:
    with pytest.raises(ModelLoadError, match="TypeError") as info:
        plugin(f"{plugin_module}:Scorer", options={"boots": 1})
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize("attr", ["not_a_plugin", "makes_nothing"])
def test_import_path_unusable_object(plugin_module: str, attr: str) -> None:
    options = {"boost": 1} if attr == "makes_nothing" else {}
    with pytest.raises(ConfigError, match="score\\(query, documents\\)"):
        plugin(f"{plugin_module}:{attr}", options=options)


@pytest.mark.parametrize("attr", ["missing", "Outer.Missing"])
def test_import_path_missing_attribute(plugin_module: str, attr: str) -> None:
    with pytest.raises(ModelNotFoundError, match="has no attribute"):
        plugin(f"{plugin_module}:{attr}")


def test_import_error_is_chained_with_ray_hint() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        plugin("reranker_no_such_module_xyz.sub:Scorer")
    message = str(info.value)
    assert "reranker_no_such_module_xyz.sub" in message
    assert "runtime_env" in message and "py_modules" in message and "working_dir" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_module_that_fails_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"reranker_test_broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('bad module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelLoadError, match="bad module") as info:
        plugin(f"{name}:anything")
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("name", ["pkg.mod:", ":attr", "pkg:a..b", "pkg:a:b"])
def test_malformed_import_paths(name: str) -> None:
    with pytest.raises(ConfigError, match="package.module:attr"):
        plugin(name)


def test_import_path_in_a_fresh_process(tmp_path: Path) -> None:
    """A Ray worker is a new process: import paths work there, registered names do not."""
    (tmp_path / "fresh_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            class LengthScorer:
                def __init__(self, sign=1):
                    self.sign = sign

                def score(self, query, documents):
                    return [self.sign * len(d) for d in documents]
            """
        )
    )
    script = textwrap.dedent(
        """
        import json
        from reranker import ModelNotFoundError, Reranker
        from reranker.plugins import list_reranker_backends

        assert list_reranker_backends() == []
        rr = Reranker({"type": "plugin", "name": "fresh_plugin_mod:LengthScorer",
                       "options": {"sign": -1}})
        order = [r.index for r in rr.rerank("q", ["aaa", "a", "aa"])]
        try:
            Reranker("plugin:registered_elsewhere")
            missing = "no error"
        except ModelNotFoundError as exc:
            missing = str(exc)
        print(json.dumps({"name": rr.name, "order": order, "missing": missing}))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tmp_path), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["name"] == "plugin:fresh_plugin_mod:LengthScorer"
    assert out["order"] == [1, 2, 0]
    assert "registered_elsewhere" in out["missing"] and "import" in out["missing"]


async def test_wrong_plugin_signature_is_a_backend_error() -> None:
    async def one_arg(query: str) -> list[float]:
        return [1.0]

    register_reranker_backend("narrow", one_arg)
    rr = Reranker("plugin:narrow")
    with pytest.raises(BackendError, match="TypeError") as info:
        await rr.arerank(QUERY, DOCS)
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(BackendError, match="TypeError"):
        rr.rerank(QUERY, DOCS)


def test_module_level_rerank_sees_a_replaced_plugin() -> None:
    from reranker import rerank

    register_reranker_backend("swap_me", lambda q, docs: [len(d) for d in docs])
    try:
        assert [r.index for r in rerank("q", ["a", "abc"], model="plugin:swap_me")] == [1, 0]
        register_reranker_backend("swap_me", lambda q, docs: [-len(d) for d in docs],
                                  replace=True)
        assert [r.index for r in rerank("q", ["a", "abc"], model="plugin:swap_me")] == [0, 1]
    finally:
        unregister_reranker_backend("swap_me")


# -- the plugin's own pool and its health -------------------------------------------------------


def test_plugins_get_a_default_timeout_and_a_bounded_pool() -> None:
    cfg = PluginConfig(name="x")
    assert cfg.timeout_s == 30.0
    assert cfg.max_threads == 8


async def test_sync_plugin_runs_in_its_own_pool_not_the_default_executor() -> None:
    names: list[str] = []

    def plugin(query: str, documents: list[str]) -> list[float]:
        names.append(threading.current_thread().name)
        return [1.0] * len(documents)

    register_reranker_backend("pooled", plugin)
    rr = Reranker({"type": "plugin", "name": "pooled"})
    await rr.arerank(QUERY, DOCS)
    rr.rerank(QUERY, DOCS)
    assert len(names) == 2 and all(n.startswith("plugin-pooled") for n in names)


async def test_hung_calls_that_fill_the_pool_fail_the_health_check(
    stall: threading.Event,
) -> None:
    def hangs(query: str, documents: list[str]) -> list[float]:
        stall.wait(10)
        return [1.0] * len(documents)

    register_reranker_backend("hangs", hangs)
    rr = Reranker({"type": "plugin", "name": "hangs", "timeout_s": TIMEOUT_S, "max_threads": 2})
    backend = rr.backend
    assert isinstance(backend, PluginBackend)
    backend.check_health()  # healthy before any call
    with pytest.raises(BackendTimeoutError):
        await rr.arerank(QUERY, DOCS)
    backend.check_health()  # one hung call of two threads: still serving
    with pytest.raises(BackendTimeoutError):
        rr.rerank(QUERY, DOCS)
    assert backend.overran_calls == 2
    with pytest.raises(BackendError, match="max_threads"):
        backend.check_health()
    # A call queued behind the hung ones times out without ever taking a thread.
    with pytest.raises(BackendTimeoutError):
        await rr.arerank(QUERY, DOCS)
    assert backend.overran_calls == 2
    stall.set()  # the hung calls return: the pool is free again
    deadline = time.monotonic() + 5
    while backend.overran_calls and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    backend.check_health()
    rr.close()
