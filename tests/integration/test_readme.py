"""The README's commands and examples, run as written.

The Python example asks for the ``fast`` preset; here the Hub stand-in serves a tiny model under
that preset's repo id and pinned revision, so the example goes through the real first-use
download path with no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from reranker.config import PresetConfig, parse_backend_config
from reranker.presets import PRESETS
from reranker.testing.families.encoder_models import build_cross_encoder
from tests.integration.hub_standin import HubStandin

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = next(b.strip() for b in _blocks("bash") if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines()


def test_readme_run_command_uses_the_console_script() -> None:
    run_cmd = _blocks("bash")[0].strip()
    assert run_cmd.endswith("reranker serve")
    assert "pip install -e ." in run_cmd


def _serve_preset(hub: HubStandin, tmp_path: Path, name: str,
                  monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve a tiny model as preset ``name``; the model file its default config downloads."""
    preset = PRESETS[name]
    folder = build_cross_encoder(tmp_path / name, arch="bert", seed=11)
    files = {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    # The float32 export (optimized at first use) and the file optimization 'none' runs.
    files[preset.model_file] = files["onnx/model.onnx"]
    hub.add_repo(preset.repo_id, files, revision=preset.revision)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # optimized models
    return _default_model_file(parse_backend_config(name))


def _default_model_file(config: object) -> str:
    assert isinstance(config, PresetConfig)
    preset = PRESETS[config.name]
    if config.optimization != "none":
        return preset.model_file.removesuffix("_quantized.onnx") + ".onnx"
    return preset.model_file


def test_python_example_runs_through_the_preset_download(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_file = _serve_preset(hub, tmp_path, "fast", monkeypatch)
    (example,) = [b for b in _blocks("python") if "Reranker(" in b]
    proc = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    index, score, *doc = proc.stdout.split()
    assert index in {"0", "1"} and 0.0 < float(score) < 1.0
    assert hub.count(path=model_file) >= 1  # downloaded from the stand-in
    # Second run: served from the cache, no new download of the model file.
    before = hub.count(path=model_file, method="GET")
    again = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == proc.stdout
    assert hub.count(path=model_file, method="GET") == before


def test_cli_examples_parse(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_preset(hub, tmp_path, "fast", monkeypatch)
    cli_block = next(b for b in _blocks("bash") if "reranker rerank" in b)
    first = cli_block.strip().splitlines()[0]
    script = Path(sys.executable).parent / "reranker"
    args = re.findall(r'"[^"]*"|\S+', first)[1:]
    proc = subprocess.run([str(script), *[a.strip('"') for a in args]], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "a format for ML models" in proc.stdout
