"""Speed and memory of the decoder reranker on the Qwen3-Reranker-0.6B shape, random weights.

The stand-in has the 0.6B model's exact shapes (28 layers, hidden 1024, 16 query and 8
key/value heads of 128, SwiGLU 3072, a 151,936-row tied embedding) in bfloat16 safetensors, as
Qwen ships it, and the offline test tokenizer. Each system runs in its own process, so its peak
RSS is the memory a replica needs for it:

* ``float32``: the library's graph (last layer for the last position, two head rows);
* ``int8``: the same, dynamic int8 with per-channel weights (agreement with float32 reported);
* ``float32, vocabulary head``: last layer for every position and the full-vocabulary head at
  every position, then the yes/no columns: what a causal-LM forward (the model card's
  ``model(**inputs).logits[:, -1, :]``) computes;
* ``float32, vocabulary head, last position``: the full-vocabulary head on the last position.

    python benchmarks/decoder_speed.py [--pairs 8] [--max-length 512] [--work-dir DIR]
        [--torch-python VENV/bin/python]   # adds transformers (torch) running the model card

With ``--torch-python`` the model card's code runs in that interpreter too: its scores are the
reference for the agreement columns of every system (a fidelity check at the real shape).

Not part of the test suite. Results go to ``benchmarks/results/decoder_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts  # noqa: E402

SHAPE_0_6B = dict(num_layers=28, hidden_size=1024, num_heads=16, num_kv_heads=8, head_dim=128,
                  vocab_size=151936, tie_word_embeddings=True)
SYSTEMS = {
    "float32": {"optimization": "none"},
    "int8": {"optimization": "int8"},
    "float32, vocabulary head": {"last_position_only": False, "vocabulary_head": True},
    "float32, vocabulary head, last position": {"vocabulary_head": True},
}
TORCH_SYSTEM = "transformers (torch float32, model card)"
RESULTS = Path(__file__).resolve().parent / "results" / "decoder_speed.json"


def _standin(work: Path, layers: int) -> Path:
    from reranker.testing.families.qwen3_models import build_qwen3_reranker

    folder = work / f"qwen3-0.6b-shape-{layers}l"
    if not (folder / "model.safetensors").is_file():
        started = time.perf_counter()
        build_qwen3_reranker(folder, bfloat16=True, **{**SHAPE_0_6B, "num_layers": layers})
        print(f"stand-in written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return folder


def _pairs(count: int) -> tuple[list[str], list[list[str]]]:
    from reranker.sample_requests import benchmark_requests

    per_request = 4
    requests = benchmark_requests(-(-count // per_request), documents_per_request=per_request,
                                  min_words=80, max_words=200)
    return [r.query for r in requests], [list(r.documents) for r in requests]


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """Load one system, score the pairs, report pairs/s and peak RSS of this process."""
    import numpy as np

    from reranker.backends import build_backend
    from reranker.config import parse_backend_config
    from reranker.models.build import build_onnx
    from reranker.models.family import GraphOptions
    from reranker.onnx_model import OnnxCrossEncoder

    system = SYSTEMS[args.system]
    folder = _standin(args.work_dir, args.layers)
    cache = args.work_dir / "cache"
    config = {"type": "custom", "model_id": str(folder), "max_length": args.max_length,
              "cache_dir": str(cache), "optimization": system.get("optimization", "none")}
    started = time.perf_counter()
    backend = build_backend(parse_backend_config(config))
    run = backend.model
    if "vocabulary_head" in system:
        name = "variant-" + "-".join(f"{k}={v}" for k, v in system.items())
        target = args.work_dir / f"{name}-{args.layers}l" / "model.onnx"
        if not target.is_file():
            options = GraphOptions(
                head_kind="yes_no", token_ids=backend.tokenizer.head_token_ids,
                last_position_only=system.get("last_position_only", True), vocabulary_head=True)
            build_onnx(folder, target, options=options, external_data_bytes=0)
        backend.close()
        run = OnnxCrossEncoder(target, pad_id=backend.tokenizer.pad_id, padding_side="left")
    load_s = time.perf_counter() - started
    queries, documents = _pairs(args.pairs)
    rows = [r for q, docs in zip(queries, documents, strict=True)
            for r in backend.encode(q, docs).ids]
    rows = rows[: args.pairs]
    run.run(rows[:1], rows[:1])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scores = run.run(rows, rows)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "system": args.system,
        "pairs": len(rows),
        "tokens_per_pair": float(np.mean([len(r) for r in rows])),
        "pairs_per_s": round(len(rows) / wall, 3),
        "cpu_s_per_pair": round(cpu / len(rows), 2),
        "load_s": round(load_s, 1),
        "peak_rss_mb": _peak_rss_mb(),
        "scores": [float(s) for s in scores],
    }


def _torch_child(args: argparse.Namespace) -> dict[str, Any]:
    """The model card's code: transformers (torch, float32), one forward per request."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from reranker.testing.families.qwen3_reference import reference_decoder_encode

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    folder = _standin(args.work_dir, args.layers)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    load_s = time.perf_counter() - started
    queries, documents = _pairs(args.pairs)
    encoded = [reference_decoder_encode(folder, q, docs, args.max_length)
               for q, docs in zip(queries, documents, strict=True)]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")

    def forward(enc: dict[str, Any]) -> list[float]:
        with torch.inference_mode():
            logits = model(input_ids=torch.from_numpy(enc["input_ids"]),
                           attention_mask=torch.from_numpy(enc["attention_mask"])).logits
        last = logits[:, -1, :].float()
        return (last[:, yes] - last[:, no]).tolist()

    forward({k: v[:1] for k, v in encoded[0].items()})  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scores = [s for enc in encoded for s in forward(enc)][: args.pairs]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    lengths = [int(m.sum()) for enc in encoded for m in enc["attention_mask"]][: args.pairs]
    return {
        "system": args.system,
        "pairs": len(scores),
        "tokens_per_pair": float(np.mean(lengths)),
        "pairs_per_s": round(len(scores) / wall, 3),
        "cpu_s_per_pair": round(cpu / len(scores), 2),
        "load_s": round(load_s, 1),
        "peak_rss_mb": _peak_rss_mb(),
        "scores": scores,
    }


