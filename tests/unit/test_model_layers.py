"""The shared graph blocks (reranker.models.layers) against numpy, one block at a time.

The family tests cover the blocks as composed by today's families; these cover the options new
families use (bidirectional and sliding-window masks, a position-bias hook, the (1 + w) norm,
GeGLU, token rows), so a family built on them starts from blocks known to be right.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.layers.attention import attend, decoder_mask, padding_mask, window_mask
from reranker.models.layers.heads import token_rows
from reranker.models.layers.mlp import gated_mlp
from reranker.models.layers.norms import rms_norm
from reranker.models.writer import GraphWriter

MIN = float(np.finfo(np.float32).min)
RNG = np.random.default_rng(7)


def _run(g: GraphWriter, out: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from onnx import TensorProto

    g.output(out, "y")
    types = {np.dtype(np.int64): TensorProto.INT64, np.dtype(np.float32): TensorProto.FLOAT}
    inputs = [(n, types[a.dtype], list(a.shape)) for n, a in feeds.items()]
    model = g.model(inputs, [("y", TensorProto.FLOAT, None)], producer="test")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _mask_feeds() -> dict[str, np.ndarray]:
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)  # left-padded row 0
    return {"input_ids": np.ones_like(mask), "attention_mask": mask}


def _visible(mask: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """[b, s, s] booleans: key j visible from query i."""
    return allowed[None] & mask[:, None, :].astype(bool)


@pytest.mark.parametrize(("causal", "window"), [(True, None), (False, None), (True, 2)])
def test_decoder_masks(causal: bool, window: int | None) -> None:
    feeds = _mask_feeds()
    g = GraphWriter()
    got = _run(g, decoder_mask(g, causal=causal, window=window), feeds)[:, 0, 0]
    got = np.broadcast_to(got, (2, 5, 5))  # bidirectional: one key row for every query
    i, j = np.indices((5, 5))
    allowed = np.ones((5, 5), bool)
    if causal:
        allowed &= j <= i
    if window is not None:
        allowed &= i - j < window
    want = np.where(_visible(feeds["attention_mask"], allowed), 0.0, MIN)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_window_masks(causal: bool) -> None:
    feeds = _mask_feeds()
    g = GraphWriter()
    seq = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    positions = g.op("Range", g.constant("/z", np.array(0, np.int64)), seq,
                     g.constant("/o", np.array(1, np.int64)))
    got = _run(g, window_mask(g, padding_mask(g), positions, 2, causal=causal), feeds)[:, 0]
    i, j = np.indices((5, 5))
    allowed = (0 <= i - j) & (i - j < 2) if causal else np.abs(i - j) <= 2
    want = np.where(_visible(feeds["attention_mask"], allowed), 0.0, MIN)
    np.testing.assert_array_equal(got, want)


def test_attention_with_a_position_bias_hook() -> None:
    """ALiBi: scores + slope * -(i - j), added before the mask; the softmax is numpy's."""
    q, k, v = (RNG.normal(size=(1, 2, 4, 8)).astype(np.float32) for _ in range(3))
    slopes = np.array([0.5, 0.25], np.float32)
    i, j = np.indices((4, 4))
    bias = (-slopes[:, None, None] * np.abs(i - j)[None]).astype(np.float32)[None]
    mask = np.zeros((1, 1, 1, 4), np.float32)
    mask[..., 0] = MIN
    g = GraphWriter()
    k_t = g.op("Transpose", "k", perm=[0, 1, 3, 2])
    out = attend(g, "q", k_t, "v", "mask", 8 ** -0.5, bias="bias", tag="/t")
    got = _run(g, out, {"q": q, "k": k, "v": v, "mask": mask, "bias": bias})
    scores = q.astype(np.float64) @ k.transpose(0, 1, 3, 2) * 8 ** -0.5 + bias + mask
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, probs @ v, atol=1e-5)


@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm(unit_offset: bool) -> None:
    x = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    w = RNG.normal(size=(8,)).astype(np.float32)
    ck = Checkpoint.from_arrays({}, {"n.weight": w})
    g = GraphWriter()
    got = _run(g, rms_norm(g, ck, "x", "n", 1e-6, unit_offset=unit_offset, width=8), {"x": x})
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + 1e-6) * ((1 + w) if unit_offset else w)
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ModelLoadError, match=r"n\.weight.*shape \[8\].*implies \[9\]"):
        rms_norm(GraphWriter(), ck, "x", "n", 1e-6, width=9)


@pytest.mark.parametrize("act", ["silu", "gelu_pytorch_tanh"])
def test_gated_mlp(act: str) -> None:
    x = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    w = {f"m.{p}.weight": RNG.normal(size=s).astype(np.float32) * 0.3
         for p, s in (("gate_proj", (16, 8)), ("up_proj", (16, 8)), ("down_proj", (8, 16)))}
    ck = Checkpoint.from_arrays({}, w)
    g = GraphWriter()
    got = _run(g, gated_mlp(g, ck, "x", "m", act, sizes=(8, 16)), {"x": x})
    gate = x.astype(np.float64) @ w["m.gate_proj.weight"].T
    if act == "silu":
        gate = gate / (1 + np.exp(-gate))
    else:
        gate = 0.5 * gate * (1 + np.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate**3)))
    want = (gate * (x @ w["m.up_proj.weight"].T)) @ w["m.down_proj.weight"].T
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ModelLoadError, match="gate_proj"):
        gated_mlp(GraphWriter(), ck, "x", "m", act, sizes=(8, 17))


def test_token_rows_read_the_chosen_rows_in_order() -> None:
    table = RNG.normal(size=(10, 4)).astype(np.float32)
    ck = Checkpoint.from_arrays({}, {"lm_head.weight": table})
    last = RNG.normal(size=(3, 4)).astype(np.float32)
    g = GraphWriter()
    got = _run(g, token_rows(g, ck, "h", ck["lm_head.weight"], (7, 2)), {"h": last})
    np.testing.assert_allclose(got, last @ table[[7, 2]].T, atol=1e-5)
    with pytest.raises(ModelLoadError, match="outside the output matrix"):
        token_rows(GraphWriter(), ck, "h", ck["lm_head.weight"], (10,))


def test_the_layerwise_cutoff_equals_a_checkpoint_cut_to_those_layers(tmp_path: Path) -> None:
    """``GraphOptions.cutoff_layer``: the first layer of a 2-layer Qwen3, then the final norm
    and head, scores exactly as the same weights saved as a 1-layer checkpoint."""
    import json

    from safetensors.numpy import load_file, save_file

    from reranker.models.build import build_onnx
    from reranker.models.family import GraphOptions
    from reranker.testing.families import qwen3

    root = tmp_path
    full = qwen3.make_checkpoint(root / "full")
    cut = root / "cut"
    cut.mkdir()
    config = json.loads((full / "config.json").read_text())
    (cut / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    weights = load_file(str(full / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if ".layers.1." not in k},
              str(cut / "model.safetensors"))
    ids = RNG.integers(5, 100, size=(2, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    outputs = []
    for folder, cutoff in ((full, 1), (cut, None)):
        options = GraphOptions(head_kind="yes_no", token_ids=(3, 4), cutoff_layer=cutoff)
        model = build_onnx(folder, root / f"{folder.name}.onnx", options=options)
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    with pytest.raises(ModelLoadError, match="cutoff layer 3 is outside 1..2"):
        build_onnx(full, root / "bad.onnx", options=GraphOptions(
            head_kind="yes_no", token_ids=(3, 4), cutoff_layer=3))
