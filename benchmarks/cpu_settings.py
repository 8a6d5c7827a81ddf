"""Which CPU run settings are fastest on this machine: parallel runs, tokens per run, arena.

The same pairs (tokenized once, off the clock) are scored by ``OnnxCrossEncoder`` under each
setting, settings taking turns pass by pass so load from other work hits all alike; pairs/s
median and best per setting, and the machine (``lscpu`` model name and flags) are written to
``--out`` (default ``benchmarks/results/cpu_settings.json``).

    python benchmarks/cpu_settings.py                       # int8 recipe and float32 stand-in
    python benchmarks/cpu_settings.py --rounds 5 --files int8

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts, standin_folder  # noqa: E402

TOKENS_PER_RUN = (256, 512, 1024, 2048, 4096)


def _model_file(folder: Path, kind: str, cache: Path) -> Path:
    from reranker.optimize import optimized_model

    source = folder / "onnx" / "model.onnx"
    if kind == "float32":
        return source
    if kind == "hub-int8":
        return folder / "onnx" / "model_quantized.onnx"
    return optimized_model(source, "int8", cache_root=cache, padding_free=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="int8,float32", help="int8, float32, hub-int8")
    parser.add_argument("--requests", type=int, default=1, help="100-document requests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS_PER_RUN)))
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "cpu_settings.json")
    args = parser.parse_args(argv)

    from reranker.onnx_model import OnnxCrossEncoder, default_threads
    from reranker.sample_requests import benchmark_requests
    from reranker.tokenization import PairTokenizer

    folder = standin_folder("fast", args.work_dir)
    tok = PairTokenizer(folder / "tokenizer.json", 512)
    ids: list[list[int]] = []
    types: list[list[int]] = []
    for req in benchmark_requests(args.requests, seed=0):
        enc = tok.encode(req.query, req.documents)
        ids += enc.ids
        types += enc.type_ids
    cores = default_threads()
    runs_options = sorted({1, cores})
    tokens_options = [int(t) for t in args.tokens.split(",")]
    report: dict[str, Any] = {"machine": machine_facts(), "pairs": len(ids),
                              "mean_tokens": round(sum(map(len, ids)) / len(ids), 1),
                              "rounds": args.rounds, "files": {}}
    for kind in [k.strip() for k in args.files.split(",") if k.strip()]:
        path = _model_file(folder, kind, args.work_dir / "cache")
        sessions = {(runs, arena): OnnxCrossEncoder(path, pad_id=tok.pad_id, threads=cores,
                                                    parallel_runs=runs, cpu_arena=arena)
                    for runs in runs_options for arena in (True, False)}
        settings = [(runs, t, arena) for runs in runs_options for t in tokens_options
                    for arena in (True, False)]
        rates: dict[tuple[int, int, bool], list[float]] = {s: [] for s in settings}
        for model in sessions.values():
            model.run(ids[:8], types[:8])
        for rnd in range(args.rounds):
            order = settings if rnd % 2 == 0 else settings[::-1]
            for runs, tokens, arena in order:
                model = sessions[(runs, arena)]
                model.max_tokens_per_batch = tokens
                started = time.perf_counter()
                model.run(ids, types)
                rates[(runs, tokens, arena)].append(len(ids) / (time.perf_counter() - started))
        rows = [{"parallel_runs": runs, "intra_op_threads": cores // runs,
                 "max_tokens_per_batch": tokens, "cpu_arena": arena,
                 "pairs_per_s_median": round(statistics.median(r), 2),
                 "pairs_per_s_best": round(max(r), 2)}
                for (runs, tokens, arena), r in rates.items()]
        rows.sort(key=lambda r: -r["pairs_per_s_median"])
        report["files"][kind] = rows
        for model in sessions.values():
            model.close()
        print(f"{kind}:", file=sys.stderr)
        for r in rows:
            print(f"  runs={r['parallel_runs']} tokens={r['max_tokens_per_batch']:5d} "
                  f"arena={r['cpu_arena']!s:5}  median {r['pairs_per_s_median']:7.2f}  "
                  f"best {r['pairs_per_s_best']:7.2f}", file=sys.stderr)
    report["machine"]["load_avg_after"] = machine_facts()["load_avg"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
