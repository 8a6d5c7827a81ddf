"""Speed and memory of the vision reranker on the Qwen3-VL-Reranker-2B shape, random weights.

The stand-in has the 2B model's vision tower exactly (24 blocks, hidden 1024, 16 heads, MLP
4096, DeepStack after blocks 5, 11, 17, a 48 x 48 position table, merger to 2048) and its text
decoder's width (hidden 2048, 16 query / 8 key-value heads of 128, SwiGLU 6144, interleaved
M-RoPE 24/20/20) with ``--text-layers`` of its 28 layers and the test tokenizer's vocabulary
(the 151,936-row embedding is a lookup: 1.24 GB of memory, no compute). Each system runs in its
own process, so its peak RSS is what a replica needs for it:

* ``float32`` / ``int8``: this library (vision graph once per distinct image, decoder graph);
* ``transformers``: ``Qwen3VLModel`` in torch float32, run per pair as the authors'
  ``Qwen3VLReranker.process`` does (vision tower included in every pair).

One query, ``--images`` page images (``--page`` pixels, resized within ``--max-pixels``) as
documents. Preprocessing (decode, resize, patches) is timed apart from the model.

    python benchmarks/vision.py [--images 2] [--max-pixels 262144] [--text-layers 2]

Not part of the test suite. Results go to ``benchmarks/results/vision.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "vision.md"
SHAPE_2B = dict(hidden_size=2048, num_heads=16, num_kv_heads=8, head_dim=128,
                mrope_section=(24, 20, 20), vision_hidden=1024, vision_heads=16,
                vision_depth=24, deepstack=(5, 11, 17), position_table=2304)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pages(n: int, size: tuple[int, int]) -> list[bytes]:
    from reranker.testing.families.qwen3_vl import make_image

    return [make_image(size[0], size[1], seed=i, fmt="PNG") for i in range(n)]


def _run_library(folder: Path, args: argparse.Namespace, optimization: str) -> dict[str, Any]:
    from reranker.backends.base import ScoreItem
    from reranker.backends.vision import VisionRerankerBackend
    from reranker.config import CustomConfig

    started = time.perf_counter()
    backend = VisionRerankerBackend("bench", folder, 2048, CustomConfig(
        model_id=str(folder), cache_dir=str(args.work / "cache"), optimization=optimization,
        max_run_memory_mb=4096), max_pixels=args.max_pixels)
    load_s = time.perf_counter() - started
    docs = [{"image": p} for p in _pages(args.images, args.page)]
    item = ScoreItem("which page shows the quarterly revenue chart?", docs)
    backend.score(item.query, [docs[0]])  # warm-up
    t0 = time.perf_counter()
    rows, images, order = backend.encode(item)
    t1 = time.perf_counter()
    encoded = backend._encode_images(images)
    t2 = time.perf_counter()
    scores = backend._run_rows(rows, order, encoded)
    t3 = time.perf_counter()
    return {"load_s": load_s, "preprocess_s": t1 - t0, "vision_s": t2 - t1,
            "decoder_s": t3 - t2, "pairs_per_s": len(docs) / (t3 - t1),
            "tokens_per_pair": [len(r.ids) for r in rows], "scores": scores.tolist(),
            "peak_rss_mb": _rss_mb()}


def _run_torch(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from reranker.backends.base import ScoreItem
    from reranker.backends.vision import VisionRerankerBackend
    from reranker.config import CustomConfig

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = Qwen3VLForConditionalGeneration.from_pretrained(
        str(folder), dtype=torch.float32).eval()
    load_s = time.perf_counter() - started
    # The same ids and pixels as the library's (preprocessing is not what is compared here).
    prep = VisionRerankerBackend("prep", folder, 2048, CustomConfig(
        model_id=str(folder), cache_dir=str(args.work / "cache"), max_run_memory_mb=4096),
        max_pixels=args.max_pixels)
    docs = [{"image": p} for p in _pages(args.images, args.page)]
    rows, images, order = prep.encode(ScoreItem("which page shows the quarterly revenue chart?",
                                                docs))
    table = model.lm_head.weight.detach()
    row = table[prep.tokenizer.yes_id] - table[prep.tokenizer.no_id]
    scores = []
    t0 = time.perf_counter()
    for r, keys in zip(rows, order, strict=True):
        ids = torch.tensor([r.ids])
        with torch.no_grad():
            hidden = model.model(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                mm_token_type_ids=(ids == prep.tokenizer.image_pad).int(),
                pixel_values=torch.tensor(np.concatenate([images[k].pixel_values
                                                          for k in keys])),
                image_grid_thw=torch.tensor([images[k].grid for k in keys]),
            ).last_hidden_state[0, -1]
        scores.append(float(hidden @ row))
    elapsed = time.perf_counter() - t0
    return {"load_s": load_s, "pairs_per_s": len(docs) / elapsed, "scores": scores,
            "peak_rss_mb": _rss_mb()}


def _child(args: argparse.Namespace) -> None:
    folder = args.work / f"qwen3-vl-2b-shape-{args.text_layers}l"
    if args.system == "transformers":
        out = _run_torch(folder, args)
    else:
        out = _run_library(folder, args, args.system.replace("float32", "none"))
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--page", default="1240x1754", help="page size in pixels (A4, 150 dpi)")
    p.add_argument("--max-pixels", type=int, default=256 * 32 * 32)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/reranker-bench-vision"))
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--systems", default="float32,int8,transformers")
    args = p.parse_args()
    args.page = tuple(int(v) for v in str(args.page).split("x"))
    if args.system:
        _child(args)
        return
    from reranker.testing.families.qwen3_vl_models import build_qwen3_vl_reranker

    folder = args.work / f"qwen3-vl-2b-shape-{args.text_layers}l"
    if not (folder / "model.safetensors").is_file():
        build_qwen3_vl_reranker(folder, num_layers=args.text_layers, **SHAPE_2B)  # type: ignore[arg-type]
    # Preprocessing alone, for the 20 page images a query is reranked against.
    from reranker.models.vision.images import decode_image
    from reranker.models.vision.qwen_vl import VisionPreprocess, patchify

    pages = _pages(20, args.page)
    started = time.perf_counter()
    for data in pages:
        patchify(decode_image(data), VisionPreprocess())  # the authors' 1800-token bound
    prep_full = (time.perf_counter() - started) / 20
    results: dict[str, Any] = {}
    for system in args.systems.split(","):
        cmd = [sys.executable, __file__, "--system", system, "--images", str(args.images),
               "--page", "x".join(map(str, args.page)), "--max-pixels", str(args.max_pixels),
               "--text-layers", str(args.text_layers), "--threads", str(args.threads),
               "--work", str(args.work)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            results[system] = {"error": done.stderr[-400:]}
            continue
        results[system] = json.loads(done.stdout.strip().splitlines()[-1])
        print(system, results[system], file=sys.stderr)
    _write(args, results, prep_full)


def _write(args: argparse.Namespace, results: dict[str, Any], prep_full: float) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("Model name")), "?")
    lines = [
        "# Vision reranker: Qwen3-VL-Reranker-2B shape, stand-in weights",
        "",
        f"CPU: {cpu}, {args.threads} threads (a shared host). Command: `python "
        f"benchmarks/vision.py --images {args.images} --max-pixels {args.max_pixels} "
        f"--text-layers {args.text_layers}`.",
        "",
        f"{args.images} page images of {args.page[0]}x{args.page[1]} px per query, resized "
        f"within {args.max_pixels} px; text decoder {args.text_layers} of 28 layers at full "
        "width.",
        "",
        "| system | pairs/s | preprocess s | vision s | decoder s | load s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][-120:]!r} | | | | | |")
            continue
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("preprocess_s", "vision_s",
                                                             "decoder_s")]
        lines.append(f"| {name} | {r['pairs_per_s']:.3f} | {' | '.join(cells)} | "
                     f"{r['load_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "pairs/s counts the model (vision tower once per distinct image, decoder); "
              "transformers runs the vision tower in every pair, as the authors' script does. "
              "Load: graph build (and int8 quantization) on first use, then cached; int8's "
              "peak RSS includes that one-off quantization in the same process.",
              "", f"Preprocessing alone (decode, resize to the authors' 1800-token bound, "
              f"patches), 20 pages: {prep_full * 1000:.0f} ms per page.", ""]
    if "float32" in results and "transformers" in results and "scores" in results["float32"]:
        import numpy as np

        a = np.asarray(results["float32"]["scores"])
        b = np.asarray(results["transformers"].get("scores", a))
        lines.append(f"max |float32 - transformers| raw score: {np.abs(a - b).max():.2e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
