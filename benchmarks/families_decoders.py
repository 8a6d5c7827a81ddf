"""Speed, memory and build time of the new decoder families on their real shapes (stand-ins).

Each family's smallest published shape, random weights in bfloat16 safetensors as the Hub ships
them (the test kits' ``make_checkpoint(..., bfloat16=True)``), the kits' offline tokenizers:

* ``mxbai_v2``: ``mixedbread-ai/mxbai-rerank-base-v2`` (Qwen2 0.5B: 24 layers, hidden 896,
  14 query / 2 key-value heads of 64, MLP 4864, tied 151,936-row embedding);
* ``nemotron``: ``nvidia/llama-nemotron-rerank-1b-v2`` (Llama 3.2 1B, bidirectional: 16
  layers, hidden 2048, 32 / 8 heads of 64, MLP 8192, 128,256 rows, llama3 RoPE).

Systems, each in its own process so its peak RSS (``VmHWM``) is what a replica needs:

* ``float32`` / ``int8``: this library's graph (built from the safetensors, no torch);
* ``transformers``: the authors' torch code on the same prompt ids: ``Qwen2ForCausalLM`` with
  mxbai-rerank's full-vocabulary logits (``MxbaiRerankV2.forward``), Nemotron's
  ``LlamaModel`` with every layer's ``is_causal`` off, mean pooling and the score row.

Build time is a separate cold run (empty cache: the graph build, or int8 quantization of the
built graph, plus the ONNX Runtime session; for torch ``from_pretrained``). Documents are ~300
tokens; one request of ``--docs`` documents per system (two CPU cores shared with other
users: fewer than 100 documents, so each run stays around a minute).

    python benchmarks/families_decoders.py [--families mxbai_v2,nemotron] [--docs 8]
    python benchmarks/families_decoders.py --tiny --families mxbai_v2,bge_gemma,\
        minicpm_layerwise,nemotron,zerank --docs 4     # the kits' tiny shapes: a quick check

Results: ``benchmarks/results/families-decoders.json`` and ``.md``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts, top10_agreement  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "mxbai_v2": dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
                     intermediate_size=4864, vocab_size=151936),
    "nemotron": dict(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                     intermediate_size=8192, vocab_size=128256,
                     original_max_position_embeddings=8192),
}
# Heavier shapes: the script runs them, but building their int8 graphs peaks at about three
# times the float32 weights (onnxruntime's quantize_dynamic), more than a shared 23 GB machine
# holds; MiniCPM has no transformers class, so it has no torch row.
SHAPES.update({
    "zerank": dict(hidden_size=2048, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                   intermediate_size=6144, vocab_size=151936),
    "bge_gemma": dict(hidden_size=2048, num_layers=18, num_heads=8, num_kv_heads=1,
                      head_dim=256, intermediate_size=16384, vocab_size=256000),
    "minicpm_layerwise": dict(hidden_size=2304, num_layers=40, num_heads=36, start_layer=8,
                              intermediate_size=5760, vocab_size=122753),
})
REPOS = {"mxbai_v2": "mixedbread-ai/mxbai-rerank-base-v2",
         "nemotron": "nvidia/llama-nemotron-rerank-1b-v2",
         "zerank": "zeroentropy/zerank-1-small", "bge_gemma": "BAAI/bge-reranker-v2-gemma",
         "minicpm_layerwise": "BAAI/bge-reranker-v2-minicpm-layerwise"}
SYSTEMS = ("float32", "int8", "transformers")
RESULTS = Path(__file__).resolve().parent / "results" / "families-decoders"
MAX_LENGTH = 512


def _kit(family: str) -> Any:
    import importlib

    return importlib.import_module(f"reranker.testing.families.{family}")


def _standin(work: Path, family: str) -> Path:
    tiny = os.environ.get("FAMILIES_TINY") == "1"  # --tiny: the kits' test shapes
    folder = work / f"{family}-{'tiny' if tiny else 'standin'}"
    if not (folder / "config.json").is_file():
        started = time.perf_counter()
        _kit(family).make_checkpoint(folder, **({} if tiny else {"bfloat16": True,
                                                                **SHAPES[family]}))
        print(f"{family}: stand-in written in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    return folder


def _request(docs: int) -> tuple[str, list[str]]:
    from reranker.testing.wordlist import ENGLISH_WORDS

    rng = random.Random(0)
    words = list(ENGLISH_WORDS)
    query = " ".join(rng.choice(words) for _ in range(8))
    return query, [" ".join(rng.choice(words) for _ in range(300)) for _ in range(docs)]


def _peak_rss_mb() -> int:
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _ours(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from reranker.config import parse_backend_config
    from reranker.registry import build_backend

    folder = _standin(args.work_dir, args.family)
    config = {"type": "custom", "model_id": str(folder), "model_format": "safetensors",
              "max_length": MAX_LENGTH, "cache_dir": str(args.work_dir / "cache"),
              "optimization": "int8" if args.system == "int8" else "none",
              "rule": args.family, "max_run_memory_mb": 4096}
    started = time.perf_counter()
    backend = build_backend(parse_backend_config(config))
    load_s = time.perf_counter() - started
    if args.build_only:
        backend.close()
        return {"system": args.system, "build_s": round(load_s, 1),
                "build_peak_rss_mb": _peak_rss_mb()}
    query, docs = _request(args.docs)
    tokens = [len(r) for r in backend.encode(query, docs).ids]
    backend.score(query, docs[:1])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scores = backend.score(query, docs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    backend.close()
    return {"system": args.system, "pairs": len(docs), "tokens_per_pair": float(np.mean(tokens)),
            "pairs_per_s": round(len(docs) / wall, 3), "cpu_s_per_pair": round(cpu / len(docs), 2),
            "load_s": round(load_s, 1), "peak_rss_mb": _peak_rss_mb(),
            "scores": [float(s) for s in scores]}


def _torch(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    folder = _standin(args.work_dir, args.family)
    kit = _kit(args.family)
    started = time.perf_counter()
    causal = {"mxbai_v2": "Qwen2ForCausalLM", "bge_gemma": "GemmaForCausalLM",
              "zerank": "Qwen3ForCausalLM"}
    if args.family in causal:
        import transformers

        model: Any = getattr(transformers, causal[args.family]).from_pretrained(
            str(folder), dtype=torch.float32).eval()
    else:
        from safetensors.torch import load_file
        from transformers import LlamaConfig, LlamaModel

        fields = json.loads((folder / "config.json").read_text())
        for key in ("architectures", "auto_map", "model_type", "pooling", "temperature"):
            fields.pop(key)
        model = LlamaModel(LlamaConfig(**fields)).eval()
        weights = load_file(str(folder / "model.safetensors"))
        model.load_state_dict({k.removeprefix("model."): v.float() for k, v in weights.items()
                               if k.startswith("model.")})
        for layer in model.layers:
            layer.self_attn.is_causal = False
        score_row = weights["score.weight"].float()[0]
    load_s = time.perf_counter() - started
    if args.build_only:
        return {"system": args.system, "build_s": round(load_s, 1),
                "build_peak_rss_mb": _peak_rss_mb()}
    query, docs = _request(args.docs)
    from reranker.testing.decoder_family_reference import load_tokenizer

    tok = load_tokenizer(folder)
    one = tok("1", add_special_tokens=False)["input_ids"][0]
    zero = tok("0", add_special_tokens=False)["input_ids"][0]
    yes = tok("Yes", add_special_tokens=False)["input_ids"][0]
    if args.family == "mxbai_v2":
        rows = kit.encode(folder, query, docs,
                          max_length=kit.package_max_length(folder, MAX_LENGTH))
    elif args.family == "bge_gemma":
        rows = kit.flag_llm_encode(folder, query, docs,
                                   max_length=kit.flag_max_length(folder, MAX_LENGTH))
    else:
        rows = kit.encode(folder, query, docs, max_length=MAX_LENGTH)
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id or 0
    left = args.family in causal  # the causal rerankers pad on the left, Nemotron right

    def batch(rs: list[list[int]]) -> tuple[Any, Any]:
        n = max(len(r) for r in rs)
        ids = [[pad] * (n - len(r)) + r if left else r + [pad] * (n - len(r)) for r in rs]
        mask = [[0] * (n - len(r)) + [1] * len(r) if left else [1] * len(r) + [0] * (n - len(r))
                for r in rs]
        return torch.tensor(ids), torch.tensor(mask)

    def forward(rs: list[list[int]]) -> list[float]:
        ids, mask = batch(rs)
        with torch.inference_mode():
            if args.family in causal:  # the authors' forward: logits at every position
                last = model(input_ids=ids, attention_mask=mask).logits[:, -1]
                if args.family == "mxbai_v2":
                    return (last[:, one] - last[:, zero]).tolist()
                scale = kit.TEMPERATURE if args.family == "zerank" else 1.0
                return (last[:, yes] / scale).tolist()
            keys = mask.bool()[:, None, None, :].expand(-1, 1, ids.shape[1], -1)
            hidden = model(input_ids=ids, attention_mask=keys).last_hidden_state
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            return (pooled @ score_row).tolist()

    forward(rows[:1])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scores = forward(rows)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"system": args.system, "pairs": len(docs),
            "tokens_per_pair": float(np.mean([len(r) for r in rows])), "padded_to": width,
            "pairs_per_s": round(len(docs) / wall, 3), "cpu_s_per_pair": round(cpu / len(docs), 2),
            "load_s": round(load_s, 1), "peak_rss_mb": _peak_rss_mb(), "scores": scores}


def _run(args: argparse.Namespace, family: str, system: str, build_only: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", system, "--family", family, "--docs",
           str(args.docs), "--work-dir", str(args.work_dir)]
    if build_only:
        cmd.append("--build-only")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Decoder families: speed, memory, build time (stand-in weights, real shapes)",
        "",
        f"CPU: {m['cpu']} ({m['cores']} cores, shared with other users; load at start "
        f"{m.get('load_1min', '?')}). One request of {report['docs']} documents of ~300 "
        f"tokens, max_length {MAX_LENGTH}; command: `python benchmarks/families_decoders.py "
        f"--docs {report['docs']}`.",
        "",
        "| Family (shape) | System | pairs/s | CPU s/pair | tokens/pair | peak RSS MB | "
        "build s | build peak RSS MB | max abs diff vs transformers | top-10 vs transformers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, rows in report["families"].items():
        for row in rows:
            lines.append(
                f"| {family} ({REPOS[family]}) | {row['system']} | {row['pairs_per_s']} | "
                f"{row['cpu_s_per_pair']} | {row['tokens_per_pair']:.0f} | {row['peak_rss_mb']} | "
                f"{row['build_s']} | {row['build_peak_rss_mb']} | "
                f"{row.get('max_abs_diff', '-')} | {row.get('top10', '-')} |")
        speed = {r["system"]: r["pairs_per_s"] for r in rows}
        if speed.get("transformers"):
            lines.append(f"| {family} | float32 / transformers | "
                         f"{speed['float32'] / speed['transformers']:.2f}x | | | | | | | |")
            lines.append(f"| {family} | int8 / transformers | "
                         f"{speed['int8'] / speed['transformers']:.2f}x | | | | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="mxbai_v2,nemotron")
    parser.add_argument("--docs", type=int, default=8)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "families-decoders")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true",
                        help="the test kits' tiny shapes (a quick check of the script)")
    args = parser.parse_args()
    if args.tiny:
        os.environ["FAMILIES_TINY"] = "1"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        args.system = args.child
        print(json.dumps(_torch(args) if args.child == "transformers" else _ours(args)))
        return
    report: dict[str, Any] = {"machine": {**machine_facts(),
                                          "load_1min": round(os.getloadavg()[0], 2)},
                              "docs": args.docs, "max_length": MAX_LENGTH, "families": {}}
    for family in args.families.split(","):
        _standin(args.work_dir, family)
        shutil.rmtree(args.work_dir / "cache", ignore_errors=True)  # cold builds
        rows = []
        systems = [s for s in SYSTEMS if s != "transformers" or family != "minicpm_layerwise"]
        for system in systems:  # float32 first: int8 quantizes the built float32 graph
            build = _run(args, family, system, build_only=True)
            row = {**_run(args, family, system, build_only=False), **build}
            rows.append(row)
            print(f"{family:<10}{system:<14}{row['pairs_per_s']:>8} pairs/s "
                  f"{row['peak_rss_mb']:>7} MB  build {row['build_s']} s", file=sys.stderr)
        import numpy as np

        by_system = {row["system"]: row for row in rows}
        reference = np.asarray(by_system.get("transformers", rows[0])["scores"])
        for row in rows:
            got = np.asarray(row["scores"])
            row["max_abs_diff"] = float(f"{np.abs(got - reference).max():.3g}")
            row["top10"] = round(top10_agreement(reference, got), 3)
        report["families"][family] = rows
        if not args.tiny:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
            RESULTS.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
