"""Writing an ONNX graph node by node, with weights that are read only when the file is written.

This is the one low-level API every graph builder in ``reranker.models`` uses (encoder and
decoder families alike, through :mod:`reranker.models.layers`): a :class:`GraphWriter` collects
nodes and initializers and names every intermediate value uniquely; :meth:`GraphWriter.save`
writes the model, moving the weights to an external data file (``<name>_data``), one tensor at a
time, when they exceed 64 MiB.

Weights are :class:`Tensor` objects, not arrays: a weight that lives in a checkpoint file is read
when it is written out, in bounded chunks, so a model larger than memory builds with one tensor
in memory at a time. Plain arrays are wrapped with :class:`ArrayTensor`.

Example::

    g = GraphWriter()
    w = g.weight("dense.weight_t", ArrayTensor(np.eye(4, dtype=np.float32)))
    y = g.op("MatMul", "x", w)
    g.output(y, "y")
    g.save(path, inputs=[("x", onnx.TensorProto.FLOAT, ["batch", 4])],
           outputs=[("y", onnx.TensorProto.FLOAT, ["batch", 4])])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = [
    "EXTERNAL_DATA_BYTES",
    "IR_VERSION",
    "OPSET",
    "ArrayTensor",
    "DerivedTensor",
    "GraphWriter",
    "Tensor",
    "ValueInfo",
    "f32",
    "i64",
    "transposed",
]

OPSET = 17
# IR 8 is what opset 17 needs; older onnxruntime releases refuse newer IR versions.
IR_VERSION = 8
# Above this many weight bytes the weights are streamed to an external data file. Protobuf's
# 2 GiB limit would allow more inline, but an inline model is several copies of its weights
# while it is checked and serialized: building a 1.06 GB XLM-R-base inline peaked at 3.9 GB
# resident, streamed it stays at the interpreter's baseline (benchmarks/graph_build.py).
EXTERNAL_DATA_BYTES = 64 * 2**20
_CHUNK_BYTES = 1 << 26

ValueInfo = tuple[str, int, Sequence[str | int]]
"""A graph input or output: ``(name, onnx.TensorProto data type, dims)``."""


class Tensor(Protocol):
    """A float32 weight whose bytes are produced on demand."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def numpy(self) -> np.ndarray:
        """The whole tensor as a C-contiguous float32 array."""
        ...

    def chunks(self) -> Iterator[np.ndarray]:
        """The tensor in C order as float32 pieces of bounded size (for writing to disk)."""
        ...


@dataclass(frozen=True)
class ArrayTensor:
    """A :class:`Tensor` over an array already in memory."""

    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def numpy(self) -> np.ndarray:
        return np.ascontiguousarray(self.array, dtype=np.float32)

    def chunks(self) -> Iterator[np.ndarray]:
        yield self.numpy()


@dataclass(frozen=True)
class DerivedTensor:
    """A :class:`Tensor` computed from another when needed (a transpose, a row)."""

    source: Tensor
    shape: tuple[int, ...]
    derive: Callable[[np.ndarray], np.ndarray]

    def numpy(self) -> np.ndarray:
        return np.ascontiguousarray(self.derive(self.source.numpy()), dtype=np.float32)

    def chunks(self) -> Iterator[np.ndarray]:
        yield self.numpy()


def i64(*values: int) -> np.ndarray:
    """An int64 vector (shapes, axes, split sizes)."""
    return np.array(values, dtype=np.int64)


def f32(value: float) -> np.ndarray:
    """A float32 scalar."""
    return np.array(value, dtype=np.float32)


def transposed(tensor: Tensor) -> Tensor:
    """``tensor.T`` of a matrix, e.g. a torch ``Linear`` weight ``[out, in]`` for ``MatMul``."""
    rows, cols = tensor.shape
    return DerivedTensor(tensor, (cols, rows), lambda a: a.T)


