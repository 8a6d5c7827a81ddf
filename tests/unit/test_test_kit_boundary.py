"""Production code does not depend on the test kit (``reranker.testing``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_production_module_imports_the_test_kit() -> None:
    kit = ROOT / "reranker" / "testing"
    offenders = []
    for folder in ("reranker", "deployments"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if kit in path.parents:
                continue
            bad = [n for n in _imports(path) if n == "reranker.testing" or
                   n.startswith("reranker.testing.")]
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


def test_the_kit_no_longer_holds_benchmark_standins() -> None:
    kit = {p.name for p in (ROOT / "reranker" / "testing").glob("*.py")}
    assert {"standins.py", "vocabulary.py", "corpus.py"}.isdisjoint(kit)
    assert (ROOT / "benchmarks" / "standins.py").is_file()


def test_bench_requests_load_without_the_test_kit() -> None:
    code = (
        "import argparse, sys\n"
        "from reranker.cli.bench import _requests\n"
        "args = argparse.Namespace(documents_file=None, query=None, words='40-60', requests=2,"
        " documents=5, seed=0)\n"
        "reqs = _requests(args)\n"
        "assert len(reqs) == 2 and all(len(d) == 5 for _, d in reqs), reqs\n"
        "assert all(40 <= len(x.split()) <= 60 for _, d in reqs for x in d)\n"
        "assert not [m for m in sys.modules if m.startswith('reranker.testing')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
