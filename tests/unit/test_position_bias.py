"""The shared position-bias blocks against numpy: relative shift and ALiBi."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from reranker.models.layers.position_bias import alibi_bias, relative_shift
from reranker.models.writer import GraphWriter


def _run(g: GraphWriter, out: str, feeds: dict[str, np.ndarray], inputs: list[tuple],
         rank: int) -> np.ndarray:
    g.output(out, "out")
    model = g.model(inputs, [("out", 1, [f"d{i}" for i in range(rank)])], producer="test")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_relative_shift_reads_each_row_at_its_distance(n: int) -> None:
    g = GraphWriter()
    length = g.op("Shape", "input_ids", start=1, end=2)
    out = relative_shift(g, "scores", length)
    scores = np.random.RandomState(n).normal(size=(2, 3, n, 2 * n)).astype(np.float32)
    got = _run(g, out, {"scores": scores, "input_ids": np.zeros((2, n), np.int64)},
               [("scores", 1, ["b", "h", "n", "m"]), ("input_ids", 7, ["b", "n"])], 4)
    # Column c of row x holds distance n - 1 - c; key y is at distance x - y.
    want = np.empty((2, 3, n, n), np.float32)
    for x in range(n):
        for y in range(n):
            want[:, :, x, y] = scores[:, :, x, n - 1 - (x - y)]
    np.testing.assert_array_equal(got, want)


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    g = GraphWriter()
    got = _run(g, alibi_bias(g, 6), {"input_ids": np.zeros((1, 4), np.int64)},
               [("input_ids", 7, ["b", "n"])], 3)
    slopes = [0.25, 0.0625, 2.0**-6, 2.0**-8, 0.5, 0.125]
    distance = np.abs(np.arange(4)[:, None] - np.arange(4)[None, :])
    np.testing.assert_allclose(got, -np.array(slopes)[:, None, None] * distance, rtol=1e-7)
