"""Graphs built from safetensors (reranker.models): build time, peak memory, speed of the result.

Part 1, build cost. For MiniLM- (cross-encoder/ms-marco-MiniLM-L6-v2), XLM-R-base-
(bge-reranker-base) and XLM-R-large-shaped (bge-reranker-v2-m3: 24 layers, hidden 1024,
vocabulary 250002, 8194 positions, 2.27 GB of float32) checkpoints with random weights, each
build runs in a fresh Python process that reports its own peak resident memory (``VmHWM``)
after the imports and after ``build_onnx``, its wall time, and whether the weights went to
external data (Linux only). The checkpoints are written tensor by tensor, so this script never
holds a large model either.

Part 2, speed of the result. On the MiniLM-shaped preset stand-in (``build_preset_standin``,
the same weights exported by ``torch.onnx`` as the Hub's files were, when torch is installed),
pairs/s of the graph built from ``model.safetensors`` against the exported ``onnx/model.onnx``,
for optimization ``none`` and ``int8``, in one run: rounds rotate the order of the four systems,
and the best round is reported next to the median (the load of a shared machine drifts).

Usage::

    python benchmarks/graph_build.py                  # all three shapes + speed
    python benchmarks/graph_build.py --shapes minilm  # quick
    python benchmarks/graph_build.py --json benchmarks/results/graph_build.json

Needs ~5 GB of free disk under --work-dir for the large shape (checkpoint + built graph).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_facts  # noqa: E402

# name -> (arch, layers, hidden, heads, intermediate, vocab, positions)
SHAPES: dict[str, tuple[str, int, int, int, int, int, int]] = {
    "minilm": ("bert", 6, 384, 12, 1536, 30522, 512),
    "xlmr-base": ("xlmr", 12, 768, 12, 3072, 250002, 514),
    "xlmr-large": ("xlmr", 24, 1024, 16, 4096, 250002, 8194),
}

# VmHWM, the peak resident memory of this process image: getrusage's ru_maxrss would also count
# the parent's resident memory at fork time, which exec keeps.
_CHILD = r"""
import json, sys, time
from pathlib import Path
def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from reranker.models.build import build_onnx
before = peak_mb()
started = time.perf_counter()
path = build_onnx(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak_mb(),
                  "external_data": path.with_name(path.name + "_data").exists()}))
