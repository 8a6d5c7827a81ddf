"""Shared pieces of the benchmark scripts: stand-in model folders, machine facts, agreement.

Not part of the test suite. Stand-ins are built once into ``--work-dir`` (default
``~/.cache/reranker-bench``) and reused while the builder's version stays the same.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

BUILD_VERSION = 1
DEFAULT_WORK_DIR = Path.home() / ".cache" / "reranker-bench"


def top10_agreement(a: Any, b: Any) -> float:
    """Share of the top 10 (or of all, when fewer) of score arrays ``a`` and ``b`` in common."""
    import numpy as np

    k = min(10, len(a))
    return len(set(np.argsort(-a, kind="stable")[:k]) & set(np.argsort(-b, kind="stable")[:k])) / k


def standin_folder(name: str, work_dir: Path = DEFAULT_WORK_DIR) -> Path:
    """The stand-in of preset ``name`` (built with torch's exporter when torch is installed)."""
    from benchmarks.standins import build_preset_standin

    folder = work_dir / f"standin-{name}"
    marker = folder / "standin.json"
    if marker.is_file() and json.loads(marker.read_text()).get("version") == BUILD_VERSION:
        return folder
    started = time.perf_counter()
    build_preset_standin(folder, name, quantize=True)
    marker.write_text(
        json.dumps({"version": BUILD_VERSION, "seconds": time.perf_counter() - started}) + "\n"
    )
    return folder


def lscpu_facts() -> dict[str, object]:
    """``lscpu``'s model name, vendor, family/model/stepping and every flag (``{}`` without
    lscpu): the CPU a results file was measured on."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    keep = ("Model name", "Vendor ID", "CPU family", "Model", "Stepping", "CPU(s)",
            "Hypervisor vendor", "L2 cache", "L3 cache")
    facts: dict[str, object] = {k: fields[k] for k in keep if k in fields}
    facts["Flags"] = fields.get("Flags", "").split()
    return facts


def machine_facts() -> dict[str, object]:
    """CPU model, cores, load and instruction sets that decide fp32/int8 speed, with
    ``lscpu``'s model name and flags (:func:`lscpu_facts`)."""
    flags: set[str] = set()
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
        "lscpu": lscpu_facts(),
        "onnxruntime": _version("onnxruntime"),
    }


def cpu_line() -> str:
    """One line naming the CPU a printed table was measured on (for scripts that print)."""
    f = machine_facts()
    return (f"CPU: {f['cpu']}, {f['cores']} cores, AVX-512 VNNI {f['avx512_vnni']}, AMX int8 "
            f"{f['amx_int8']}, onnxruntime {f['onnxruntime']}, load average {f['load_avg']}")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
