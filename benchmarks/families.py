"""Speed, memory and build time of the encoder families on their real shapes (random weights).

Stand-ins (:mod:`reranker.testing.families`, real config layout and tensor names, random
weights, the kit tokenizers padded to the real vocabulary) of:

* ``deberta_v2``: mxbai-rerank-base-v1 (12 x 768, 256 buckets, 128,100 tokens);
* ``mgte``: gte-multilingual-reranker-base (12 x 768, NTK rope, 250,048 tokens);
* ``jinabert``: jina-reranker-v1-turbo-en (6 x 384, 12 heads, ALiBi, 30,528 tokens);
* ``jina_v2``: jina-reranker-v2-base-multilingual (12 x 768, 250,002 tokens).

Each system scores one query against 100 documents of about 300 tokens (query included) in its
own process, so its peak RSS (``VmHWM``) is what a replica needs:

* ``float32`` / ``int8``: the library (``custom``, built from safetensors; int8 is the
  ``optimization: int8`` recipe), graph already built (the build is timed on its own);
* ``torch``: the authors' code where it runs here. DeBERTa-v2: transformers'
  ``DebertaV2ForSequenceClassification`` as ``MxbaiRerankV1.predict`` calls it; jina-v2: stock
  ``XLMRobertaForSequenceClassification`` on the same weights under stock names (the flash
  implementation's CPU path is that computation; its code is remote). mGTE and JinaBERT have
  no torch peer: their modeling code is ``trust_remote_code`` from the Hub, not reachable
  here; ``torch (same-cost BERT)`` is transformers' BERT of the same depth, width and MLP
  FLOPs (an approximate cost peer, not the authors' code).

    python benchmarks/families.py [--families deberta_v2,mgte] [--docs 100] [--threads 2]

Not part of the test suite. Results: ``benchmarks/results/families-encoders.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_WORK_DIR, machine_facts, top10_agreement  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "deberta_v2": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                       max_position_embeddings=512, position_buckets=256, vocab_size=128100),
    "mgte": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                 max_position_embeddings=8192, vocab_size=250048),
    "jinabert": dict(num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536,
                     max_position_embeddings=8192, vocab_size=30528),
    "jina_v2": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                    max_length=1024, vocab_size=250002),
}
REPOS = {"deberta_v2": "mixedbread-ai/mxbai-rerank-base-v1",
         "mgte": "Alibaba-NLP/gte-multilingual-reranker-base",
         "jinabert": "jinaai/jina-reranker-v1-turbo-en",
         "jina_v2": "jinaai/jina-reranker-v2-base-multilingual"}
TORCH_PEER = {"deberta_v2": "torch (transformers DeBERTa-v2, mxbai predict)",
              "jina_v2": "torch (transformers XLM-R, same weights)",
              "mgte": "torch (same-cost BERT)", "jinabert": "torch (same-cost BERT)"}
RESULTS = Path(__file__).resolve().parent / "results" / "families-encoders"
QUERY = "how do cross encoders rank the results of a search engine"
BATCH = 32  # mxbai-rerank's and compute_score's default batch size


def _kit(family: str) -> Any:
    import importlib

    return importlib.import_module(f"reranker.testing.families.{family}")


def _standin(work: Path, family: str) -> Path:
    folder = work / f"{family}-standin"
    marker = folder / "standin.json"
    if not marker.is_file():
        started = time.perf_counter()
        _kit(family).make_checkpoint(folder, **SHAPES[family])
        marker.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
    return folder


def _documents(count: int, words: int = 280) -> list[str]:
    import numpy as np

    from reranker.testing.wordlist import ENGLISH_WORDS

    rng = np.random.RandomState(0)
    vocab = list(ENGLISH_WORDS)
    return [" ".join(rng.choice(vocab, size=words - 10 + int(rng.randint(0, 20))))
            for _ in range(count)]


def _peak_rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return -1


def _library_config(folder: Path, cache: Path, optimization: str, threads: int) -> dict[str, Any]:
    return {"type": "custom", "model_id": str(folder), "model_format": "safetensors",
            "cache_dir": str(cache), "optimization": optimization, "threads": threads,
            "batch_size": BATCH}


def _child_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build the graph (and the int8 variant) into an emptied cache: the build time a user
    pays once; the measured systems then load from this cache."""
    import shutil

    from reranker import Reranker

    folder = _standin(args.work_dir, args.family)
    out: dict[str, Any] = {}
    cache = args.work_dir / f"cache-{args.family}"
    shutil.rmtree(cache, ignore_errors=True)
    for optimization in ("none", "int8"):
        started = time.perf_counter()
        Reranker(_library_config(folder, cache, optimization, args.threads)).close()
        out[optimization] = round(time.perf_counter() - started, 1)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _child_library(args: argparse.Namespace) -> dict[str, Any]:
    from reranker import Reranker

    folder = _standin(args.work_dir, args.family)
    docs = _documents(args.docs)
    started = time.perf_counter()
    rr = Reranker(_library_config(folder, args.work_dir / f"cache-{args.family}", args.system,
                                  args.threads))
    load_s = time.perf_counter() - started
    tokens = [len(row) for row in rr.backend.encode(QUERY, docs).ids]
    rr.rerank(QUERY, docs[:1])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = rr.rerank(QUERY, docs, raw_scores=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rr.close()
    scores = [r.score for r in sorted(results, key=lambda r: r.index)]
    return {"pairs_per_s": round(len(docs) / wall, 2), "cpu_s_per_pair": round(cpu / len(docs), 2),
            "load_s": round(load_s, 1), "tokens_per_pair": round(sum(tokens) / len(tokens)),
            "peak_rss_mb": _peak_rss_mb(), "scores": scores}


def _stock_xlmr(folder: Path, work: Path) -> Path:
    """The jina-v2 stand-in under stock XLM-R names, for transformers."""
    from safetensors.numpy import load_file, save_file

    stock = work / "jina_v2-stock"
    if (stock / "model.safetensors").is_file():
        return stock
    stock.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (stock / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map", None)
    (stock / "config.json").write_text(json.dumps(config))
    kit = _kit("jina_v2")
    weights = kit.to_transformers_names(load_file(str(folder / "model.safetensors")),
                                        config["num_hidden_layers"])
    save_file(weights, str(stock / "model.safetensors"), metadata={"format": "pt"})
    return stock


def _child_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    folder = _standin(args.work_dir, args.family)
    docs = _documents(args.docs)
    started = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    max_length = int(tok.model_max_length)
    same_weights = args.family in ("deberta_v2", "jina_v2")
    if args.family == "deberta_v2":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    elif args.family == "jina_v2":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(_stock_xlmr(folder, args.work_dir)), attn_implementation="eager")
    else:
        shape = SHAPES[args.family]
        # Same depth, width, heads and MLP multiply-adds (a GLU of I costs 3 H I; a dense
        # MLP of 1.5 I costs 3 H I); absolute positions of the window's length.
        config = transformers.BertConfig(
            vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
            num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"],
            intermediate_size=shape["intermediate_size"] * 3 // 2,
            max_position_embeddings=max_length, num_labels=1)
        model = transformers.BertForSequenceClassification(config)
    model = model.eval()
    load_s = time.perf_counter() - started

    def predict(batch: list[str]) -> list[float]:
        enc = tok([QUERY] * len(batch), batch, padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        if not same_weights:
            enc.pop("token_type_ids", None)
        with torch.inference_mode():
            return model(**enc).logits[:, 0].float().tolist()

    predict(docs[:1])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    scores = [s for i in range(0, len(docs), BATCH) for s in predict(docs[i:i + BATCH])]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"pairs_per_s": round(len(docs) / wall, 2), "cpu_s_per_pair": round(cpu / len(docs), 2),
            "load_s": round(load_s, 1),
            "peak_rss_mb": _peak_rss_mb(), "scores": scores if same_weights else None}


def _run_child(args: argparse.Namespace, family: str, system: str, python: str) -> dict[str, Any]:
    cmd = [python, __file__, "--child", system, "--family", family, "--docs", str(args.docs),
           "--threads", str(args.threads), "--work-dir", str(args.work_dir)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    loads = ", ".join(f"{f['family']} {f.get('machine', m)['load_avg'][0]}"
                      for f in report["families"])
    lines = [
        "# Encoder families: speed, memory, build (random-weight stand-ins, real shapes)",
        "",
        f"CPU: {m['cpu']} ({m['cores']} cores here; AVX-512 {m['avx512f']}, VNNI "
        f"{m['avx512_vnni']}, AMX {m['amx_int8']}); threads {report['threads']}; "
        f"{report['docs']} documents of ~300 tokens per query, one pass after a warm-up. The "
        f"machine is shared (1-minute load when each family ran: {loads}): figures are "
        "indicative, one repeat; ratios compare systems of the same run.",
        "",
        "| family (shape of) | system | pairs/s | vs torch | CPU s/pair | peak RSS MB | load s |"
        " build s | tokens/pair | top-10 vs float32 | max raw diff vs torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fam in report["families"]:
        torch_rate = next((s["pairs_per_s"] for s in fam["systems"] if s["system"].startswith(
            "torch")), None)
        for s in fam["systems"]:
            ratio = f"{s['pairs_per_s'] / torch_rate:.2f}x" if torch_rate and not s[
                "system"].startswith("torch") else "-"
            build = fam["build_s"].get({"float32": "none", "int8": "int8"}.get(s["system"], ""),
                                       "-")
            lines.append(
                f"| {fam['family']} ({fam['repo']}) | {s['system']} | {s['pairs_per_s']} | "
                f"{ratio} | {s.get('cpu_s_per_pair', '-')} | {s['peak_rss_mb']} | {s['load_s']} | "
                f"{build} | "
                f"{s.get('tokens_per_pair', '-')} | {s.get('top10_vs_float32', '-')} | "
                f"{s.get('max_raw_diff_vs_torch', '-')} |")
    lines += ["", "Stand-in weights are random: scores carry no meaning, but every FLOP is "
              "there; top-10 agreement of random-weight scores understates what trained "
              "weights keep. Build: safetensors to ONNX (and int8 quantization) into an empty "
              "cache, once per model and version.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(SHAPES))
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "families")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="a Python with torch and transformers (default: this one)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        args.system = args.child
        run = {"build": _child_build, "torch": _child_torch}.get(args.child, _child_library)
        print(json.dumps(run(args)))
        return
    report: dict[str, Any] = {"machine": machine_facts(), "threads": args.threads,
                              "docs": args.docs, "families": []}
    previous = RESULTS.with_suffix(".json")
    if previous.is_file():  # a run of some families keeps the others' last figures
        report["families"] = json.loads(previous.read_text()).get("families", [])
    for family in args.families.split(","):
        started = time.perf_counter()
        _standin(args.work_dir, family)
        standin_s = round(time.perf_counter() - started, 1)
        build = _run_child(args, family, "build", sys.executable)
        systems = []
        # torch between the two library runs: a change of load hits both sides.
        for system in ("none",) + (() if args.no_torch else ("torch",)) + ("int8",):
            python = args.torch_python if system == "torch" else sys.executable
            row = _run_child(args, family, system, python)
            row["system"] = {"none": "float32", "int8": "int8"}.get(system, TORCH_PEER[family])
            systems.append(row)
            print(f"{family:<11}{row['system']:<48}{row['pairs_per_s']:>8} pairs/s"
                  f"{row['peak_rss_mb']:>8} MB", file=sys.stderr)
        import numpy as np

        full = np.asarray(systems[0]["scores"])
        torch_scores = None if args.no_torch else systems[1].get("scores")
        for row in systems:
            if row.get("scores") is None:
                continue
            row["top10_vs_float32"] = round(top10_agreement(full, np.asarray(row["scores"])), 2)
            if torch_scores is not None:
                diff = np.abs(np.asarray(torch_scores) - np.asarray(row["scores"])).max()
                row["max_raw_diff_vs_torch"] = float(f"{diff:.2g}")
        for row in systems:
            row.pop("scores", None)
        entry = {"family": family, "repo": REPOS[family], "shape": SHAPES[family],
                 "machine": machine_facts(), "standin_s": standin_s, "build_s": build,
                 "systems": systems}
        kept = [f for f in report["families"] if f["family"] != family]
        report["families"] = sorted([*kept, entry], key=lambda f: list(SHAPES).index(
            f["family"]))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        RESULTS.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
