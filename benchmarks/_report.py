"""Outputs of ``compare.py``: FLOPs and peak estimates, the markdown table and the PNG plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def flops_per_pair(folder: Path, lengths: Sequence[int]) -> float:
    """Mean floating-point operations of one forward pass over pairs of these token lengths.

    Per layer and token: 2 x (4h^2 + 2hI) for the projections and feed-forward; per layer and
    pair: 4 x L^2 x h for the attention scores and the weighted sum. Embedding lookups, layer
    norms and the head are left out (under 1%).
    """
    cfg = json.loads((folder / "config.json").read_text())
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    total = 0.0
    for n in lengths:
        total += layers * (2 * n * (4 * h * h + 2 * h * inter) + 4 * n * n * h)
    return total / len(lengths)


def _cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        return None
    return None


def peak_gflops(facts: dict[str, Any]) -> dict[str, float | None]:
    """Peak GFLOP/s (fp32) and GOP/s (int8) of the cores, from the clock and instruction sets.

    fp32: two FMA units per core, 16 lanes with AVX-512 (8 with AVX2), 2 operations per FMA.
    int8: VNNI's dot product does 4 multiply-adds per 32-bit lane, 4x the fp32 rate; without
    VNNI, 2x. The clock is the one /proc/cpuinfo shows (turbo may run higher).
    """
    mhz = _cpu_mhz()
    if not mhz:
        return {"fp32": None, "int8": None, "ghz": None}
    lanes = 16 if facts.get("avx512f") else 8
    fp32 = int(facts["cores"]) * mhz / 1000 * 2 * lanes * 2
    int8 = fp32 * (4 if facts.get("avx512_vnni") else 2)
    return {"fp32": round(fp32, 1), "int8": round(int8, 1), "ghz": round(mhz / 1000, 2)}


def _table(report: dict[str, Any]) -> str:
    rows = report["systems"]
    has_ratio = any("x_pairs_per_s_vs_st" in r for r in rows)
    head = ["system", "pairs/s", "p50 s", "p95 s", "peak RSS MB", "padded/real",
            "top-10 vs fp32", "max diff vs fp32"]
    if has_ratio:
        head += ["pairs/s vs ST", "latency vs ST", "RSS vs ST"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["description"], r["pairs_per_s"], r["p50_s"], r["p95_s"], r["peak_rss_mb"],
                 r["padded_over_real"], r.get("top10_overlap", ""), r.get("max_score_diff", "")]
        if has_ratio:
            cells += [f"{r.get('x_pairs_per_s_vs_st', '')}x", f"{r.get('x_p50_vs_st', '')}x",
                      f"{r.get('x_rss_vs_st', '')}x"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    m, model, req = report["machine"], report["model"], report["requests"]
    if model.get("weights") == "downloaded":
        what = f"`{Path(model['folder']).name}` (downloaded weights)"
    else:
        what = ("`fast` preset architecture (BERT, 6 layers, hidden 384), stand-in weights "
                "(random, deterministic: agreement figures say how int8 moves these scores, not "
                "a trained model's)")
    lines += [
        "",
        f"Model: {what}; "
        f"{model['mean_tokens_per_pair']} tokens per pair on average "
        f"({model['tokens_per_word']} tokens per word), {model['gflops_per_pair']} GFLOP per "
        "pair.",
        f"Requests: {req['count']} x {req['documents']} documents of {req['words']} words, "
        f"{req['rounds']} rounds, systems interleaved request by request.",
        f"Machine: {m['cpu']}, {m['cores']} cores, AVX-512 {m['avx512f']}, VNNI "
        f"{m['avx512_vnni']}; load average before {m['load_avg_before']}, after "
        f"{m['load_avg']}.",
    ]
    if any(r["system"] == "reranker-serve-int8" for r in rows):
        lines.append(
            "Ray Serve row: a local Ray with 2 CPUs, one ingress and one scorer replica (2 CPUs), "
            "one client posting to `/v1/rerank` over HTTP; latency is the client's, peak RSS is "
            "the sum over the Ray worker processes hosting the app (ingress and scorer replicas, "
            "HTTP proxy; Ray's GCS, raylet and Serve controller not counted), padded tokens "
            "follow the replica's batching rule."
        )
    lines += [
        "",
        "Achieved vs peak (peak from the clock and instruction sets; int8 rows against the "
        f"int8 peak {model['peak_gflops']['int8']} GOP/s, others against the fp32 peak "
        f"{model['peak_gflops']['fp32']} GFLOP/s):",
        "",
    ]
    for r in rows:
        frac = r.get("fraction_of_peak")
        share = f"{frac:.0%}" if frac is not None else "n/a"
        lines.append(f"- {r['system']}: {r['achieved_gflops']} G(FL)OP/s, {share} of peak")
    if report.get("skipped"):
        lines += ["", "Not measured:"]
        lines += [f"- {name}: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in report["systems"]:
        sweeps = r["sweeps_pairs_per_s"]
        counts = [(int(k.split("=")[1]), v) for k, v in sweeps.items() if k.startswith("count=")]
        lengths = [(k.split("=")[1], v) for k, v in sweeps.items() if k.startswith("words=")]
        left.plot([c for c, _ in counts], [v for _, v in counts], marker="o", label=r["system"])
        right.plot([w for w, _ in lengths], [v for _, v in lengths], marker="o",
                   label=r["system"])
    left.set_xlabel("candidates per request")
    left.set_ylabel("pairs/s")
    left.set_xscale("log")
    left.set_xticks([10, 25, 50, 100], labels=["10", "25", "50", "100"])
    left.set_title("Throughput vs candidate count (40-300 words)")
    right.set_xlabel("words per document")
    right.set_title("Throughput vs document length (50 candidates)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """``results.json``, ``table.md`` and ``throughput.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "table.md").write_text(_table(report))
    _plot(report, out / "throughput.png")
