"""Per-CPU run layout calibration (``calibrate_cpu``): measured once, cached per CPU and model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reranker.backends.local import load_local_backend
from reranker.calibration import RunLayout, _cache_file, candidate_layouts, cpu_signature
from reranker.config import parse_backend_config

DOCS = ["the river bank", "a loan from the bank", "fish swim in rivers", "stone"]


def _backend(model: Path, cache: Path, **options: object):  # type: ignore[no-untyped-def]
    return load_local_backend(parse_backend_config(  # type: ignore[arg-type]
        {"type": "custom", "model_id": str(model), "cache_dir": str(cache), "threads": 2,
         **options}))


def _calibrations(cache: Path) -> list[Path]:
    return sorted(cache.rglob("calibration/*.json"))


def test_the_fastest_measured_layout_is_kept_and_cached(bert_model: Path, tmp_path: Path
                                                         ) -> None:
    backend = _backend(bert_model, tmp_path, calibrate_cpu=True)
    [record] = _calibrations(tmp_path)
    data = json.loads(record.read_text())
    timed = {(t["parallel_runs"], t["max_tokens_per_batch"]): t["pairs_per_s"]
             for t in data["timings"]}
    assert set(timed) == {(c.parallel_runs, c.max_tokens_per_batch)
                          for c in candidate_layouts(2)}
    chosen = (data["chosen"]["parallel_runs"], data["chosen"]["max_tokens_per_batch"])
    assert timed[chosen] == max(timed.values())
    assert (backend.model.parallel_runs, backend.model.max_tokens_per_batch) == chosen
    assert data["signature"] == cpu_signature(2)
    # The layout changes how pairs are batched, not their float32 scores.
    plain = _backend(bert_model, tmp_path)
    np.testing.assert_allclose(backend.score("river", DOCS), plain.score("river", DOCS),
                               atol=1e-5)


def test_a_cached_choice_is_reused(bert_model: Path, tmp_path: Path) -> None:
    _backend(bert_model, tmp_path, calibrate_cpu=True)
    [record] = _calibrations(tmp_path)
    data = json.loads(record.read_text())
    data["chosen"] = {"parallel_runs": 1, "max_tokens_per_batch": 777}  # not a candidate
    record.write_text(json.dumps(data))
    again = _backend(bert_model, tmp_path, calibrate_cpu=True)
    assert (again.model.parallel_runs, again.model.max_tokens_per_batch) == (1, 777)


def test_configured_layouts_are_not_calibrated(bert_model: Path, tmp_path: Path) -> None:
    backend = _backend(bert_model, tmp_path, calibrate_cpu=True, parallel_runs=1)
    assert backend.model.parallel_runs == 1 and not _calibrations(tmp_path)
    _backend(bert_model, tmp_path, calibrate_cpu=True, max_tokens_per_batch=300)
    _backend(bert_model, tmp_path)  # off by default
    assert not _calibrations(tmp_path)


def test_the_cache_key_follows_the_cpu(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    here = cpu_signature(2)
    other = {**here, "flags": [f for f in here["flags"] if f != "amx_int8"] + ["other"]}  # type: ignore[union-attr]
    assert _cache_file(tmp_path, model, here) != _cache_file(tmp_path, model, other)
    assert _cache_file(tmp_path, model, here) != _cache_file(tmp_path, model, cpu_signature(4))
    assert candidate_layouts(1) == [RunLayout(1, 512), RunLayout(1, 2048)]
