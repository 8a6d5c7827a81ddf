"""ONNX Runtime's OpenVINO execution provider against its CPU provider, on the stand-in model.

Needs ``onnxruntime-openvino``, which replaces the ``onnxruntime`` module, so it runs in a
separate virtual environment with the repository on ``PYTHONPATH`` (reranker does not depend
on OpenVINO)::

    python3 -m venv /tmp/ovvenv
    /tmp/ovvenv/bin/pip install onnxruntime-openvino tokenizers numpy pydantic
    PYTHONPATH=. /tmp/ovvenv/bin/python benchmarks/openvino_ep.py

Each model file (float32 export, Hub-style int8, and the ``optimization: int8`` file that
``compare.py`` built, when ``--int8-file`` names it) runs through ``OnnxCrossEncoder`` with
the CPU provider at the library's CPU defaults (one single-threaded run per core, batches of
up to 512 tokens) and with the OpenVINO provider (CPU device) at those batches and at large
ones (32 rows, 8192 tokens, one run). Variants take turns request by request; reported:
pairs/s from the median request, and agreement with the CPU provider's float32 scores.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_WORK_DIR, top10_agreement  # noqa: E402

OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"


def _runner(path: Path, provider: str, large_batches: bool) -> Any:
    from reranker.onnx_model import OnnxCrossEncoder

    providers: list[Any] = [CPU]
    if provider == OPENVINO:
        providers = [(OPENVINO, {"device_type": "CPU"}), CPU]
    if large_batches:
        return OnnxCrossEncoder(path, providers=providers, batch_size=32,
                                max_tokens_per_batch=8192, parallel_runs=1)
    return OnnxCrossEncoder(path, providers=providers, max_tokens_per_batch=512,
                            parallel_runs=2, threads=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--int8-file", type=Path, help="the optimization='int8' model file")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from reranker.sample_requests import benchmark_requests
    from reranker.tokenization import PairTokenizer

    folder = args.work_dir / "standin-fast"
    files = {"fp32": folder / "onnx" / "model.onnx",
             "hub-int8": folder / "onnx" / "model_quantized.onnx"}
    if args.int8_file:
        files["recipe-int8"] = args.int8_file
    tok = PairTokenizer(folder / "tokenizer.json", 512)
    requests = [tok.encode(r.query, r.documents) for r in benchmark_requests(args.requests)]
    runners: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, path in files.items():
        for provider, large in ((CPU, False), (OPENVINO, False), (OPENVINO, True)):
            label = f"{name} {provider.removesuffix('ExecutionProvider')}" + (
                " 32x8192" if large else " <=512")
            try:
                runners[label] = _runner(path, provider, large)
                runners[label].run(requests[0].ids[:4], requests[0].type_ids[:4])
            except Exception as exc:  # reported, not fatal: one file may not run on OpenVINO
                failed[label] = f"{type(exc).__name__}: {str(exc)[:200]}"
    times: dict[str, list[float]] = {k: [] for k in runners}
    scores: dict[str, list[np.ndarray]] = {k: [] for k in runners}
    for rnd in range(args.rounds):
        for enc in requests:
            for label, runner in runners.items():
                t0 = time.perf_counter()
                out = runner.run(enc.ids, enc.type_ids)
                times[label].append(time.perf_counter() - t0)
                if rnd == 0:
                    scores[label].append(out.astype(np.float64))
    ref = scores.get("fp32 CPU <=512")
    from benchmarks._common import cpu_line

    print(cpu_line())
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    print(f"{'variant':<32} {'pairs/s':>8} {'p50 s':>7} {'top10':>6} {'max diff':>9}")
    for label in runners:
        p50 = statistics.median(times[label])
        top10 = diff = float("nan")
        if ref:
            top10 = float(np.mean(
                [top10_agreement(a, b) for a, b in zip(scores[label], ref, strict=True)]))
            diff = max(float(np.abs(a - b).max()) for a, b in zip(scores[label], ref, strict=True))
        print(f"{label:<32} {len(requests[0].ids) / p50:>8.1f} {p50:>7.3f} {top10:>6.3f} "
              f"{diff:>9.4f}")
    for label, why in failed.items():
        print(f"{label}: failed: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
