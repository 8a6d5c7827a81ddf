"""Autoscaling over time on a head and two worker nodes: replicas, pairs/s and p95 per second.

Starts the multi-node cluster of the test suite (tests/integration/cluster_harness.py: one raylet
per node on this machine, 1 CPU each, the app deployed from serve_config.yaml), with the scorer
deployment autoscaling from 1 to 3 replicas on short delays, then runs: a quiet lead-in, a
sustained load of N clients (100-document requests, fanned out in chunks), and a trickle of
one client until the deployment is back at its minimum. Every second it records the RUNNING
replicas, the pairs (documents) scored per second and the p95 latency of the requests finished in
that second. Writes ``benchmarks/results/autoscale.json`` and ``autoscale.png``.

    python benchmarks/autoscale.py                      # tiny local model, defaults below
    python benchmarks/autoscale.py --clients 8 --load-s 40 --look-back-s 30

The model is a tiny random cross-encoder (reranker.testing), so the figures show the control
loop, not a real model's speed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.integration.cluster_harness import Load, LocalCluster, app_config  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
SCORER = "CustomScorer"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Sampler:
    """Once a second: RUNNING scorer replicas, and throughput/p95 of the requests just ended."""

    def __init__(self, loads: list[Load], t0: float) -> None:
        self.loads = loads
        self.t0 = t0
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            done = [o for load in self.loads for o in list(load.outcomes)
                    if last < o.ended <= now]
            ok = [o for o in done if o.ok]
            p95 = _percentile([o.ended - o.started for o in ok], 0.95)
            self.rows.append({
                "t_s": round(now - self.t0, 2),
                "replicas": LocalCluster.running(SCORER),
                "pairs_per_s": round(sum(o.documents for o in ok) / (now - last), 1),
                "p95_ms": None if p95 is None else round(p95 * 1000, 1),
                "failed": len(done) - len(ok),
            })
            last = now

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.rows


def plot(rows: list[dict[str, Any]], phases: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    series = [("replicas", "RUNNING scorer replicas"), ("pairs_per_s", "pairs/s"),
              ("p95_ms", "p95 latency (ms)")]
    for ax, (key, label) in zip(axes, series, strict=True):
        ax.plot(t, [r[key] if r[key] is not None else float("nan") for r in rows],
                drawstyle="steps-post" if key == "replicas" else "default")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for name, at in phases.items():
            ax.axvline(at, color="grey", linestyle="--", linewidth=0.8)
            if ax is axes[0]:
                ax.annotate(name, (at, ax.get_ylim()[1]), fontsize=8, rotation=90,
                            va="top", ha="right")
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--documents", type=int, default=100)
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--load-s", type=float, default=30.0)
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--upscale-delay-s", type=float, default=2.0)
    p.add_argument("--downscale-delay-s", type=float, default=5.0)
    p.add_argument("--look-back-s", type=float, default=5.0)
    p.add_argument("--metrics-interval-s", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from reranker.testing.families.encoder_models import build_cross_encoder

    autoscaling = {"min_replicas": 1, "max_replicas": args.max_replicas,
                   "target_ongoing_requests": 1, "upscale_delay_s": args.upscale_delay_s,
                   "downscale_delay_s": args.downscale_delay_s,
                   "metrics_interval_s": args.metrics_interval_s,
                   "look_back_period_s": args.look_back_s}
    scorers = {"autoscaling_config": autoscaling, "max_replicas_per_node": 1,
               "ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 32,
               "health_check_period_s": 1.0}
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(workers=2) as cluster:
        model = build_cross_encoder(Path(tmp) / "model", seed=0)
        cluster.deploy(app_config(model, cluster.http_port, chunk_size=args.chunk_size,
                                  custom=scorers))
        heavy = Load(cluster.url, clients=args.clients, documents=args.documents)
        light = Load(cluster.url, clients=1, documents=args.chunk_size)
        t0 = time.monotonic()
        sampler = Sampler([heavy, light], t0).start()
        time.sleep(5)
        phases = {"load starts": time.monotonic() - t0}
        heavy.start()
        time.sleep(args.load_s)
        heavy.stop()
        phases["load stops"] = time.monotonic() - t0
        light.start()
        deadline = time.monotonic() + 180
        while LocalCluster.running(SCORER) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        phases["back to 1"] = time.monotonic() - t0
        time.sleep(3)
        light.stop()
        rows = sampler.stop()

    outcomes = heavy.outcomes + light.outcomes
    reached = max(r["replicas"] for r in rows)
    up_at = next((r["t_s"] for r in rows if r["replicas"] == reached), None)
    from benchmarks._common import machine_facts

    summary = {
        "machine": machine_facts(),
        "settings": vars(args) | {"out": str(args.out)},
        "requests": len(outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "max_replicas_reached": reached,
        "seconds_to_max_after_load": None if up_at is None else
        round(up_at - phases["load starts"], 1),
        "seconds_to_min_after_load": round(phases["back to 1"] - phases["load stops"], 1),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "timeline": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "autoscale.json").write_text(json.dumps(summary, indent=1) + "\n")
    title = (f"{args.clients} clients x {args.documents} docs (chunk {args.chunk_size}), "
             f"3 nodes; upscale/downscale delay {args.upscale_delay_s:g}/"
             f"{args.downscale_delay_s:g} s, look-back {args.look_back_s:g} s")
    plot(rows, phases, args.out / "autoscale.png", title)
    print(json.dumps({k: v for k, v in summary.items() if k != "timeline"}, indent=1))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
