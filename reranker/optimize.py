"""Faster variants of an ONNX cross-encoder, built once and cached by the source's content hash.

Two recipes, chosen with ``LocalModelConfig.optimization``:

* ``"fused"``: ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``)
  replaces each layer's attention subgraph with one ``MultiHeadAttention`` kernel. Still
  float32; scores move by float rounding only.
* ``"int8"``: the fused graph, then dynamic int8 quantization of every weight matrix (scales
  per output channel; activations are quantized per run). Several times less weight memory and
  faster matrix products on CPUs with int8 dot-product instructions (VNNI, AMX); scores move
  by a few hundredths to tenths of a logit, which is why it is the default only where it
  was measured closer to float32 than the alternative (the ``fast`` preset, whose Hub int8
  file moves scores further) and why
  ``reranker bench`` and ``benchmarks/compare.py`` report its ranking agreement with float32.

Only the attention fusion is applied (the others measured slower than ONNX Runtime's own kernels;
``benchmarks/results/measurements.md``). For CPU the attention is fused without a padding mask
(``padding_free=True``): the runner then only batches pairs of equal length, and
``MultiHeadAttention`` takes its fast path (no mask, no [heads x length x length] score tensor).
GPUs get the masked form, which takes padded batches.

Results live in ``<cache>/<sha256 of the source>-<recipe>-ort<version>/model.onnx``, written
to a temporary folder and renamed into place, so concurrent loaders (Ray replicas) never read
half a file and a changed source file gets a new entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from reranker.errors import ConfigError, ModelLoadError
from reranker.hub import external_data_files
from reranker.model_folder import read_model_config

__all__ = ["OPTIMIZATIONS", "Optimization", "default_cache_root", "optimized_model"]

Optimization = Literal["none", "fused", "int8"]
OPTIMIZATIONS: tuple[str, ...] = ("none", "fused", "int8")
_RECIPE_VERSION = 2
_CHUNK = 1 << 22
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Models above this size keep their weights in a separate file (protobuf's limit is 2 GiB).
_EXTERNAL_DATA_BYTES = 1_800_000_000
BUILD_LIFETIME_S = 6 * 3600
"""A ``.build-*`` folder nothing has written to for this long is a killed build's leftover
(a decoder's is gigabytes): the next build in the same cache removes it. Live builds write
continuously (weights are streamed), so six hours of silence is never a build in progress."""


def default_cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where optimized models go: ``<cache_dir>/reranker-optimized`` when a cache dir is
    configured, else ``$XDG_CACHE_HOME/reranker/optimized`` (``~/.cache/reranker/optimized``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "reranker-optimized"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reranker" / "optimized"


def optimized_model(
    model_file: str | Path,
    optimization: Optimization,
    *,
    cache_root: str | Path | None = None,
    num_heads: int | None = None,
    hidden_size: int | None = None,
    padding_free: bool = True,
) -> Path:
    """The path of ``model_file`` after ``optimization``, building and caching it if needed.

    Args:
        model_file: a float32 ONNX export (external weight files beside it are followed).
        optimization: ``"none"`` returns ``model_file`` unchanged; ``"fused"`` or ``"int8"``.
        cache_root: folder of cached results; default :func:`default_cache_root`.
        num_heads, hidden_size: attention sizes for the fusions; default: read from the
            ``config.json`` next to the model (or one folder up), else detected from the graph.
        padding_free: fuse attention without the padding mask (the graph then has no
            ``attention_mask`` input and is run on unpadded batches): fastest on CPU.

    Example:
        >>> path = optimized_model("model/onnx/model.onnx", "int8")  # doctest: +SKIP

    Raises:
        ModelLoadError: the source is missing, already quantized, or the optimizer failed.
    """
    source = Path(model_file)
    if optimization == "none":
        return source
    if optimization not in OPTIMIZATIONS:
        raise ValueError(f"unknown optimization {optimization!r}; valid: {OPTIMIZATIONS}")
    if not source.is_file():
        raise ModelLoadError(f"model file not found: {source}")
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    import onnxruntime

    try:
        digest = _content_hash(source, root)
    except Exception as exc:  # onnx raises protobuf's DecodeError for a file that is not ONNX
        raise ModelLoadError(f"cannot read ONNX model {source}: {exc}") from exc
    recipe = f"{optimization}{'-nomask' if padding_free else ''}"
    entry = root / f"{digest[:32]}-{recipe}-ort{onnxruntime.__version__}-r{_RECIPE_VERSION}"
    target = entry / "model.onnx"
    if target.is_file():
        return target
    heads, hidden = _attention_sizes(source, num_heads, hidden_size)

    def make(work: Path) -> dict[str, object]:
        stats = _build(source, optimization, work, heads, hidden, padding_free)
        return {"source": str(source), "sha256": digest, "optimization": optimization,
                "padding_free": padding_free, "onnxruntime": onnxruntime.__version__,
                "fused_operators": stats}

    return build_cache_entry(target, make, meta_file="optimization.json",
                             failure=f"cannot build the {optimization} variant of {source}")


def build_cache_entry(
    target: Path, make: Callable[[Path], Mapping[str, object]], *, meta_file: str, failure: str
) -> Path:
    """``target`` (a file in a cache entry folder), made on first use.

    ``make(work)`` writes the entry's files into a temporary folder beside it and returns what
    goes into ``meta_file`` (build seconds added); the folder is then renamed into place, so a
    reader never sees half an entry, and a lost race keeps the winner's. Every model cache (the
    optimized variants, graphs built from safetensors, decoder graphs) goes through here.

    Raises:
        ModelLoadError: ``failure: <cause>`` when making it fails (library errors pass as they
            are).
    """
    if target.is_file():
        return target
    entry = target.parent
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(entry.parent)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=entry.parent))
        work.chmod(0o755)  # mkdtemp makes it private; other users of the cache read it
    except OSError as exc:
        raise ModelLoadError(
            f"{failure}: the model cache folder {entry.parent} is not writable ({exc}); set "
            "cache_dir to a writable folder"
        ) from exc
    try:
        started = time.perf_counter()
        meta = {**make(work), "seconds": round(time.perf_counter() - started, 2)}
        for made in work.rglob("*"):
            made.chmod(0o755 if made.is_dir() else 0o644)
        (work / meta_file).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(work, entry)
        except OSError:
            if not target.is_file():  # not a lost race: a real failure
                raise
    except (ModelLoadError, ConfigError):
        raise
    except Exception as exc:
        raise ModelLoadError(f"{failure}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _remove_stale_builds(folder: Path) -> None:
    """Remove ``.build-*`` folders of ``folder`` untouched for :data:`BUILD_LIFETIME_S`."""
    cutoff = time.time() - BUILD_LIFETIME_S
    for work in folder.glob(".build-*"):
        with contextlib.suppress(OSError):  # another process may be removing it too
            newest = max((p.stat().st_mtime for p in (work, *work.rglob("*"))), default=0.0)
            if newest < cutoff:
                shutil.rmtree(work)


def _fusion_options(padding_free: bool):  # type: ignore[no-untyped-def]
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    # Only attention is fused; see the module docstring for why the rest is left alone.
    for name in (
        "enable_gelu", "enable_bias_gelu", "enable_layer_norm", "enable_skip_layer_norm",
        "enable_bias_skip_layer_norm", "enable_embed_layer_norm",
    ):
        setattr(options, name, False)
    options.use_multi_head_attention = True
    if padding_free:
        options.disable_attention_mask()
    return options


def _build(
    source: Path, optimization: str, work: Path, heads: int, hidden: int, padding_free: bool
) -> dict[str, int]:
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    if _is_quantized(source):
        raise ModelLoadError(
            f"{source.name} is already quantized; optimization {optimization!r} needs the "
            "float32 export (for presets, the repository's onnx/model.onnx)"
        )
    # The fusion code logs a warning for every pattern it does not find; those are expected.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    def fuse(without_mask: bool):  # type: ignore[no-untyped-def]
        return optimize_model(
            str(source),
            model_type="bert",
            num_heads=heads,
            hidden_size=hidden,
            optimization_options=_fusion_options(without_mask),
            opt_level=0,
            use_gpu=False,
        )

    fused = fuse(padding_free)
    inputs = {i.name for i in fused.model.graph.input}
    if padding_free and "attention_mask" in inputs and _count(fused, "MultiHeadAttention"):
        # Some layers fused without the mask and others kept it: padded batches would be
        # wrong in the fused ones, so every layer keeps the mask.
        fused = fuse(False)
    stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    large = fused.model.ByteSize() > _EXTERNAL_DATA_BYTES
    fused_path = work / ("model.onnx" if optimization == "fused" else "fused.onnx")
    fused.save_model_to_file(str(fused_path), use_external_data_format=large)
    del fused
    if optimization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_root_logger():
            quantize_dynamic(
                fused_path,
                work / "model.onnx",
                weight_type=QuantType.QInt8,
                per_channel=True,
                use_external_data_format=large,
                extra_options={
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                    "MatMulConstBOnly": True,
                },
            )
        for leftover in work.glob("fused.onnx*"):
            leftover.unlink()
    return stats


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop the quantizer's advice to pre-process, which it logs on the root logger."""

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _count(model: object, op_type: str) -> int:
    return sum(node.op_type == op_type for node in model.model.graph.node)  # type: ignore[attr-defined]