"""


def _spec(shape: str):  # type: ignore[no-untyped-def]
    from reranker.testing.spec import CrossEncoderSpec

    arch, layers, hidden, heads, inter, vocab, positions = SHAPES[shape]
    return CrossEncoderSpec(
        arch=arch, num_labels=1, num_layers=layers, hidden_size=hidden, num_heads=heads,
        intermediate_size=inter, max_length=positions - (2 if arch == "xlmr" else 0),
        vocab_size=vocab,
    )


def _tensor_shapes(spec) -> dict[str, tuple[int, ...]]:  # type: ignore[no-untyped-def]
    """The names and shapes ``make_weights`` gives, without making the weights."""
    p, h, inter = spec.prefix, spec.hidden_size, spec.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        f"{p}.embeddings.word_embeddings.weight": (spec.vocab_size, h),
        f"{p}.embeddings.position_embeddings.weight": (spec.max_position_embeddings, h),
        f"{p}.embeddings.token_type_embeddings.weight": (spec.type_vocab_size, h),
        f"{p}.embeddings.LayerNorm.weight": (h,),
        f"{p}.embeddings.LayerNorm.bias": (h,),
    }

    def linear(name: str, out_dim: int, in_dim: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out_dim, in_dim), (out_dim,)

    for i in range(spec.num_layers):
        layer = f"{p}.encoder.layer.{i}"
        for part in ("self.query", "self.key", "self.value", "output.dense"):
            linear(f"{layer}.attention.{part}", h, h)
        linear(f"{layer}.intermediate.dense", inter, h)
        linear(f"{layer}.output.dense", h, inter)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{layer}.{norm}.weight"] = shapes[f"{layer}.{norm}.bias"] = (h,)
    if spec.arch == "bert":
        linear(f"{p}.pooler.dense", h, h)
        linear("classifier", spec.num_labels, h)
    else:
        linear("classifier.dense", h, h)
        linear("classifier.out_proj", spec.num_labels, h)
    return shapes


def write_checkpoint(folder: Path, shape: str, seed: int = 0) -> int:
    """A random-weight safetensors checkpoint written tensor by tensor; returns its bytes."""
    from reranker.testing.spec import hf_config

    spec = _spec(shape)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(spec), indent=2))
    shapes = _tensor_shapes(spec)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dims in shapes.items():
        size = 4 * int(np.prod(dims))
        header[name] = {"dtype": "F32", "shape": list(dims),
                        "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    with (folder / "model.safetensors").open("wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for dims in shapes.values():
            fan_in = dims[-1] if len(dims) == 2 else 1
            for rows in np.array_split(np.arange(dims[0]), max(1, dims[0] // 16384)):
                piece = rng.standard_normal((len(rows), *dims[1:]), dtype=np.float32)
                f.write((piece / np.sqrt(fan_in)).astype("<f4").tobytes())
    return offset


def measure_build(shape: str, work: Path) -> dict[str, object]:
    folder = work / f"checkpoint-{shape}"
    weights = write_checkpoint(folder, shape)
    target = work / f"built-{shape}" / "model.onnx"
    shutil.rmtree(target.parent, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(target)],
                          capture_output=True, text=True, env=env, check=True)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    written = sum(p.stat().st_size for p in target.parent.iterdir())
    shutil.rmtree(target.parent, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    rounded = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}
    return {"shape": shape, "weights_mb": round(weights / 2**20),
            "written_mb": round(written / 2**20), **rounded}  # fmt: skip


def measure_speed(work: Path, rounds: int, requests: int) -> list[dict[str, object]]:
    from benchmarks.standins import build_preset_standin
    from reranker import Reranker
    from reranker.sample_requests import benchmark_requests

    folder = work / "standin-fast"
    if not (folder / "onnx" / "model.onnx").is_file():
        build_preset_standin(folder, "fast", quantize=False)
    producer = _producer(folder / "onnx" / "model.onnx")
    reqs = benchmark_requests(requests, documents_per_request=50)
    pairs = sum(len(r.documents) for r in reqs)
    systems = {}
    for optimization in ("none", "int8"):
        for fmt in ("onnx", "safetensors"):
            config = {"type": "custom", "model_id": str(folder), "model_format": fmt,
                      "optimization": optimization, "cache_dir": str(work / "cache")}  # fmt: skip
            systems[f"{fmt}/{optimization}"] = Reranker(config)
    timings: dict[str, list[float]] = {name: [] for name in systems}
    scores: dict[str, np.ndarray] = {}
    for name, rr in systems.items():  # warm-up, and scores for agreement
        scores[name] = np.concatenate([rr.backend.score(r.query, r.documents) for r in reqs[:2]])
    names = list(systems)
    for round_index in range(rounds):
        # Rotate the order each round: on a shared machine the load drifts within a round.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            rr = systems[name]
            started = time.perf_counter()
            for r in reqs:
                rr.backend.score(r.query, r.documents)
            timings[name].append(pairs / (time.perf_counter() - started))
    rows = []
    for name, rr in systems.items():
        fmt, optimization = name.split("/")
        peer = scores[f"{'safetensors' if fmt == 'onnx' else 'onnx'}/{optimization}"]
        label = f"exported ({producer})" if fmt == "onnx" else "built (reranker.models)"
        rows.append({"model": label, "optimization": optimization,
                     "pairs_per_s_median": round(float(np.median(timings[name])), 1),
                     "pairs_per_s_best": round(float(np.max(timings[name])), 1),
                     "pairs_per_s_rounds": [round(t, 1) for t in timings[name]],
                     "max_abs_diff_vs_other": float(np.abs(scores[name] - peer).max())})
        rr.close()
    return rows


def _producer(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).producer_name or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    default_work = Path.home() / ".cache" / "reranker-bench" / "graph"
    parser.add_argument("--work-dir", type=Path, default=default_work)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"machine": machine_facts(), "builds": [], "speed": []}
    for shape in args.shapes:
        row = measure_build(shape, args.work_dir)
        report["builds"].append(row)  # type: ignore[attr-defined]
        print(json.dumps(row), flush=True)
    if not args.no_speed:
        for row in measure_speed(args.work_dir, args.rounds, args.requests):
            report["speed"].append(row)  # type: ignore[attr-defined]
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
