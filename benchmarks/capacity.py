"""Capacity on paper: replicas and nodes a target load needs, and what chunk size trades.

A small queueing model over measured per-CPU scoring rates (docs/capacity.md explains it):

- a request of ``D`` documents is split into ``k = ceil(D / c)`` chunks of ``c`` documents;
- a chunk keeps one scorer replica (``p`` CPUs) busy for ``S = c / (p * r) + o_call``, where
  ``r`` is the measured pairs/s per CPU and ``o_call`` the per-call cost of a Serve handle call;
- chunks arrive at ``lambda = R * k`` per second and Serve's router (power of two choices, close
  to joining the shortest queue) is modelled as one M/M/N queue: Erlang C gives the chance a
  chunk waits and the tail of its wait;
- a request ends when its slowest chunk does: ``p95`` solves ``P(chunk done by t)^k = 0.95``,
  plus the measured per-request cost of HTTP, JSON and merging.

    python benchmarks/capacity.py                                   # 1,000 req/s x 100 docs
    python benchmarks/capacity.py --rps 200 --p95-ms 500 --preset fast-float32
    python benchmarks/capacity.py --check benchmarks/results/autoscale.json

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

# Pairs/s per CPU at 100 documents per request, from the README's Performance runs (2 cores):
# compare.py (40-300 word documents) and serve_throughput.py (40-80 random words).
MEASURED_PAIRS_PER_CPU = {
    "fast": 43.2 / 2,            # optimization int8 (the default), compare.py
    "fast-float32": 18.9 / 2,    # optimization none on the float32 file, compare.py
    "fast-short-docs": 175.0 / 2,  # serve_throughput.py --synthetic-minilm, 16 clients
}
# serve_throughput.py, 1 client: 661 ms over HTTP vs 617 ms in process for 100 documents.
REQUEST_OVERHEAD_S = 0.044


@dataclass(frozen=True)
class Plan:
    chunk_size: int
    chunks: int
    replicas: int
    utilisation: float
    chunk_service_ms: float
    p95_ms: float
    pairs_per_s_per_replica: float


def erlang_c(servers: int, offered: float) -> float:
    """Probability an arrival waits in an M/M/N queue with ``offered`` = lambda / mu Erlangs."""
    if offered >= servers:
        return 1.0
    blocking = 1.0  # Erlang B by its recursion: stable for thousands of servers
    for i in range(1, servers + 1):
        blocking = offered * blocking / (i + offered * blocking)
    return servers * blocking / (servers - offered * (1.0 - blocking))


def p95_latency(rps: float, documents: int, chunk: int, replicas: int, cpus: float,
                pairs_per_cpu: float, call_overhead_s: float,
                request_overhead_s: float = REQUEST_OVERHEAD_S, q: float = 0.95) -> float:
    """The ``q`` latency quantile (s) of a request; ``inf`` when the replicas cannot keep up."""
    k = math.ceil(documents / chunk)
    service = chunk / (cpus * pairs_per_cpu) + call_overhead_s
    arrivals = rps * k
    mu = 1.0 / service
    if arrivals >= replicas * mu:
        return math.inf
    waits = erlang_c(replicas, arrivals / mu)
    per_chunk_tail = 1.0 - q ** (1.0 / k)  # every chunk done: each misses t with this chance
    theta = replicas * mu - arrivals
    extra = max(0.0, math.log(waits / per_chunk_tail) / theta) if waits > 0 else 0.0
    return request_overhead_s + service + extra


def plan(rps: float, documents: int, chunk: int, p95_s: float, cpus: float,
         pairs_per_cpu: float, call_overhead_s: float, max_utilisation: float = 0.8,
         max_replicas: int = 100_000) -> Plan | None:
    """The fewest replicas meeting ``p95_s`` at ``chunk`` and at most ``max_utilisation``
    busy (headroom for bursts and for the autoscaler's reaction time); ``None`` if none can."""
    k = math.ceil(documents / chunk)
    service = chunk / (cpus * pairs_per_cpu) + call_overhead_s
    if REQUEST_OVERHEAD_S + service >= p95_s:
        return None  # even an idle cluster is too slow at this chunk size
    n = max(1, math.ceil(rps * k * service / max_utilisation))
    while n <= max_replicas:
        t = p95_latency(rps, documents, chunk, n, cpus, pairs_per_cpu, call_overhead_s)
        if t <= p95_s:
            return Plan(chunk, k, n, rps * k * service / n, service * 1000, t * 1000,
                        chunk / service)
        n = n + max(1, n // 50)
    return None


def check(path: Path) -> dict[str, object]:
    """Measured pairs/s by replica count in an autoscale.py run against N x the 1-replica rate."""
    data = json.loads(path.read_text())
    phases = data["phases_s"]
    loaded = [r for r in data["timeline"]
              if phases["load starts"] + 1 < r["t_s"] <= phases["load stops"]]
    by_replicas: dict[int, list[float]] = {}
    for r in loaded:
        by_replicas.setdefault(r["replicas"], []).append(r["pairs_per_s"])
    measured = {n: statistics.median(v) for n, v in sorted(by_replicas.items())}
    base = measured.get(1)
    rows = {n: {"measured_pairs_per_s": round(v, 1),
                "model_pairs_per_s": None if base is None else round(base * n, 1),
                "measured_over_model": None if not base else round(v / (base * n), 2)}
            for n, v in measured.items()}
    return {"source": str(path), "by_replicas": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=1000.0, help="requests per second")
    p.add_argument("--documents", type=int, default=100, help="documents per request")
    p.add_argument("--p95-ms", type=float, default=300.0)
    p.add_argument("--preset", choices=sorted(MEASURED_PAIRS_PER_CPU), default="fast")
    p.add_argument("--pairs-per-cpu", type=float, help="your own measured rate (overrides)")
    p.add_argument("--replica-cpus", type=float, default=4.0, help="num_cpus per replica")
    p.add_argument("--node-cpus", type=float, default=32.0, help="CPUs per node for scorers")
    p.add_argument("--call-overhead-ms", type=float, default=5.0,
                   help="cost of one scorer call besides scoring (assumed; see docs)")
    p.add_argument("--max-utilisation", type=float, default=0.8)
    p.add_argument("--chunk-sizes", default="5,10,20,25,50,100")
    p.add_argument("--check", type=Path, help="an autoscale.py JSON to compare against")
    args = p.parse_args(argv)

    if args.check:
        print(json.dumps(check(args.check), indent=1))
        return 0
    rate = args.pairs_per_cpu or MEASURED_PAIRS_PER_CPU[args.preset]
    print(f"{args.rps:g} req/s x {args.documents} docs = {args.rps * args.documents:,.0f} "
          f"pairs/s; p95 target {args.p95_ms:g} ms; {rate:.1f} pairs/s per CPU "
          f"({args.pairs_per_cpu and 'given' or args.preset}); replicas of "
          f"{args.replica_cpus:g} CPUs, {args.node_cpus:g} CPUs per node")
    print("| chunk | chunks/request | replicas | nodes | CPUs | utilisation | chunk ms | "
          "p95 ms | pairs/s per replica |")
    print("|---|---|---|---|---|---|---|---|---|")
    for chunk in (int(c) for c in args.chunk_sizes.split(",")):
        got = plan(args.rps, args.documents, chunk, args.p95_ms / 1000, args.replica_cpus, rate,
                   args.call_overhead_ms / 1000, args.max_utilisation)
        if got is None:
            idle = (REQUEST_OVERHEAD_S + chunk / (args.replica_cpus * rate)
                    + args.call_overhead_ms / 1000) * 1000
            print(f"| {chunk} | {math.ceil(args.documents / chunk)} | - | - | - | - | - | "
                  f"{idle:.0f} even idle | - |")
            continue
        per_node = max(1, int(args.node_cpus // args.replica_cpus))
        nodes = math.ceil(got.replicas / per_node)
        print(f"| {chunk} | {got.chunks} | {got.replicas:,} | {nodes:,} | "
              f"{got.replicas * args.replica_cpus:,.0f} | {got.utilisation:.2f} | "
              f"{got.chunk_service_ms:.0f} | {got.p95_ms:.0f} | "
              f"{got.pairs_per_s_per_replica:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
