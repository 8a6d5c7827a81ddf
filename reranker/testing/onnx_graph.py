"""The test kit's ONNX graphs: the production builder (:mod:`reranker.models.build`) on
in-memory weights.

Test models and production models go through one graph builder, so every test of a test model's
scores against the numpy reference also tests the graph that ``custom`` builds from safetensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from reranker.models.build import build_graph
from reranker.models.checkpoint import Checkpoint
from reranker.models.family import GraphOptions
from reranker.models.writer import OPSET
from reranker.testing.spec import CrossEncoderSpec, hf_config

if TYPE_CHECKING:
    import onnx

__all__ = ["OPSET", "build_onnx_model"]


def build_onnx_model(
    spec: CrossEncoderSpec, weights: dict[str, np.ndarray], *, head: bool = True
) -> onnx.ModelProto:
    """The ONNX model of ``spec`` with ``weights``.

    Args:
        head: ``False`` leaves the classification head out, so ``logits`` is the last hidden
            state ``[batch, seq, hidden]``: the broken export that tests must reject.
    """
    from onnx import checker

    checkpoint = Checkpoint.from_arrays(hf_config(spec), weights)
    g, inputs, outputs = build_graph(checkpoint, options=GraphOptions(head=head))
    model = g.model(inputs, outputs, producer="reranker.testing")
    checker.check_model(model)
    return model
