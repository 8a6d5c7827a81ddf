"""ONNX graphs written from Hugging Face checkpoints, without torch.

:func:`built_model` turns a folder with ``config.json`` and safetensors weights (one file or
shards) into a cached float32 ONNX model with the Xenova exports' inputs and outputs;
:func:`build_onnx` writes one to a given path. :mod:`reranker.graph.writer` is the low-level
node/initializer API other graph builders share.
"""

from __future__ import annotations

from reranker.graph.build import BUILDER_VERSION, build_onnx, built_model
from reranker.graph.checkpoint import Checkpoint, open_checkpoint
from reranker.graph.encoder import ARCHITECTURES, encoder_graph
from reranker.graph.writer import EXTERNAL_DATA_BYTES, GraphWriter

__all__ = [
    "ARCHITECTURES",
    "BUILDER_VERSION",
    "EXTERNAL_DATA_BYTES",
    "Checkpoint",
    "GraphWriter",
    "build_onnx",
    "built_model",
    "encoder_graph",
    "open_checkpoint",
]
