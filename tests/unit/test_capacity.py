"""benchmarks/capacity.py's queueing model against closed forms."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "capacity.py"
_spec = importlib.util.spec_from_file_location("capacity", _PATH)
assert _spec is not None and _spec.loader is not None
capacity = importlib.util.module_from_spec(_spec)
sys.modules["capacity"] = capacity  # dataclasses look their module up
_spec.loader.exec_module(capacity)


def test_erlang_c_matches_closed_forms() -> None:
    assert capacity.erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: rho
    assert capacity.erlang_c(2, 1.0) == pytest.approx(1 / 3)  # M/M/2 at a = 1
    assert capacity.erlang_c(3, 3.0) == 1.0
    assert 0 < capacity.erlang_c(5000, 4900) < 1  # stable with thousands of servers


def test_one_replica_one_chunk_is_the_mm1_tail() -> None:
    # M/M/1 with deterministic service S in the tail term: P(W > t) = rho * exp(-(mu-lam) t).
    service = 100 / (1 * 100.0) + 0.0  # 100 docs at 100 pairs/s: 1 s
    lam, mu = 0.5, 1 / service
    expected = service + math.log(0.5 / 0.05) / (mu - lam)
    got = capacity.p95_latency(0.5, 100, 100, 1, 1.0, 100.0, 0.0, request_overhead_s=0.0)
    assert got == pytest.approx(expected)
    assert capacity.p95_latency(1.0, 100, 100, 1, 1.0, 100.0, 0.0) == math.inf


def test_more_replicas_lower_the_tail_and_plans_meet_their_target() -> None:
    args = (50.0, 100, 20)
    tails = [capacity.p95_latency(*args, n, 4.0, 21.6, 0.005) for n in (62, 70, 100)]  # 59 Erlangs
    assert tails[0] > tails[1] > tails[2]
    plan = capacity.plan(50.0, 100, 20, 0.3, 4.0, 21.6, 0.005)
    assert plan is not None and plan.p95_ms <= 300 and plan.utilisation <= 0.8
    # One replica fewer breaks the target or the 80% bound: the plan is the smallest.
    offered = 50 * 5 * (20 / (4 * 21.6) + 0.005)
    fewer = capacity.p95_latency(*args, plan.replicas - 1, 4.0, 21.6, 0.005)
    assert fewer > 0.3 or offered / (plan.replicas - 1) > 0.8
    # A chunk that alone takes longer than the target: no replica count helps.
    assert capacity.plan(50.0, 100, 100, 0.3, 4.0, 21.6, 0.005) is None