def _is_quantized(source: Path) -> bool:
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    quantized = {"MatMulInteger", "DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul"}
    return any(node.op_type in quantized for node in graph.node)


def _attention_sizes(source: Path, heads: int | None, hidden: int | None) -> tuple[int, int]:
    """Heads and hidden size from config.json near the model; 0 lets the optimizer detect."""
    if heads and hidden:
        return heads, hidden
    for folder in (source.parent, source.parent.parent):
        data = read_model_config(folder)
        if data:
            return (
                heads or int(data.get("num_attention_heads", 0)),
                hidden or int(data.get("hidden_size", 0)),
            )
    return heads or 0, hidden or 0


def _external_files(source: Path) -> list[Path]:
    return [source.parent / name for name in sorted(external_data_files(source, source.name))]


def _content_hash(source: Path, root: Path) -> str:
    """sha256 of the graph and its external weights (:func:`content_digest`)."""
    return content_digest([source, *_external_files(source)], root)


def content_digest(files: Sequence[Path], root: Path, *, with_names: bool = False) -> str:
    """sha256 of ``files`` (with each file's name first when ``with_names``), memoized under
    ``root / "hashes"`` by path, size and mtime: hashing a gigabyte takes seconds.

    The digest names a cache entry (optimized models, graphs built from safetensors, decoder
    graphs), so a memo that is empty or torn (a crash or a concurrent writer) must never be
    trusted: two models would share the entry of the digest ``""`` and one would serve the
    other's weights. It is written whole with a rename, and any memo that is not a full sha256
    hex digest is recomputed.
    """
    stamp: list[object] = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
                           for f in files]
    if with_names:
        stamp.append("with names")  # another digest of the same files: another memo
    memo = root / "hashes" / (hashlib.sha1(repr(stamp).encode()).hexdigest() + ".txt")
    with contextlib.suppress(OSError, UnicodeDecodeError):
        remembered = memo.read_text(encoding="ascii").strip()
        if _SHA256_HEX.fullmatch(remembered):
            return remembered
    digest = hashlib.sha256()
    for f in files:
        if with_names:
            digest.update(f.name.encode() + b"\0")
        with f.open("rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs re-hashing next time
        _write_atomically(memo, value + "\n")
    return value


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
