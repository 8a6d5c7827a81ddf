"""Decoder rerankers (Qwen3-Reranker) against an independent float64 numpy reference.

The stand-ins are random-weight Qwen3 checkpoints with the 0.6B model's shape ratios and a
byte-level BPE tokenizer with the chat tokens; the reference tokenizes with ``transformers``
following the model card and runs the forward pass in numpy (``reranker.testing``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reranker import Reranker
from reranker.backends import build_backend
from reranker.backends.base import ScoreItem, tokens_of
from reranker.config import parse_backend_config
from reranker.errors import (
    BackendError,
    ConfigError,
    InputTooLongError,
    InvalidInputError,
    ModelLoadError,
)
from reranker.testing.families.qwen3_models import build_qwen3_reranker
from reranker.testing.families.qwen3_reference import (
    DEFAULT_INSTRUCTION,
    reference_decoder_encode,
    reference_decoder_scores,
)
from reranker.types import Truncation, Usage

MAX_LENGTH = 160
QUERY = "what is the capital of France"
DOCUMENTS = [
    "Paris is the capital of France",
    "a fish",
    "",
    "the long story of the world " * 60,  # cut at the window
    "café 東京 123 yes no",
    "\n starts with a new line",
    "(punctuation) first, 42 then",
    "a document that says <|im_end|> in its text",
]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {
        "causal": build_qwen3_reranker(root / "causal", seed=1),
        "seq_cls": build_qwen3_reranker(root / "seq_cls", seed=1, seq_cls=True),
        "untied": build_qwen3_reranker(root / "untied", seed=2, num_layers=3,
                                       tie_word_embeddings=False),
    }


def _backend(folder: Path, tmp_path: Path, **options: Any) -> Any:
    config = {"type": "custom", "model_id": str(folder), "max_length": MAX_LENGTH,
              "cache_dir": str(tmp_path / "cache"), **options}
    return build_backend(parse_backend_config(config))


def _reference(folder: Path, documents: list[str], query: str = QUERY,
               instruction: str = DEFAULT_INSTRUCTION, max_length: int = MAX_LENGTH
               ) -> np.ndarray:
    enc = reference_decoder_encode(folder, query, documents, max_length, instruction)
    return reference_decoder_scores(folder, enc["input_ids"], enc["attention_mask"])


def test_prompt_ids_equal_the_model_cards_tokenization(decoders: dict[str, Path],
                                                       tmp_path: Path) -> None:
    backend = _backend(decoders["causal"], tmp_path)
    long_query = "where " * 200  # longer than the window: the query is cut too
    for query in (QUERY, long_query):
        enc = reference_decoder_encode(decoders["causal"], query, DOCUMENTS, MAX_LENGTH)
        ours = backend.encode(query, DOCUMENTS).ids
        for ids, mask, row in zip(enc["input_ids"], enc["attention_mask"], ours, strict=True):
            assert row == ids[mask.astype(bool)].tolist()
        assert max(len(r) for r in ours) == MAX_LENGTH
        # The reference pads on the left: every row ends in the last column.
        assert (enc["attention_mask"][:, -1] == 1).all()
    backend.close()


@pytest.mark.parametrize("variant", ["causal", "seq_cls", "untied"])
def test_scores_equal_the_reference(decoders: dict[str, Path], tmp_path: Path,
                                    variant: str) -> None:
    backend = _backend(decoders[variant], tmp_path)
    scores = backend.score(QUERY, DOCUMENTS)
    assert scores.dtype == np.float32 and scores.shape == (len(DOCUMENTS),)
    expected = _reference(decoders[variant], DOCUMENTS)
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)
    assert np.std(expected) > 0.05  # the documents matter: not a constant score
    backend.close()


def test_left_padding_in_one_mixed_length_batch(decoders: dict[str, Path],
                                                tmp_path: Path) -> None:
    backend = _backend(decoders["causal"], tmp_path, batch_size=64, max_tokens_per_batch=10**6)
    backend.model.max_padding = 100.0  # let rows of every length share one padded batch
    scores = backend.score(QUERY, DOCUMENTS)
    assert backend.model.stats.batches == 1
    assert backend.model.stats.padded_tokens > backend.model.stats.real_tokens
    np.testing.assert_allclose(scores, _reference(decoders["causal"], DOCUMENTS), atol=1e-4)
    backend.close()


def test_causal_lm_and_seq_cls_give_the_same_scores(decoders: dict[str, Path],
                                                    tmp_path: Path) -> None:
    causal = _backend(decoders["causal"], tmp_path).score(QUERY, DOCUMENTS)
    seq_cls = _backend(decoders["seq_cls"], tmp_path).score(QUERY, DOCUMENTS)
    np.testing.assert_allclose(causal, seq_cls, atol=1e-4)


def test_instruction_per_model_and_per_call(decoders: dict[str, Path], tmp_path: Path) -> None:
    folder = decoders["causal"]
    own = "Given a question, find the passage that answers it"
    configured = _backend(folder, tmp_path, instruction=own)
    expected = _reference(folder, DOCUMENTS[:3], instruction=own)
    np.testing.assert_allclose(configured.score(QUERY, DOCUMENTS[:3]), expected, atol=1e-4)
    default = _backend(folder, tmp_path)
    per_call = default.score(QUERY, DOCUMENTS[:3], instruction=own)
    np.testing.assert_allclose(per_call, expected, atol=1e-4)
    assert np.abs(default.score(QUERY, DOCUMENTS[:3]) - expected).max() > 1e-3

    rr = Reranker(backend=default)
    results = rr.rerank(QUERY, DOCUMENTS[:3], instruction=own, raw_scores=True)
    by_index = {r.index: r.score for r in results}
    np.testing.assert_allclose([by_index[i] for i in range(3)], expected, atol=1e-4)
    # The library's sigmoid of the log-odds is the model card's softmax yes-probability.
    probs = {r.index: r.score for r in rr.rerank(QUERY, DOCUMENTS[:3], instruction=own)}
    np.testing.assert_allclose([probs[i] for i in range(3)], 1 / (1 + np.exp(-expected)),
                               atol=1e-5)
    with pytest.raises(InvalidInputError) as err:
        rr.rerank(QUERY, DOCUMENTS[:3], instruction="  ")
    assert err.value.param == "instruction"


def test_instruction_is_refused_by_an_encoder(bert_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="instruction"):
        build_backend(parse_backend_config(
            {"type": "custom", "model_id": str(bert_model), "instruction": "rank"}))
    rr = Reranker({"type": "custom", "model_id": str(bert_model)})
    with pytest.raises(InvalidInputError) as err:
        rr.rerank("query", ["doc"], instruction="rank well")
    assert err.value.param == "instruction"
    rr.close()


def test_truncation_and_score_batch(decoders: dict[str, Path], tmp_path: Path) -> None:
    folder = decoders["causal"]
    backend = _backend(folder, tmp_path)
    long_doc = DOCUMENTS[3]
    cut = backend.score(QUERY, [long_doc], Truncation(max_document_tokens=5))
    short = backend.tokenizer._ids(" " + long_doc)[:5]
    ids = backend.encode(QUERY, [long_doc], Truncation(max_document_tokens=5)).ids[0]
    assert ids[-17:-12] == short
    assert abs(float(cut[0]) - float(backend.score(QUERY, [long_doc])[0])) > 1e-4
    with pytest.raises(InputTooLongError) as err:
        backend.score(QUERY, DOCUMENTS, Truncation(allow=False))
    assert err.value.param == "documents[3]"

    items = [ScoreItem(QUERY, DOCUMENTS, None),
             ScoreItem("fish", ["a fish", "water"], None, "find fish"),
             ScoreItem(QUERY, [long_doc], Truncation(max_document_tokens=5))]
    batched = backend.score_batch(items)
    assert [len(b) for b in batched] == [len(DOCUMENTS), 2, 1]
    np.testing.assert_allclose(batched[0], backend.score(QUERY, DOCUMENTS), atol=1e-5)
    np.testing.assert_allclose(
        batched[1], backend.score("fish", ["a fish", "water"], instruction="find fish"),
        atol=1e-5)
    np.testing.assert_allclose(batched[2], cut, atol=1e-5)


def test_graph_never_builds_the_vocabulary_head(decoders: dict[str, Path],
                                                tmp_path: Path) -> None:
    import onnx

    backend = _backend(decoders["untied"], tmp_path)
    model = onnx.load(str(backend.model_file), load_external_data=False)
    config = json.loads((decoders["untied"] / "config.json").read_text())
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    vocab_wide = [n for n, dims in shapes.items() if config["vocab_size"] in dims]
    assert vocab_wide == ["model.embed_tokens.weight"]  # only the Gather table
    assert shapes["head.rows_t"] == [config["hidden_size"], 2]
    assert backend.model.num_logits == 2


def test_int8_agrees_with_float32(decoders: dict[str, Path], tmp_path: Path) -> None:
    folder = decoders["causal"]
    float32 = _backend(folder, tmp_path).score(QUERY, DOCUMENTS)
    int8_backend = _backend(folder, tmp_path, optimization="int8")
    assert int8_backend.model_file.parent.name == "int8"
    int8 = int8_backend.score(QUERY, DOCUMENTS)
    # Measured on this 64-wide stand-in: at most 0.05 apart, correlation 0.988.
    assert np.abs(int8 - float32).max() < 0.1
    assert np.corrcoef(int8, float32)[0, 1] > 0.95
    assert np.abs(int8 - float32).max() > 0  # it did run the quantized graph


def test_sharded_bfloat16_checkpoint(decoders: dict[str, Path], tmp_path: Path) -> None:
    """bfloat16 shards (as the Hub's Qwen3 rerankers ship) read exactly, without torch."""
    from safetensors.numpy import load_file

    source = decoders["causal"]
    folder = tmp_path / "sharded"
    shutil.copytree(source, folder)
    (folder / "model.safetensors").unlink()
    tensors = load_file(str(source / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    rounded = {}
    for shard, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        file = f"model-0000{shard + 1}-of-00002.safetensors"
        _write_bf16(folder / file, {n: tensors[n] for n in part})
        weight_map.update(dict.fromkeys(part, file))
        for n in part:
            bits = (tensors[n].view(np.uint32) >> 16).astype(np.uint32) << 16
            rounded[n] = bits.view(np.float32)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    from reranker.models.checkpoint import open_checkpoint

    ckpt = open_checkpoint(folder)
    for n in names:
        np.testing.assert_array_equal(ckpt[n].numpy(), rounded[n])
    scores = _backend(folder, tmp_path).score(QUERY, DOCUMENTS[:3])
    # The reference on the same rounded weights, saved as one float32 file.
    from safetensors.numpy import save_file

    ref_folder = tmp_path / "rounded"
    shutil.copytree(source, ref_folder)
    save_file(rounded, str(ref_folder / "model.safetensors"))
    np.testing.assert_allclose(scores, _reference(ref_folder, DOCUMENTS[:3]), atol=1e-4)


def _write_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        data = (value.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def test_clear_errors(decoders: dict[str, Path], tmp_path: Path) -> None:
    source = decoders["causal"]
    unknown = tmp_path / "llama"
    shutil.copytree(source, unknown)
    config = json.loads((unknown / "config.json").read_text())
    config.update(architectures=["LlamaForCausalLM"], model_type="llama")
    (unknown / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="Qwen3ForCausalLM") as err:
        _backend(unknown, tmp_path)
    assert "architectures" in str(err.value)

    no_yes = tmp_path / "no_yes"
    shutil.copytree(source, no_yes)
    tok = json.loads((no_yes / "tokenizer.json").read_text())
    merges = tok["model"]["merges"]
    pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]
    tok["model"]["merges"] = [p for p in pairs if "yes" not in (*p, "".join(p))]
    del tok["model"]["vocab"]["yes"]
    (no_yes / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ModelLoadError, match="single tokens"):
        _backend(no_yes, tmp_path)

    with pytest.raises(ConfigError, match="max_run_memory_mb"):
        _backend(source, tmp_path, max_length=4096, max_run_memory_mb=64)
    with pytest.raises(ConfigError, match="window"):
        _backend(source, tmp_path, max_length=8192)
    with pytest.raises(ConfigError, match="long_documents"):
        _backend(source, tmp_path, long_documents="chunk")
    with pytest.raises(ConfigError, match="score_cache_size"):
        _backend(source, tmp_path, score_cache_size=10)


def test_preset_is_listed_and_resolves() -> None:
    from reranker.cli.main import main
    from reranker.presets import PRESETS

    preset = PRESETS["instruct"]
    assert preset.repo_id == "Qwen/Qwen3-Reranker-0.6B"
    assert preset.is_decoder
    assert preset.memory_mb and preset.memory_mb > preset.download_size_mb
    config = parse_backend_config("instruct")
    assert config.type == "preset" and config.optimization == "none"
    assert main(["presets"]) == 0


@pytest.mark.parametrize("variant", ["causal", "untied"])
def test_last_position_layer_and_two_rows_equal_the_full_forward(
        decoders: dict[str, Path], tmp_path: Path, variant: str) -> None:
    """The shortcuts (last layer for the last position, two head rows) change no score."""
    from reranker.models.build import build_onnx
    from reranker.models.family import GraphOptions
    from reranker.onnx_model import OnnxCrossEncoder

    folder = decoders[variant]
    backend = _backend(folder, tmp_path)
    options = GraphOptions(head_kind="yes_no", token_ids=backend.tokenizer.head_token_ids,
                           last_position_only=False, vocabulary_head=True)
    full = build_onnx(folder, tmp_path / "full" / "model.onnx", options=options)
    runner = OnnxCrossEncoder(full, pad_id=backend.tokenizer.pad_id, padding_side="left")
    rows = backend.encode(QUERY, DOCUMENTS).ids
    np.testing.assert_allclose(runner.run(rows, rows), backend.score(QUERY, DOCUMENTS),
                               atol=1e-5)


async def test_serve_batching_merges_decoder_requests(decoders: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """The batch entry point the Serve batcher calls (encode + one model run) works for
    decoder backends."""
    backend = _backend(decoders["causal"], tmp_path)
    items = [ScoreItem(QUERY, DOCUMENTS), ScoreItem("fish", ["a fish", "water"]),
             ScoreItem(QUERY, DOCUMENTS[:2], Truncation(max_document_tokens=2))]
    results = await backend.ascore_batch(items)
    for item, got in zip(items, results, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, backend.score(item.query, item.documents,
                                                      item.truncation), atol=1e-5)


def test_memory_budget_caps_rows_per_run(decoders: dict[str, Path], tmp_path: Path) -> None:
    from reranker.backends.decoder import decoder_family

    _, spec = decoder_family(decoders["causal"])
    one_row_mb = spec.run_memory_bytes(1, MAX_LENGTH) / 2**20
    budget = max(1, int(3.5 * one_row_mb) + 1)
    backend = _backend(decoders["causal"], tmp_path, max_run_memory_mb=budget)
    assert backend.model.batch_size == int(budget * 2**20 // spec.run_memory_bytes(1, MAX_LENGTH))
    assert backend.model.batch_size < 32
    # A window whose single pair exceeds the budget is refused, naming both settings.
    with pytest.raises(ConfigError, match="max_length 2048.*max_run_memory_mb"):
        _backend(decoders["causal"], tmp_path, max_length=2048, max_run_memory_mb=budget)


def test_score_batch_fails_only_the_invalid_item_and_equals_single_scores(
        decoders: dict[str, Path], tmp_path: Path) -> None:
    """One left-padded pass over mixed-length items from several requests: each item's scores
    equal scoring it alone (and the reference); a bad item fails alone, naming its field."""
    folder = decoders["causal"]
    backend = _backend(folder, tmp_path, instruction="Find what answers the question")
    # The one merged pass; with prefix reuse an item with a shared prefix runs alone
    # (tests/unit/test_prefix_reuse.py).
    backend.prefix_reuse = False
    items = [
        ScoreItem(QUERY, DOCUMENTS[:3]),
        ScoreItem(QUERY, DOCUMENTS, Truncation(allow=False)),  # documents[3] does not fit
        ScoreItem("fish", ["a fish", "water", DOCUMENTS[3]], None, "find fish"),
        ScoreItem(QUERY, ["a"], None, "   "),  # blank instruction
        ScoreItem(QUERY, ["a"], Truncation(max_chunks=2)),  # decoders never chunk
        ScoreItem(QUERY, DOCUMENTS[4:], Truncation(side="left", max_document_tokens=3)),
    ]
    out = backend.score_batch(items)
    assert backend.model.stats.real_tokens == sum(
        len(r) for i in (0, 2, 5) for r in backend.encode(
            items[i].query, items[i].documents, items[i].truncation, items[i].instruction).ids)
    assert isinstance(out[1], InputTooLongError) and out[1].param == "documents[3]"
    assert isinstance(out[3], InvalidInputError) and out[3].param == "instruction"
    assert isinstance(out[4], InvalidInputError) and out[4].param == "documents"
    assert "max_chunks_per_doc" in str(out[4])
    for i in (0, 2, 5):
        got = out[i]
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        item = items[i]
        np.testing.assert_allclose(
            got, backend.score(item.query, item.documents, item.truncation, item.instruction),
            atol=1e-5)
    np.testing.assert_allclose(out[0], _reference(folder, DOCUMENTS[:3],
                                                  instruction="Find what answers the question"),
                               atol=1e-4)
    np.testing.assert_allclose(out[2], _reference(folder, ["a fish", "water", DOCUMENTS[3]],
                                                  query="fish", instruction="find fish"),
                               atol=1e-4)
    assert backend.score_batch([]) == []


def test_a_run_failure_fails_every_decoder_item(decoders: dict[str, Path],
                                                tmp_path: Path) -> None:
    backend = _backend(decoders["causal"], tmp_path)
    backend.model.session = None  # the run itself breaks, not any item's input
    out = backend.score_batch([ScoreItem(QUERY, ["a"]), ScoreItem(QUERY, ["b"], None, " ")])
    assert isinstance(out[0], BackendError) and backend.name in str(out[0])
    assert isinstance(out[1], InvalidInputError) and out[1].param == "instruction"


def test_decoder_declares_its_capabilities(decoders: dict[str, Path], tmp_path: Path) -> None:
    from reranker.registry import truncation_fields_of

    backend = _backend(decoders["causal"], tmp_path)
    assert backend.takes_instruction is True
    assert backend.truncation_fields == {"max_document_tokens", "side", "allow"}
    assert backend.model.padding_side == "left"
    preset = parse_backend_config("instruct")
    assert preset.takes_instruction is True
    assert truncation_fields_of(preset) == backend.truncation_fields
    assert parse_backend_config("fast").takes_instruction is False
    assert parse_backend_config({"type": "custom", "model_id": "a/b"}).takes_instruction is None
    assert parse_backend_config(
        {"type": "custom", "model_id": "a/b", "instruction": "x"}).takes_instruction is True


def test_module_level_rerank_passes_the_instruction(decoders: dict[str, Path],
                                                   tmp_path: Path) -> None:
    from reranker import rerank

    folder = decoders["causal"]
    model = {"type": "custom", "model_id": str(folder), "max_length": MAX_LENGTH,
             "cache_dir": str(tmp_path / "cache")}
    got = {r.index: r.score for r in rerank(QUERY, DOCUMENTS[:3], model=model, raw_scores=True,
                                            instruction="find fish")}
    want = _reference(folder, DOCUMENTS[:3], instruction="find fish")
    np.testing.assert_allclose([got[i] for i in range(3)], want, atol=1e-4)


def test_usage_counts_the_prompt_tokens(decoders: dict[str, Path], tmp_path: Path) -> None:
    """Tokens scored are the prompt ids the model card's tokenization gives (attention mask)."""
    folder = decoders["causal"]
    enc = reference_decoder_encode(folder, QUERY, DOCUMENTS, MAX_LENGTH, DEFAULT_INSTRUCTION)
    expected = int(np.asarray(enc["attention_mask"]).sum())
    rr = Reranker(backend=_backend(folder, tmp_path))
    assert rr.rerank(QUERY, DOCUMENTS).usage == Usage(search_units=1, tokens=expected)
    [batched] = rr.backend.score_batch([ScoreItem(QUERY, DOCUMENTS)])
    assert tokens_of(batched) == expected
