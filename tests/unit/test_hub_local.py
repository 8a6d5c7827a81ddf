"""reranker.hub for local folders: path detection, required files, external data, bad names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from reranker.errors import ConfigError, ModelLoadError, ModelNotFoundError
from reranker.hub import download_command_hint, fetch_model_files, is_local_model_id


def _tensor(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full((8, 8), value, dtype=np.float32), name)


def _model_with_subgraph() -> onnx.ModelProto:
    """x + w, or x + c where c is a Constant inside an If branch (a nested-graph tensor)."""
    then_branch = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=_tensor("c", 2.0)),
            helper.make_node("Add", ["x", "c"], ["t"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [8, 8])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [8, 8])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "outer",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])],
        [_tensor("w", 1.0)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _write_model(folder: Path, *, external: bool, one_file: bool = True) -> Path:
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    path = folder / "onnx" / "model.onnx"
    onnx.save_model(
        _model_with_subgraph(),
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=one_file,
        location="model.onnx_data",
        size_threshold=0,
        convert_attribute=True,
    )
    (folder / "tokenizer.json").write_text("{}")
    return path


FILES = ["onnx/model.onnx", "tokenizer.json"]


@pytest.mark.parametrize(
    ("model_id", "local"),
    [
        ("/abs/path", True),
        ("./rel", True),
        ("../up", True),
        ("~/models/x", True),
        (".", True),
        ("..", True),
        ("owner/name", False),
        ("fast", False),
        ("owner/name@v1", False),
        (".hidden/x", False),
    ],
)
def test_is_local_model_id(model_id: str, local: bool) -> None:
    assert is_local_model_id(model_id) is local


def test_local_folder_with_all_files(tmp_path: Path) -> None:
    _write_model(tmp_path / "m", external=True)
    assert fetch_model_files(str(tmp_path / "m"), files=FILES) == (tmp_path / "m").resolve()


def test_relative_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_model(tmp_path / "m", external=False)
    monkeypatch.chdir(tmp_path)
    assert fetch_model_files("./m", files=FILES) == (tmp_path / "m").resolve()
    monkeypatch.chdir(tmp_path / "m" / "onnx")
    assert fetch_model_files("..", files=FILES) == (tmp_path / "m").resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fetch_model_files("~/m", files=FILES) == (tmp_path / "m").resolve()


def test_missing_folder_names_it_and_the_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        fetch_model_files(str(tmp_path / "nowhere"), files=FILES)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert all(name in message for name in FILES)


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        fetch_model_files(str(tmp_path / "file"), files=FILES)


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelNotFoundError) as info:
        fetch_model_files(str(tmp_path / "m"), files=[*FILES, "extra/vocab.txt"])
    message = str(info.value)
    assert "onnx/model.onnx" in message and "extra/vocab.txt" in message
    assert "tokenizer.json" not in message
    assert str(tmp_path / "m") in message


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    _write_model(tmp_path / "m", external=True)
    (tmp_path / "m" / "onnx" / "model.onnx_data").unlink()
    with pytest.raises(ModelNotFoundError, match=r"onnx/model\.onnx_data"):
        fetch_model_files(str(tmp_path / "m"), files=FILES)


def test_external_data_of_nested_graphs_is_found(tmp_path: Path) -> None:
    # One data file per tensor: "w" (an initializer) and "c" (a Constant inside an If branch).
    _write_model(tmp_path / "m", external=True, one_file=False)
    data_files = sorted(p.name for p in (tmp_path / "m" / "onnx").iterdir() if p.suffix != ".onnx")
    assert data_files == ["c", "w"]
    for name in data_files:
        (tmp_path / "m" / "onnx" / name).unlink()
    with pytest.raises(ModelNotFoundError) as info:
        fetch_model_files(str(tmp_path / "m"), files=FILES)
    assert "onnx/c" in str(info.value) and "onnx/w" in str(info.value)


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    path = _write_model(tmp_path / "m", external=True)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../secret.bin"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="not a path inside the model folder"):
        fetch_model_files(str(tmp_path / "m"), files=FILES)


def test_unreadable_onnx_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "m" / "onnx").mkdir(parents=True)
    # Garbage that mentions "location", so it is parsed rather than skipped by the byte scan.
    (tmp_path / "m" / "onnx" / "model.onnx").write_bytes(b"\xff\xff location, not protobuf")
    (tmp_path / "m" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        fetch_model_files(str(tmp_path / "m"), files=FILES)


@pytest.mark.parametrize("name", ["", "/abs.onnx", "a/../b.onnx", "./a.onnx", "a//b", "a\\b.onnx"])
def test_bad_file_names_are_config_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="relative path"):
        fetch_model_files(str(tmp_path), files=[name])


def test_files_must_be_a_non_empty_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one file"):
        fetch_model_files(str(tmp_path), files=[])
    with pytest.raises(ConfigError, match="list of strings"):
        fetch_model_files(str(tmp_path), files="onnx/model.onnx")


def test_download_command_hint() -> None:
    assert download_command_hint("acme/x") == "reranker download acme/x"
    assert download_command_hint("acme/x", "v2") == "reranker download acme/x@v2"


def test_download_error_ends_its_cause_with_one_full_stop(tmp_path: Path) -> None:
    # huggingface_hub's message for an unreachable Hub is a sentence ending in "."; the
    # DownloadError used to add its own and read "...is on.. Retry when".
    from huggingface_hub.utils import LocalEntryNotFoundError

    from reranker.hub import _HubFetch

    cause = LocalEntryNotFoundError(
        "An error happened while trying to locate the file on the Hub and we cannot find the "
        "requested files in the local cache. Please check your connection and try again or "
        "make sure your Internet connection is on."
    )
    message = str(_HubFetch("acme/x", None, tmp_path)._failed("tokenizer.json", cause))
    assert ".." not in message
    assert "Internet connection is on. Retry when the network is back" in message