class GraphWriter:
    """Collects nodes and initializers, naming every intermediate value uniquely.

    Builders call :meth:`weight` for learned tensors, :meth:`constant` for shapes, axes and
    scalars, and :meth:`op` for every node; :meth:`linear` and :meth:`layer_norm` are the two
    compound layers every transformer needs. Names of weights must be unique; :meth:`op`
    outputs are ``/<OpType>_<n>``.
    """

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.weights: dict[str, Tensor] = {}
        self._constants: dict[str, np.ndarray] = {}
        self._count = 0

    def weight(self, name: str, tensor: Tensor) -> str:
        """A learned tensor: an initializer, external data when the model is large."""
        if name in self.weights:
            raise ValueError(f"weight {name!r} added twice")
        self.weights[name] = tensor
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        """A shape, axis or scalar: a ``Constant`` node, which stays inline with external data.

        onnxruntime's shape inference cannot read a Reshape target from external data. Asking
        for a name again with an equal value reuses the first node.
        """
        value = np.asarray(value)
        if name in self._constants:
            if not np.array_equal(self._constants[name], value):
                raise ValueError(f"constant {name!r} redefined with another value")
            return name
        self._constants[name] = value
        tensor = self._numpy_helper.from_array(value, name)
        self.nodes.append(self._helper.make_node("Constant", [], [name], value=tensor))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Append one node; returns the name of its (single) output."""
        self._count += 1
        out = f"/{op_type}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def ops(self, op_type: str, inputs: Sequence[str], outputs: int, **attrs: Any) -> list[str]:
        """Append one node with several outputs (``Split``); returns their names."""
        self._count += 1
        names = [f"/{op_type}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), names, **attrs))
        return names

    def output(self, value: str, name: str) -> None:
        """Expose ``value`` as the graph output ``name``."""
        self.nodes.append(self._helper.make_node("Identity", [value], [name]))

    def linear(self, x: str, weight: Tensor, bias: Tensor | None, name: str) -> str:
        """``x @ weight.T + bias`` for a torch ``Linear`` weight ``[out, in]``."""
        y = self.op("MatMul", x, self.weight(f"{name}.weight_t", transposed(weight)))
        return y if bias is None else self.op("Add", y, self.weight(f"{name}.bias", bias))

    def layer_norm(self, x: str, scale: Tensor, bias: Tensor | None, name: str, eps: float) -> str:
        """LayerNormalization over the last axis (``bias=None``: a norm without bias)."""
        s = self.weight(f"{name}.weight", scale)
        if bias is None:
            return self.op("LayerNormalization", x, s, axis=-1, epsilon=eps)
        b = self.weight(f"{name}.bias", bias)
        return self.op("LayerNormalization", x, s, b, axis=-1, epsilon=eps)

    def gelu(self, x: str, *, approximate: bool = False) -> str:
        """GELU: exact (erf) or the tanh approximation (``gelu_new``, ``gelu_pytorch_tanh``).

        The exact form is written as a torch export writes it, ``(x * (1 + erf(x / sqrt 2))) *
        0.5``, the pattern onnxruntime fuses into one Gelu kernel (the Gelu op itself needs
        opset 20).
        """
        f32 = np.float32
        one = self.constant("/gelu/one", np.array(1.0, f32))
        half = self.constant("/gelu/half", np.array(0.5, f32))
        if approximate:
            cube = self.op("Mul", self.op("Mul", x, x), x)
            k = self.constant("/gelu/k", np.array(0.044715, f32))
            c = self.constant("/gelu/c", np.array(np.sqrt(2.0 / np.pi), f32))
            inner = self.op("Tanh", self.op("Mul", self.op("Add", x, self.op("Mul", cube, k)), c))
            return self.op("Mul", self.op("Mul", x, half), self.op("Add", inner, one))
        sqrt2 = self.constant("/gelu/sqrt2", np.array(np.sqrt(2.0), f32))
        erf = self.op("Erf", self.op("Div", x, sqrt2))
        return self.op("Mul", self.op("Mul", x, self.op("Add", erf, one)), half)

    @property
    def weight_bytes(self) -> int:
        return sum(4 * int(np.prod(t.shape)) for t in self.weights.values())

    def model(
        self, inputs: Sequence[ValueInfo], outputs: Sequence[ValueInfo], *, producer: str
    ) -> onnx.ModelProto:
        """The model with every weight inline (each read once); for models under 2 GiB."""
        initializers = [
            self._numpy_helper.from_array(t.numpy(), name) for name, t in self.weights.items()
        ]
        return self._model(inputs, outputs, initializers, producer)

    def save(
        self,
        path: str | os.PathLike[str],
        inputs: Sequence[ValueInfo],
        outputs: Sequence[ValueInfo],
        *,
        producer: str,
        external_data_bytes: int = EXTERNAL_DATA_BYTES,
    ) -> Path:
        """Write the model at ``path``; weights go to ``<name>_data`` above the threshold.

        With external data, each weight is streamed to the data file in chunks and the graph
        only records offsets, so the weights are never all in memory.
        """
        import onnx

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = path.with_name(path.name + "_data")
        if data.exists():
            data.unlink()
        if self.weight_bytes <= external_data_bytes:
            model = self.model(inputs, outputs, producer=producer)
            onnx.checker.check_model(model)
            onnx.save_model(model, str(path))
            return path
        with data.open("wb") as f:
            initializers = [self._external(n, t, f, data.name) for n, t in self.weights.items()]
        model = self._model(inputs, outputs, initializers, producer)
        onnx.save_model(model, str(path))
        onnx.checker.check_model(str(path))  # a path: the checker then reads no weight data
        return path

    def _external(self, name: str, tensor: Tensor, f: BinaryIO, location: str) -> Any:
        from onnx import TensorProto

        # 64-byte alignment lets onnxruntime map the weights without copying them.
        f.seek(-f.tell() % 64, os.SEEK_CUR)
        offset = f.tell()
        for piece in tensor.chunks():
            f.write(np.ascontiguousarray(piece, dtype="<f4").tobytes())
        length = f.tell() - offset
        expected = 4 * int(np.prod(tensor.shape))
        if length != expected:
            raise ValueError(f"weight {name!r} wrote {length} bytes, expected {expected}")
        proto = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(tensor.shape))
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            entry = proto.external_data.add()
            entry.key, entry.value = key, str(value)
        return proto

    def _model(
        self,
        inputs: Sequence[ValueInfo],
        outputs: Sequence[ValueInfo],
        initializers: list[Any],
        producer: str,
    ) -> onnx.ModelProto:
        h = self._helper
        graph = h.make_graph(
            self.nodes,
            producer,
            [h.make_tensor_value_info(n, t, list(d)) for n, t, d in inputs],
            [h.make_tensor_value_info(n, t, list(d)) for n, t, d in outputs],
            initializers,
        )
        return h.make_model(
            graph,
            opset_imports=[h.make_opsetid("", OPSET)],
            producer_name=producer,
            ir_version=IR_VERSION,
        )
