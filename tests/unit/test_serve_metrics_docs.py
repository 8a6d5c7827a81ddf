"""The metric names users copy (the Serving page, Grafana dashboard) are what Prometheus scrapes.

Ray exports application metrics with a ``ray_`` prefix, so PromQL written with the names the
code creates (``reranker_requests_total``) matches nothing; the integration test
``test_readme_metric_names_are_what_ray_serves`` checks these names against a live scrape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deployments.serve.metrics import EXPORTED_NAMES, HISTOGRAMS, METRIC_NAMES, exported_name

ROOT = Path(__file__).resolve().parents[2]
# The metrics table lives on the docs site's Serving page (it moved there from the README).
SERVING = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
DASHBOARD = ROOT / "deploy" / "grafana" / "reranker-dashboard.json"
_SUFFIXES = ("_bucket", "_sum", "_count")
_EXPORTED = re.compile(r"\bray_reranker_[a-z_]+")


def _base(name: str) -> str:
    """``name`` without a histogram series suffix, checking the suffix is allowed."""
    for suffix in _SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and base in {exported_name(h) for h in HISTOGRAMS}:
            return base
    return name


def test_exported_names_have_rays_prefix() -> None:
    assert EXPORTED_NAMES == tuple("ray_" + n for n in METRIC_NAMES)
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES) == 10


def test_serving_page_lists_exactly_the_exported_names() -> None:
    in_docs = {_base(m) for m in _EXPORTED.findall(SERVING)}
    assert in_docs == set(EXPORTED_NAMES)
    # Regression: the README listed the unprefixed names, which no scrape contains.
    for name in METRIC_NAMES:
        assert re.search(rf"(?<!ray_)\b{name}\b", SERVING) is None, name


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    out += [v["query"]["query"] for v in dashboard["templating"]["list"]
            if isinstance(v.get("query"), dict)]
    return out


def test_grafana_dashboard_uses_only_real_metric_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = _exprs(dashboard)
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        names = re.findall(r"\b[a-z_:][a-z0-9_:]*(?=\s*[{\[(,)])", expr)
        metrics = {n for n in names if n.startswith(("ray_", "reranker_"))}
        assert metrics, expr
        for name in metrics:
            base = _base(name)
            assert base in EXPORTED_NAMES, (name, expr)
            if base in {exported_name(h) for h in HISTOGRAMS}:
                assert name != base, f"a histogram is queried by its series: {expr}"
            used.add(base)
    assert used == set(EXPORTED_NAMES)  # every metric has a panel


def test_grafana_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["refId"] for t in panel["targets"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
