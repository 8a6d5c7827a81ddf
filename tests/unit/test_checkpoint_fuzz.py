"""Fuzzing the one checkpoint reader through every family's builder (issue 21 item 1).

Random and adversarial safetensors headers, index files and config values, a fixed seed, over
every family of :func:`reranker.testing.families.all_families`: the only exception that may
come out of reading and building is ``ModelLoadError``, and the process's memory stays bounded
(a header may claim terabytes; nothing is allocated from what it claims).
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from reranker.errors import ModelLoadError
from reranker.models.architectures import resolve
from reranker.models.build import build_graph
from reranker.models.checkpoint import open_checkpoint
from reranker.models.family import GraphOptions
from reranker.testing.families import all_families

CASES_PER_FAMILY = 120
_WEIRD: list[Any] = [None, True, -1, 0, 2**63, -2**63, 1.5, float("1e308"), "", "x" * 300, [],
                     [1], [[]], {}, {"a": 1}, [-1, 2], [2, 1], [0, 2**62], ["0", "4"], [1, 2, 3]]


def _split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _pack(header: object, data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _mutate_header(rng: random.Random, raw: bytes) -> bytes:
    header, data = _split(raw)
    names = [n for n in header if n != "__metadata__"]
    kind = rng.randrange(9)
    if kind == 0:  # the length field
        return struct.pack("<Q", rng.choice([0, 1, 7, 2**62, 2**64 - 1, len(raw),
                                              rng.randrange(1, 2**40)])) + raw[8:]
    if kind == 1:  # random bytes in the header
        text = bytearray(raw)
        (length,) = struct.unpack("<Q", raw[:8])
        for _ in range(rng.randrange(1, 8)):
            text[8 + rng.randrange(length)] = rng.randrange(256)
        return bytes(text)
    if kind == 2:  # a cut file
        return raw[: rng.randrange(len(raw))]
    if kind == 3:  # the header is not an object
        return _pack(rng.choice(_WEIRD[:14]), data)
    name = rng.choice(names)
    entry = dict(header[name])
    if kind == 4:
        header[name] = rng.choice(_WEIRD)
    elif kind == 5:
        entry["dtype"] = rng.choice([*_WEIRD, "I64", "BOOL", "F8_E4M3", "bf16", "F32 "])
    elif kind == 6:
        entry["shape"] = rng.choice([*_WEIRD, [*entry["shape"], 0], [-entry["shape"][0]],
                                     [2**62, 2**62], [1] * 40])
    elif kind == 7:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = rng.choice([
            *_WEIRD, [begin - 1, end - 1], [begin + 1, end + 1], [end, begin],
            [0, end - begin], [len(data), len(data) + end - begin]])
    else:  # another tensor's bytes, or metadata of the wrong type
        if rng.random() < 0.5:
            other = header[rng.choice(names)]
            entry["data_offsets"] = other["data_offsets"]
        else:
            header["__metadata__"] = rng.choice(_WEIRD)
    if kind != 4:
        header[name] = entry
    return _pack(header, data)


def _mutate_config(rng: random.Random, config: dict[str, Any]) -> dict[str, Any]:
    key = rng.choice([k for k, v in config.items() if not isinstance(v, str)] + [
        "num_hidden_layers", "num_attention_heads", "rope_scaling", "rope_parameters"])
    config[key] = rng.choice([*_WEIRD, -3, 1, 3, 10**9])
    return config


def _case(rng: random.Random, pristine: Path, folder: Path) -> None:
    shutil.copytree(pristine, folder, ignore=shutil.ignore_patterns("onnx", "tokenizer*",
                                                                    "vocab*", "*.txt"))
    weights = folder / "model.safetensors"
    target = rng.random()
    if target < 0.7:
        weights.write_bytes(_mutate_header(rng, weights.read_bytes()))
    elif target < 0.85:
        index = rng.choice([[], {}, {"weight_map": rng.choice(_WEIRD)},
                            {"weight_map": {"x": rng.choice(["../a", "/etc/passwd", ".", 3])}},
                            {"weight_map": {"x": "model.safetensors", "y": "missing.safetensors"}}])
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(_mutate_config(rng, config)))


def _read_and_build(folder: Path, rule: str | None) -> None:
    checkpoint = open_checkpoint(folder)
    family = resolve(checkpoint.config, source=str(folder), rule=rule)
    head = family.head_of(checkpoint.config)
    # A one-token head (zerank's "Yes") takes one id, a (no, yes) head two.
    options = GraphOptions(head_kind=head, token_ids=(1,) if head == "yes" else (1, 2))
    g, inputs, outputs = build_graph(checkpoint, family, options)
    g.model(inputs, outputs, producer="fuzz")  # reads every weight's bytes


@pytest.mark.parametrize("kit", all_families(), ids=lambda k: k.NAME)
def test_only_model_load_errors_come_out_and_memory_stays_bounded(
        kit: Any, tmp_path: Path) -> None:
    pristine = kit.make_checkpoint(tmp_path / "pristine")
    # A family whose architecture is a generic LLM's is named by the rule field.
    rule = kit.NAME if getattr(kit, "NEEDS_RULE", False) else None
    _read_and_build(pristine, rule)  # the unmutated checkpoint builds
    rng = random.Random(f"fuzz-{kit.NAME}")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"refused": 0, "built": 0}
    for i in range(CASES_PER_FAMILY):
        folder = tmp_path / f"case{i}"
        _case(rng, pristine, folder)
        try:
            _read_and_build(folder, rule)
        except ModelLoadError:
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - the failure being tested for
            raise AssertionError(f"case {i} of {kit.NAME}: {type(exc).__name__}: {exc}") from exc
        else:
            outcomes["built"] += 1
        shutil.rmtree(folder)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak RSS grew {grown_mb:.0f} MB"
    assert outcomes["refused"] > CASES_PER_FAMILY // 2, outcomes
