"""Per-CPU run settings for local encoders: a short measurement at load, cached per CPU.

Which CPU run layout is fastest depends on the machine, the model file and the load beside it
(measured with ``benchmarks/cpu_settings.py``; figures in the Performance docs and
``benchmarks/results/measurements.md``). With ``calibrate_cpu`` set and neither
``parallel_runs`` nor ``max_tokens_per_batch`` configured, the backend times a few candidate
layouts on pairs of the model's own tokenizer (best of a few passes each, a few seconds in
all) and keeps the fastest. The choice is cached in the model cache under a key of the CPU
(model name, the instruction sets that pick ONNX Runtime's kernels, cores), the onnxruntime
version and the model file, so a replica on the same kind of machine reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reranker.onnx_model import CPU_TOKENS_PER_BATCH, OnnxCrossEncoder

__all__ = ["RunLayout", "calibrated_layout", "candidate_layouts", "cpu_signature"]

_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                 "amx_int8", "amx_bf16")
_PASSES = 3
_VERSION = 1


@dataclass(frozen=True)
class RunLayout:
    """How a model's runs are laid out on the CPU."""

    parallel_runs: int
    max_tokens_per_batch: int


def candidate_layouts(cores: int) -> list[RunLayout]:
    """The layouts timed: one run per core (the default) and one run with every core, at the
    default token budget and a larger one."""
    layouts = [RunLayout(cores, CPU_TOKENS_PER_BATCH), RunLayout(1, CPU_TOKENS_PER_BATCH),
               RunLayout(1, 4 * CPU_TOKENS_PER_BATCH)]
    return list(dict.fromkeys(layouts))


def cpu_signature(cores: int) -> dict[str, object]:
    """What decides the fastest layout: the CPU model, its kernel-picking flags, the cores
    this process may use and the onnxruntime version."""
    import onnxruntime

    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "flags": sorted(flags.intersection(_KERNEL_FLAGS)), "cores": cores,
            "onnxruntime": onnxruntime.__version__}


def _cache_file(cache_root: Path, model_file: Path, signature: dict[str, object]) -> Path:
    stat = model_file.stat()
    key = json.dumps({"model": str(model_file.resolve()), "size": stat.st_size,
                      "mtime": stat.st_mtime_ns, "cpu": signature, "v": _VERSION},
                     sort_keys=True)
    return cache_root / "calibration" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def calibrated_layout(
    model_file: Path,
    cache_root: Path,
    cores: int,
    make: Callable[[RunLayout], OnnxCrossEncoder],
    rows: Sequence[Sequence[int]],
    type_ids: Sequence[Sequence[int]],
) -> tuple[RunLayout, OnnxCrossEncoder | None]:
    """The fastest layout for ``model_file`` on this CPU, from the cache or measured now.

    ``make`` builds the model with a layout; when the layout was measured now, the model built
    for it is returned too (so it is not loaded twice), else ``None``.
    """
    signature = cpu_signature(cores)
    cached = _cache_file(cache_root, model_file, signature)
    try:
        chosen = json.loads(cached.read_text())["chosen"]
        return RunLayout(int(chosen["parallel_runs"]), int(chosen["max_tokens_per_batch"])), None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    timings: list[dict[str, object]] = []
    models: dict[int, OnnxCrossEncoder] = {}
    best: tuple[float, RunLayout] | None = None
    for layout in candidate_layouts(cores):
        model = models.get(layout.parallel_runs) or make(layout)
        models[layout.parallel_runs] = model
        model.max_tokens_per_batch = layout.max_tokens_per_batch
        model.run(rows[:2], type_ids[:2])  # warm-up: arenas, thread pools
        seconds = []
        for _ in range(_PASSES):
            started = time.perf_counter()
            model.run(rows, type_ids)
            seconds.append(time.perf_counter() - started)
        # The best pass: what the layout can do, least disturbed by other work.
        fastest = min(seconds)
        timings.append({"parallel_runs": layout.parallel_runs,
                        "max_tokens_per_batch": layout.max_tokens_per_batch,
                        "pairs_per_s": round(len(rows) / fastest, 2)})
        if best is None or fastest < best[0]:
            best = (fastest, layout)
    assert best is not None
    layout = best[1]
    keep = models.pop(layout.parallel_runs)
    keep.max_tokens_per_batch = layout.max_tokens_per_batch
    for other in models.values():
        other.close()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"signature": signature, "pairs": len(rows), "timings": timings,
                               "chosen": {"parallel_runs": layout.parallel_runs,
                                          "max_tokens_per_batch": layout.max_tokens_per_batch}},
                              indent=1) + "\n")
    tmp.replace(cached)
    return layout, keep