def _peak_rss_mb() -> int:
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _agreement(reference: list[float], other: list[float], per_request: int = 4
               ) -> dict[str, float]:
    import numpy as np

    a, b = np.asarray(reference), np.asarray(other)
    tops = [int(np.argmax(a[i:i + per_request]) == np.argmax(b[i:i + per_request]))
            for i in range(0, len(a), per_request)]
    return {"max_abs_diff": float(f"{np.abs(a - b).max():.3g}"),
            "top1_agreement": round(float(np.mean(tops)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--layers", type=int, default=28, help="fewer for a quick try")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "decoder")
    parser.add_argument("--system", choices=[*SYSTEMS, TORCH_SYSTEM], help=argparse.SUPPRESS)
    parser.add_argument("--torch-python", help="a Python with torch and transformers (its own "
                        "venv): adds the model card's transformers code as a system")
    parser.add_argument("--only", help="comma-separated systems (default all)")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.system:
        print(json.dumps(_torch_child(args) if args.system == TORCH_SYSTEM else _child(args)))
        return
    # Build the stand-in and the library's graphs first, so no system's RSS counts a build.
    _standin(args.work_dir, args.layers)
    names = args.only.split(",") if args.only else list(SYSTEMS)
    if args.torch_python:
        names.append(TORCH_SYSTEM)
    rows = []
    for name in names:
        python = args.torch_python if name == TORCH_SYSTEM else sys.executable
        cmd = [python, __file__, "--system", name, "--pairs", str(args.pairs),
               "--max-length", str(args.max_length), "--layers", str(args.layers),
               "--work-dir", str(args.work_dir)]
        subprocess.run(cmd, check=True, capture_output=True, env=os.environ)  # build, cache
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{name:<42}{rows[-1]['pairs_per_s']:>8} pairs/s{rows[-1]['peak_rss_mb']:>8} MB",
              file=sys.stderr)
    reference = rows[0]["scores"]
    for row in rows:
        row["vs_first"] = _agreement(reference, row["scores"])
        if args.torch_python:
            row["vs_transformers"] = _agreement(rows[-1]["scores"], row["scores"])
    report = {"machine": machine_facts(), "shape": {**SHAPE_0_6B, "num_layers": args.layers},
              "max_length": args.max_length, "systems": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'system':<42}{'pairs/s':>9}{'cpu s/pair':>11}{'RSS MB':>8}{'tokens':>8}"
          f"{'max diff':>9}{'top-1':>7}  (vs float32)")
    for row in rows:
        print(f"{row['system']:<42}{row['pairs_per_s']:>9}{row['cpu_s_per_pair']:>11}"
              f"{row['peak_rss_mb']:>8}{row['tokens_per_pair']:>8.0f}"
              f"{row['vs_first']['max_abs_diff']:>9.2g}{row['vs_first']['top1_agreement']:>7}")


if __name__ == "__main__":
    main()
